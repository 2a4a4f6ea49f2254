"""Failure paths of the local backend: task exceptions, dying job processes, Ctrl-C."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, List

import cloudpickle
import pytest
from conftest import PROBE, VERTEX_LOCAL, launch_in_process, records, wait_for
from hydra.core.utils import JobStatus
from omegaconf import DictConfig

# The jobs import nothing from the tests directory (as in a container): ship this module's tasks by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("hydra_restore_singletons")


class TaskError(Exception):
    """The user's own exception type."""


def fail_deep_inside(tag: int) -> None:
    raise TaskError(f"job {tag} failed on purpose")


def fail_on_tag_1(cfg: DictConfig) -> int:
    if cfg.tag == 1:
        fail_deep_inside(cfg.tag)
    return int(cfg.tag) * 10


def die_on_tag_1(cfg: DictConfig) -> int:
    if cfg.tag == 1:
        print(f"last words of job {cfg.tag}", flush=True)
        if cfg.mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)
    return int(cfg.tag) * 10


def _overrides(tmp_path: Path) -> List[str]:
    return VERTEX_LOCAL + [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}"]


def test_task_exception_comes_back_as_the_users_exception(tmp_path: Path) -> None:
    rets = launch_in_process(fail_on_tag_1, [["tag=0"], ["tag=1"], ["tag=2"]], _overrides(tmp_path))

    assert [r.status for r in rets] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert [rets[0].return_value, rets[2].return_value] == [0, 20]
    with pytest.raises(TaskError, match="job 1 failed on purpose") as info:
        rets[1].return_value
    remote_traceback = str(info.value.__cause__)
    # The frames are the job process's, not ours: the user sees where their code raised.
    assert "fail_deep_inside" in remote_traceback and "fail_on_tag_1" in remote_traceback


@pytest.mark.parametrize("mode", ["sigkill", "exit"])
def test_job_process_dying_without_result_fails_only_that_job(tmp_path: Path, mode: str) -> None:
    rets = launch_in_process(
        die_on_tag_1, [["tag=0"], ["tag=1"], ["tag=2"]], _overrides(tmp_path) + [f"mode={mode}"]
    )

    assert [r.status for r in rets] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert [rets[0].return_value, rets[2].return_value] == [0, 20]
    with pytest.raises(Exception) as info:
        rets[1].return_value
    message = str(info.value)
    assert "last words of job 1" in message  # the tail of the job's log
    assert ("SIGKILL" if mode == "sigkill" else "code 1") in message


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl_c", "sigterm", "sighup"])
def test_interrupt_cancels_running_jobs_and_exits(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "rec"
    args = [
        "-m", *VERTEX_LOCAL, "hydra.launcher.max_parallel=2", "mode=sleep", "tag=0,1,2",
        f"out_dir={out}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]  # fmt: skip
    app = subprocess.Popen(
        [sys.executable, str(PROBE), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(lambda: len(records(out)) == 2, 120, "two sleeping jobs")
        pids = [r["pid"] for r in records(out).values()]
        assert all(_alive(pid) for pid in pids)
        app.send_signal(sig)
        app.wait(timeout=60)
    finally:
        if app.poll() is None:
            app.kill()
        for pid in [r["pid"] for r in records(out).values()]:  # never leave sleepers behind a failed test
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    output = app.stdout.read().decode() if app.stdout else ""
    assert app.returncode != 0, output
    # The launcher reaps what it stops; allow a moment for the kernel to reparent anything it did not.
    _wait_for(lambda: not any(_alive(pid) for pid in pids), 5, f"job processes {pids} to end")
    assert sorted(records(out)) == [0, 1], "the queued job must not start after the interrupt"


def test_the_apps_garbage_collector_is_as_it_was_after_a_launch(tmp_path: Path) -> None:
    """The launcher tunes the collector while it prepares a batch (old objects frozen, fewer young
    collections): the app's process gets it back as it was, a failed job or not."""
    import gc

    before = (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())
    rets = launch_in_process(fail_on_tag_1, [["tag=0"], ["tag=1"]], _overrides(tmp_path))
    assert [r.status for r in rets] == [JobStatus.COMPLETED, JobStatus.FAILED]
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before


def test_a_detached_launch_returns_pending_jobs_with_their_configs(tmp_path: Path) -> None:
    """`wait=false`: every job comes back UNKNOWN with no value, and with the configs Hydra's JobReturn carries
    (made when first read)."""
    rets = launch_in_process(fail_on_tag_1, [["tag=0"], ["tag=2"]], _overrides(tmp_path) + ["hydra.launcher.wait=false"])
    assert [(r.status, r.return_value) for r in rets] == [(JobStatus.UNKNOWN, None)] * 2
    assert [r.cfg.tag for r in rets] == [0, 2]  # type: ignore[union-attr]
    assert all("hydra" not in r.cfg for r in rets)  # type: ignore[operator]
    assert [r.hydra_cfg.hydra.overrides.task[-1] for r in rets] == ["tag=0", "tag=2"]  # type: ignore[union-attr]
    assert [r.overrides[-1] for r in rets] == ["tag=0", "tag=2"]  # type: ignore[index]
    staged = next((tmp_path / "sweep" / ".vertex_ai").glob("*/manifest.json")).parent
    wait_for(lambda: all((staged / "jobs" / str(i) / "outcome.json").exists() for i in (0, 1)), 60, "the detached jobs")
