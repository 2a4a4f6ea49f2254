"""The local backend: runs the very CustomJob specs Vertex would run, as local processes.

Each replica of each worker pool is one process started with the pool's container command and args (the
image's `python` becomes this environment's interpreter), in its own empty working directory, with the
environment Vertex gives a container. Nothing is passed through a shell.
"""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .. import _storage
from .base import CANCELLED, FAILED, SUCCEEDED, Backend, JobOutcome

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 20
_KILL_GRACE_S = 5.0
# The submitting shell's PYTHONPATH does not exist in a container; keeping it would hide missing code.
_HOST_ONLY_ENV = ("PYTHONPATH",)


@dataclass(frozen=True)
class Replica:
    pool: int
    index: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_of(job: Mapping[str, Any]) -> Dict[str, List[str]]:
    """CLUSTER_SPEC's `cluster`: every replica of every pool, on loopback."""
    cluster = {}
    for i, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        if pool:
            cluster[f"workerpool{i}"] = [f"127.0.0.1:{_free_port()}" for _ in range(int(pool["replicaCount"]))]
    return cluster


def output_dirs(base_output_dir: str) -> Dict[str, str]:
    """The AIP_* directories Vertex derives from a job's base output directory."""
    return {
        "AIP_MODEL_DIR": _storage.join(base_output_dir, "model", ""),
        "AIP_CHECKPOINT_DIR": _storage.join(base_output_dir, "checkpoints", ""),
        "AIP_TENSORBOARD_LOG_DIR": _storage.join(base_output_dir, "logs", ""),
    }


def container_env(
    job: Mapping[str, Any],
    replica: Replica,
    job_id: str,
    cluster: Mapping[str, List[str]],
    trial_id: Optional[str] = None,
) -> Dict[str, str]:
    """The environment of one replica: the host's (less host-only paths), the spec's env, Vertex's vars."""
    spec = job["jobSpec"]
    env = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY_ENV}
    for item in spec["workerPoolSpecs"][replica.pool]["containerSpec"].get("env", []):
        env[item["name"]] = item["value"]
    task: Dict[str, Any] = {"type": f"workerpool{replica.pool}", "index": replica.index}
    env["CLOUD_ML_JOB_ID"] = job_id
    if trial_id is not None:
        task["trial"] = trial_id
        env["CLOUD_ML_TRIAL_ID"] = trial_id
    env["CLUSTER_SPEC"] = json.dumps(
        {"cluster": dict(cluster), "environment": "cloud", "task": task, "job": json.dumps(spec)}
    )
    base = spec.get("baseOutputDirectory", {}).get("outputUriPrefix")
    if base:
        env.update(output_dirs(_storage.join(base, trial_id) if trial_id else base))
    return env


def container_command(pool: Mapping[str, Any], extra_args: Sequence[str]) -> List[str]:
    spec = pool["containerSpec"]
    command = list(spec.get("command", []))
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable
    return command + list(spec.get("args", [])) + list(extra_args)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    """SIGTERM the replica's process group, SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except (subprocess.TimeoutExpired, TypeError):
            continue


def run_custom_job(
    job: Mapping[str, Any],
    *,
    job_id: str,
    workdir: Path,
    cancel: threading.Event,
    extra_args: Sequence[str] = (),
    trial_id: Optional[str] = None,
) -> JobOutcome:
    """Run every replica of `job` until all exit, one fails, or `cancel` is set."""
    if cancel.is_set():
        return JobOutcome(CANCELLED, "cancelled before it started", str(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = cluster_of(job)
    procs: Dict[Replica, "subprocess.Popen[bytes]"] = {}
    for p, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        for r in range(int(pool.get("replicaCount", 0)) if pool else 0):
            replica = Replica(p, r)
            cwd = workdir / f"workerpool{p}-{r}"
            cwd.mkdir(exist_ok=True)
            with open(workdir / f"workerpool{p}-{r}.log", "wb") as out:
                procs[replica] = subprocess.Popen(
                    container_command(pool, extra_args),
                    cwd=cwd,
                    env=container_env(job, replica, job_id, cluster, trial_id),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the launcher, which cancels deliberately
                )
    return _supervise(procs, workdir, cancel)


def _supervise(procs: Dict[Replica, "subprocess.Popen[bytes]"], workdir: Path, cancel: threading.Event) -> JobOutcome:
    running = dict(procs)
    while running:
        if cancel.is_set():
            for proc in running.values():
                _stop(proc)
            return JobOutcome(CANCELLED, "cancelled", str(workdir))
        for replica, proc in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[replica]
            if code != 0:
                for other in running.values():
                    _stop(other)
                log_path = workdir / f"workerpool{replica.pool}-{replica.index}.log"
                message = f"replica workerpool{replica.pool}[{replica.index}] exited with code {code}"
                tail = _tail(log_path)
                return JobOutcome(FAILED, f"{message}; last lines of {log_path}:\n{tail}", str(log_path))
        time.sleep(0.05)
    return JobOutcome(SUCCEEDED, None, str(workdir))


class LocalBackend(Backend):
    """Runs jobs as local processes, at most `max_parallel` at once; logs go to staging/jobs/<num>/."""

    def __init__(self, staging: str, max_parallel: Optional[int] = None) -> None:
        self.staging = staging
        self.max_parallel = max_parallel or os.cpu_count() or 1

    def container_path(self, local_path: str) -> str:
        return os.path.abspath(local_path)

    def run_jobs(self, jobs: Sequence[Dict[str, Any]]) -> List[JobOutcome]:
        cancel = threading.Event()
        ids = [job["labels"].get("hydra_uid", str(i)) for i, job in enumerate(jobs)]
        dirs = [Path(self.staging, "jobs", job["labels"].get("hydra_job", str(i))) for i, job in enumerate(jobs)]
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="vertex-local") as pool:
            futures = [
                pool.submit(run_custom_job, job, job_id=job_id, workdir=workdir, cancel=cancel)
                for job, job_id, workdir in zip(jobs, ids, dirs)
            ]
            try:
                self._wait(futures, jobs)
            except BaseException:
                cancel.set()
                never_started = sum(f.cancel() for f in futures)
                stopped = sum(f.result().state == CANCELLED for f in futures if not f.cancelled())
                log.warning("Interrupted: stopped %d running and %d queued local job(s)", stopped, never_started)
                raise
        return [f.result() for f in futures]

    @staticmethod
    def _wait(futures: List["Future[JobOutcome]"], jobs: Sequence[Dict[str, Any]]) -> None:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                i = futures.index(f)
                outcome = f.result()
                log.info(
                    "[%d/%d done] %s: %s", len(futures) - len(pending), len(futures),
                    jobs[i]["displayName"], outcome.state.replace("JOB_STATE_", ""),
                )
