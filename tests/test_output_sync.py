"""The job's Hydra output dir on local disk, copied to the Cloud Storage FUSE mount (issue 13 item 3).

The emulator's FUSE stand-in uploads a file only once it is closed, and loses what a killed process held
open, as Cloud Storage FUSE does: these tests kill jobs mid-run and look for their log tail in the bucket
(copied back into the local sweep dir by `sync_outputs`)."""
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List

import cloudpickle
import pytest
from conftest import VERTEX_OVERRIDES, launch_in_process, wait_for
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus
from omegaconf import DictConfig

from hydra_plugins.hydra_vertex_ai import _storage

cloudpickle.register_pickle_by_value(sys.modules[__name__])
log = logging.getLogger(__name__)


def _bucket_log(root: Path, name: str) -> List[str]:
    """The gs:// URIs of every `name` under the FUSE stand-in `root`, i.e. where FUSE would upload them."""
    return [f"gs://{p.relative_to(root).as_posix()}" for p in root.rglob(name)]


def killed_once_its_log_is_in_the_bucket(cfg: DictConfig) -> int:
    """Log a line, wait (bounded) until the bucket holds it, then die as an out-of-memory kill would."""
    log.info("last words of %s", cfg.out_dir)
    root, name = Path(os.environ[_storage.FUSE_ROOT_ENV]), f"{HydraConfig.get().job.name}.log"
    deadline = time.monotonic() + float(cfg.hold_max_s)
    while time.monotonic() < deadline:
        uris = _bucket_log(root, name)
        if any(_storage.exists(u) and str(cfg.out_dir) in _storage.read_bytes(u).decode() for u in uris):
            break
        time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


def waits_to_be_cancelled(cfg: DictConfig) -> int:
    log.info("last words of %s", cfg.out_dir)
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out_dir) / "running").write_text("")
    time.sleep(300)
    return 0


def _overrides(tmp_path: Path, name: str, sync_s: float) -> List[str]:
    return ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES, f"hydra.sweep.dir={tmp_path / 'sweep'}",
            f"out_dir={tmp_path / 'rec'}", f"hydra.job.name={name}", f"hydra.launcher.job.output_sync_s={sync_s}"]


def _job_log(tmp_path: Path, name: str) -> str:
    path = tmp_path / "sweep" / "0" / f"{name}.log"  # copied back from the bucket at the end (sync_outputs)
    return path.read_text() if path.exists() else ""


@pytest.mark.usefixtures("hydra_restore_singletons")
@pytest.mark.parametrize("sync_s, kept", [(0.5, True), (0, False)], ids=["copied-periodically", "written-in-place"])
def test_a_killed_jobs_log_tail_reaches_the_bucket(vertex_emulator: Any, tmp_path: Path, sync_s: float,
                                                    kept: bool) -> None:
    name = f"killed-{'copied' if kept else 'inplace'}"
    overrides = _overrides(tmp_path, name, sync_s) + ["hold_max_s=15"]
    [ret] = launch_in_process(killed_once_its_log_is_in_the_bucket, [["tag=0"]], overrides)

    assert ret.status == JobStatus.FAILED and "killed by SIGKILL" in str(ret._return_value)
    # Periodic copies are closed files, so FUSE uploaded them; the log Hydra writes in place stays open until
    # the process dies, and a killed process never closes it: the bucket never gets it.
    assert (f"last words of {tmp_path / 'rec'}" in _job_log(tmp_path, name)) is kept


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_a_cancelled_job_copies_its_outputs_on_sigterm(vertex_emulator: Any, tmp_path: Path) -> None:
    # No periodic copy within the job's life: only the SIGTERM handler (and the exit) can copy the log.
    name = "cancelled"
    returns: List[Any] = []
    launch = threading.Thread(target=lambda: returns.extend(
        launch_in_process(waits_to_be_cancelled, [["tag=0"]], _overrides(tmp_path, name, 3600))))
    launch.start()
    try:
        wait_for(lambda: (tmp_path / "rec" / "running").exists(), 120, "the job to run")
        [job] = [j for j in vertex_emulator.jobs() if j["displayName"].startswith(f"{name}-")]
        vertex_emulator._cancel(job["name"], "customJobs")
    finally:
        launch.join(timeout=120)
    assert [r.status for r in returns] == [JobStatus.FAILED]
    assert f"last words of {tmp_path / 'rec'}" in _job_log(tmp_path, name)


# --- the FUSE stand-in itself: a killed holder's files are lost, whenever the mount looks -----------------------


def _holder(path: Path, then: str) -> "subprocess.Popen[bytes]":
    """A process in its own session (as a replica runs) that writes `path`, holds it open, then waits for stdin:
    "close" closes the file and exits 0; anything else leaves it open."""
    code = ("import sys; f = open(sys.argv[1], 'w'); f.write('tail'); f.flush(); print('open', flush=True); "
            "cmd = sys.stdin.readline().strip(); f.close() if cmd == 'close' else None")
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            start_new_session=True)


@pytest.mark.parametrize("how", ["killed", "closed"])
def test_a_file_is_uploaded_when_closed_and_lost_when_its_holder_is_killed(bucket: str, tmp_path: Path, how: str) -> None:
    from hydra_plugins.hydra_vertex_ai._backends.processes import _reap
    from hydra_plugins.hydra_vertex_ai._emulator import _FuseStandin

    fuse = _FuseStandin(tmp_path)
    path = tmp_path / bucket / f"fuse-{how}" / "job.log"
    path.parent.mkdir(parents=True)
    uri = f"gs://{bucket}/fuse-{how}/job.log"
    proc = _holder(path, how)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.readline()
    fuse.publish(poll=True)  # the mount sees it open
    if how == "killed":
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.stdin.write(b"close\n")
        proc.stdin.flush()
    wait_for(lambda: _state(proc.pid) == "Z", 30, "the holder to exit")
    # ended, not reaped yet: a look by the mount now must not take a killed holder's file for closed
    fuse.publish(poll=True)
    if how == "killed":
        assert not _storage.exists(uri)
    _reap(proc, fuse.killed)  # the supervisor: a kill is reported before the reap
    fuse.publish(poll=True)

    assert _storage.exists(uri) is (how == "closed")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
