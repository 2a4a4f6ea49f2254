"""An outage report names every job that may exist (issue 21): a create on the wire when the API went away may
have been committed; the report counts it, and its cancel advice selects the sweep's jobs by label."""
import threading
from typing import Any, Dict, List

from conftest import emulator_backend, wait_for
from test_second_ctrl_c import _sleeper

from hydra_plugins.hydra_vertex_ai._emulator import Knobs
from hydra_plugins.hydra_vertex_ai._errors import VertexAPIError

TERMINAL = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED")


def test_a_create_committed_during_an_outage_is_counted_and_cancellable_by_label(vertex_emulator: Any) -> None:
    sweep = "outagemaybe"
    # 12 creates a minute: job 2's create goes out about 5 s after job 1's, when the outage has begun
    backend = emulator_backend(sweep, retry_timeout_s=8.0, create_rate_per_minute=12)
    mine = lambda: [j for j in vertex_emulator.jobs() if j["displayName"].startswith(f"{sweep}-")]  # noqa: E731
    errors: List[BaseException] = []

    def run() -> None:
        try:
            backend.run_jobs([_sleeper(sweep, i) for i in range(3)])
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: len(mine()) == 2, 60, "two jobs created")
        # every call does its work and its reply is lost: creates commit, nothing answers
        vertex_emulator.knobs = Knobs(lose_reply_rate=1.0, lose_reply_codes=("UNAVAILABLE",))
        thread.join(timeout=60)
    finally:
        vertex_emulator.knobs = Knobs()
    jobs: List[Dict[str, Any]] = mine()
    for job in jobs:
        if job["state"] not in TERMINAL:
            vertex_emulator._cancel(job["name"], "customJobs")

    assert not thread.is_alive()
    [error] = errors
    assert isinstance(error, VertexAPIError)
    message = str(error)
    assert len(jobs) == 3  # the third create was committed
    assert f"3 job(s) of sweep {sweep} may exist" in message, message
    [unanswered] = [line.split(":")[0].strip() for line in message.splitlines() if "create sent, no answer" in line]
    assert unanswered in {job["displayName"] for job in jobs}  # the one the old report missed
    assert f"--filter='labels.hydra_sweep={sweep}'" in message, message
    assert f"hydra-vertex-ai cancel {sweep}" in message, message
