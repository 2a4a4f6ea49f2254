"""The second Ctrl-C's message counts what is being cancelled (issue 21): not "0 confirmed, 0 left" while
every cancel is on the wire."""
import os
import signal
import threading
from typing import Any, Dict

import pytest
from conftest import emulator_backend, wait_for
from test_resilience import _job

from hydra_plugins.hydra_vertex_ai._emulator import Knobs


def _sleeper(sweep_id: str, num: int) -> Dict[str, Any]:
    return _job(sweep_id, num, "import time; time.sleep(300)")


@pytest.mark.parametrize("slow, told", [
    ("CancelCustomJob", "0 cancel(s) confirmed, 4 being sent"),  # the cancels are on the wire
    ("ListCustomJobs", "4 job(s) not confirmed ended"),  # the cancellation is still finding the sweep's jobs
], ids=["cancels", "listing"])
def test_a_second_ctrl_c_counts_what_is_being_cancelled(
    vertex_emulator: Any, capfd: pytest.CaptureFixture[str], slow: str, told: str
) -> None:
    sweep = f"count{slow[:4].lower()}"
    backend = emulator_backend(sweep)
    mine = lambda: [j for j in vertex_emulator.jobs() if j["displayName"].startswith(f"{sweep}-")]  # noqa: E731

    def interrupt_twice() -> None:
        wait_for(lambda: len(mine()) == 4, 60, "four jobs created")
        calls = vertex_emulator.calls[slow]
        vertex_emulator.knobs = Knobs(latency_s=3.0, fault_methods=(slow,))  # each such call takes 3 s
        os.kill(os.getpid(), signal.SIGINT)
        expected = 4 if slow == "CancelCustomJob" else 1  # the cancellation's first List of the sweep
        wait_for(lambda: vertex_emulator.calls[slow] >= calls + expected, 30, f"{slow} on the wire")
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            backend.run_jobs([_sleeper(sweep, i) for i in range(4)])
    finally:
        vertex_emulator.knobs = Knobs()
    err = capfd.readouterr().err

    second = [line for line in err.splitlines() if line.startswith("Cancellation in progress")]
    assert second and told in second[0], err
    assert "cancelled 4 unfinished Vertex AI job(s)" in err, err
