"""One CustomJob as local processes: what the local backend, the local study engine and the emulator run.

Each replica of each worker pool is one process started with the pool's container command and args (the
image's `python` becomes this environment's interpreter), in its own working directory, with the
environment Vertex gives a container. Nothing is passed through a shell. A replica that fails fails the
job and stops the others, as on Vertex; SIGTERM or SIGHUP to the launcher stops them too (`_signals`).
"""
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .. import _storage
from .._vertex_facts import (
    CANCELLED,
    CLUSTER_SPEC_ENV,
    FAILED,
    JOB_ID_ENV,
    SUCCEEDED,
    TRIAL_ID_ENV,
    cluster_spec_json,
    output_dirs,
)
from .base import JobOutcome

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


def container_env(
    job: Mapping[str, Any],
    replica: Replica,
    job_id: str,
    cluster: Mapping[str, List[str]],
    trial_id: Optional[str] = None,
    extra_env: Optional[Mapping[str, str]] = None,
) -> Dict[str, str]:
    """The environment of one replica: the host's (less host-only paths), the spec's env, Vertex's vars."""
    spec = job["jobSpec"]
    env = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY_ENV}
    for item in spec["workerPoolSpecs"][replica.pool]["containerSpec"].get("env", []):
        env[item["name"]] = item["value"]
    task: Dict[str, Any] = {"type": f"workerpool{replica.pool}", "index": replica.index}
    env[JOB_ID_ENV] = job_id
    if trial_id is not None:
        task["trial"] = trial_id
        env[TRIAL_ID_ENV] = trial_id
    env[CLUSTER_SPEC_ENV] = cluster_spec_json(cluster, task, spec)
    base = spec.get("baseOutputDirectory", {}).get("outputUriPrefix")
    if base:
        env.update(output_dirs(_storage.join(base, trial_id) if trial_id else base))
    env.update(extra_env or {})
    return env


def thread_env(job: Mapping[str, Any], parallel: int) -> Dict[str, str]:
    """Cap each process's BLAS/OpenMP threads at its share of the cores, as torchrun does, unless the user
    set it: N parallel torch processes each using every core slow each other down badly. Local only:
    a Vertex replica has its machine to itself."""
    spec_env = {e["name"] for pool in job["jobSpec"]["workerPoolSpecs"] if pool
                for e in pool["containerSpec"].get("env", [])}
    if "OMP_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in spec_env or parallel <= 1:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}


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


def _exit_text(code: int) -> str:
    """How a replica ended, as a user reads it: a negative code is the signal that killed it (e.g. OOM)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


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
    extra_env: Optional[Mapping[str, str]] = None,
) -> JobOutcome:
    """Run every replica of `job` until all exit, one fails, or `cancel` is set."""
    if cancel.is_set():
        return JobOutcome(CANCELLED, "cancelled before it started", str(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    cluster = cluster_of(job)
    procs: Dict[Replica, subprocess.Popen[bytes]] = {}
    for p, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        for r in range(int(pool.get("replicaCount", 0)) if pool else 0):
            replica = Replica(p, r)
            cwd = workdir / f"workerpool{p}-{r}"
            cwd.mkdir(exist_ok=True)
            command = container_command(pool, extra_args)
            try:
                with open(workdir / f"workerpool{p}-{r}.log", "wb") as out:
                    procs[replica] = subprocess.Popen(
                        command,
                        cwd=cwd,
                        env=container_env(job, replica, job_id, cluster, trial_id, extra_env),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Ctrl-C reaches the launcher, which cancels deliberately
                    )
            except OSError as e:  # e.g. the command does not exist: this job fails, the sweep goes on
                for started in procs.values():
                    _stop(started)
                return JobOutcome(FAILED, f"replica workerpool{p}[{r}] could not start {command[:1]}: {e}", str(cwd))
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
                message = f"replica workerpool{replica.pool}[{replica.index}] {_exit_text(code)}"
                tail = _tail(log_path)
                return JobOutcome(FAILED, f"{message}; last lines of {log_path}:\n{tail}", str(log_path))
        time.sleep(0.05)
    return JobOutcome(SUCCEEDED, None, str(workdir))
