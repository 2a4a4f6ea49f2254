"""The job's Hydra output dir on the container's disk, copied to its place on the Cloud Storage FUSE mount.

Cloud Storage FUSE uploads a file when it is closed (gcsfuse docs/semantics.md: "Data is guaranteed to be on
GCS only after the file is closed"), and Hydra's log handler keeps `<job>.log` open until the process ends:
a job that is preempted, cancelled, timed out or killed for memory would leave nothing of its log in the
bucket. So when the job's output dir is under the FUSE root, the entry runs the job in a local directory
and a `OutputSync` copies what changed to the mount (each copy opened, written and closed, so published):
every `interval_s` seconds, at exit, and on SIGTERM (which Vertex may or may not send before it stops a
container: not documented, so the periodic copy is what a hard kill leaves).

Imported by the entry only; standard library only.
"""
import logging
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

log = logging.getLogger(__name__)

# Seconds between two copies; set by the launcher from `job.output_sync_s` when not the default.
SYNC_INTERVAL_ENV = "HYDRA_VERTEX_AI_OUTPUT_SYNC_S"
DEFAULT_INTERVAL_S = 60.0


def interval_s(environ: Mapping[str, str]) -> float:
    text = environ.get(SYNC_INTERVAL_ENV)
    try:
        return float(text) if text else DEFAULT_INTERVAL_S
    except ValueError:
        log.warning("%s=%r is not a number; copying outputs every %g s", SYNC_INTERVAL_ENV, text, DEFAULT_INTERVAL_S)
        return DEFAULT_INTERVAL_S


def on_fuse_mount(path: str, fuse_root: str) -> bool:
    root = os.path.abspath(fuse_root).rstrip(os.sep) + os.sep
    return os.path.abspath(path).startswith(root)


class OutputSync:
    """Copies new and changed files of `local_dir` to `target_dir`, from a thread and on demand."""

    def __init__(self, local_dir: str, target_dir: str, interval: float) -> None:
        self.local_dir, self.target_dir, self.interval = Path(local_dir), Path(target_dir), interval
        self._copied: Dict[Path, Tuple[int, int]] = {}
        # reentrant: a SIGTERM handler may sync while the main thread is inside a sync
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="hydra-vertex-ai-output-sync", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync()

    def sync(self) -> None:
        """Copy every file that changed since its last copy; a file that cannot be copied is tried next time."""
        with self._lock:
            for path in sorted(p for p in self.local_dir.rglob("*") if p.is_file()):
                try:
                    stat = path.stat()
                    key = (stat.st_mtime_ns, stat.st_size)
                    if self._copied.get(path) == key:
                        continue
                    target = self.target_dir / path.relative_to(self.local_dir)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, target)  # opened, written and closed: FUSE uploads it now
                    self._copied[path] = key
                except OSError as e:
                    log.warning("cannot copy %s to the bucket: %s", path, e)

    def close(self) -> None:
        """Stop the thread and copy what is left (at exit)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.sync()


def relocate(config: Any, fuse_root: str, environ: Mapping[str, str]) -> Optional[OutputSync]:
    """Point the job's `hydra.sweep.dir` at a local directory when it is on the FUSE mount, start copying it
    back there, and copy it on SIGTERM too; None (and nothing changed) otherwise, or with `output_sync_s: 0`."""
    from omegaconf import read_write

    target = str(config.hydra.sweep.dir)
    interval = interval_s(environ)
    if interval <= 0 or not on_fuse_mount(target, fuse_root):
        return None
    local = tempfile.mkdtemp(prefix="hydra-vertex-ai-outputs-")
    with read_write(config.hydra.sweep):
        config.hydra.sweep.dir = local
    sync = OutputSync(local, target, interval)
    sync.start()
    _sync_on_sigterm(sync)
    log.debug("hydra output dir %s on local disk, copied to %s every %g s", local, target, interval)
    return sync


def _sync_on_sigterm(sync: OutputSync) -> None:
    """SIGTERM: copy the outputs, then exit as terminated (143), letting `finally` blocks and atexit run."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        sync.sync()
        signal.signal(signum, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
