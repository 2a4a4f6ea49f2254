"""One CustomJob as local processes: what the local backend, the local study engine and the emulator run.

Each replica of each worker pool is one process started with the pool's container command and args (the
image's `python` becomes this environment's interpreter), in its own working directory, with the
environment Vertex gives a container: Vertex's variables, the spec's env, and only the few host variables
a local process needs (LOCAL_ENV_PASSTHROUGH, plus `local_env_passthrough` of the config). Anything else a
job needs comes from job.env or its own code, as on Vertex. Nothing is passed through a shell. A replica that fails fails the
job and stops the others, as on Vertex; SIGTERM or SIGHUP to the launcher stops them too (`_signals`).

Each job's folder records its replicas' PIDs (`pids.json`) as they start and how the job ended
(`outcome.json`): the replicas run in their own sessions, so they outlive a launcher killed outright, and a
re-attached launcher (or `hydra-vertex-ai status/cancel`) finds them there.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Union

from .. import _storage
from .._metrics import TRIAL_ID_ENV
from .._pids import pid_alive, start_ticks
from .._staging import replica_log
from .._vertex_facts import (
    CANCELLED,
    CLUSTER_SPEC_ENV,
    FAILED,
    JOB_ID_ENV,
    RUNNING,
    SUCCEEDED,
    cluster_spec_json,
    expand_env,
    output_dirs,
    timeout_error,
    timeout_s,
)
from .base import LOG_TAIL_HEAD, JobOutcome
from .python_package import InstallError, package_envs

if TYPE_CHECKING:
    from .forkserver import Forked, ForkServers

log = logging.getLogger(__name__)

_LOG_TAIL_LINES = 20
_KILL_GRACE_S = 5.0
POLL_S = 0.05  # how often a running job's replicas are looked at
PIDS_FILE = "pids.json"
OUTCOME_FILE = "outcome.json"
# Told a replica's session id (its pid: each replica leads its own session) when a signal ends it, before a
# SIGKILL or after it died of one: the emulator's FUSE stand-in drops the files it still held open.
KillHook = Callable[[int], None]
# A running replica: a process this launcher started, or one its fork server forked (`forkserver.Forked`).
Proc = Union["subprocess.Popen[bytes]", "Forked"]


# The host variables a local job keeps: what a container gets from its image's ENV and from Vertex, as this
# machine has it. That is where programs, shared libraries and this interpreter's environment are, the home
# folder (gcloud's default credentials), the temp dir, the locale, the CA certificates TLS clients use, the
# GPUs this machine lends its jobs (a Vertex container sees exactly its accelerators), the credentials and
# project a Vertex container gets from its service account, and the settings of the machine's runtime
# libraries (CUDA, NCCL, Open MPI/PMIx: GPU images set them in their ENV; without them, e.g., Open MPI refuses
# to start as root and Lightning's MPI probe kills the job). Everything else of the host (PYTHONPATH, what the
# shell or a launching script exported for the app) stays out: a Vertex container would not have it, and
# keeping it hides bugs.
LOCAL_ENV_PASSTHROUGH = (
    "PATH", "LD_LIBRARY_PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "VIRTUAL_ENV",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG",
)
LOCAL_ENV_PASSTHROUGH_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "NCCL_", "OMPI_", "PMIX_")


def host_env(passthrough: Sequence[str] = ()) -> Dict[str, str]:
    """The host variables a local job sees: the documented list plus `passthrough` (names from the config)."""
    names = set(LOCAL_ENV_PASSTHROUGH) | set(passthrough)
    return {k: v for k, v in os.environ.items() if k in names or k.startswith(LOCAL_ENV_PASSTHROUGH_PREFIXES)}


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
    passthrough: Sequence[str] = (),
) -> Dict[str, str]:
    """The environment of one replica: a few documented host variables, the spec's env, Vertex's vars."""
    spec = job["jobSpec"]
    env = host_env(passthrough)
    defined: Dict[str, str] = {}  # $(NAME) in a value refers to the spec's variables defined before it
    for item in program(spec["workerPoolSpecs"][replica.pool]).get("env", []):
        defined[item["name"]] = expand_env(item.get("value", ""), defined)
    env.update(defined)
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


def _spec_env_names(job: Mapping[str, Any]) -> Set[str]:
    return {e["name"] for pool in job["jobSpec"]["workerPoolSpecs"] if pool
            for e in program(pool).get("env", [])}


def _fuse_standin(job: Mapping[str, Any], workdir: Path) -> Dict[str, str]:
    """The job's stand-in for Vertex's /gcs mount (see `_storage.standin_mount`): a folder of its own, unless
    the spec names one (the emulator's, which it copies to the bucket)."""
    if _storage.FUSE_ROOT_ENV in _spec_env_names(job):
        return {}
    return {_storage.FUSE_ROOT_ENV: str(workdir / "gcs")}


def thread_env(job: Mapping[str, Any], parallel: int) -> Dict[str, str]:
    """Cap each process's BLAS/OpenMP threads at its share of the cores, as torchrun does, unless the user
    set it: N parallel torch processes each using every core slow each other down badly. Local only:
    a Vertex replica has its machine to itself."""
    if "OMP_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in _spec_env_names(job) or parallel <= 1:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}


def program(pool: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a pool runs: its containerSpec, or its pythonPackageSpec (both carry `args` and `env`)."""
    return pool.get("pythonPackageSpec") or pool.get("containerSpec") or {}


def image_entrypoint_pools(job: Mapping[str, Any]) -> List[int]:
    """Pools that run their image's own ENTRYPOINT (no command, e.g. the Reduction Server): no image runs here."""
    return [i for i, pool in enumerate(job["jobSpec"]["workerPoolSpecs"])
            if pool and "pythonPackageSpec" not in pool and not pool.get("containerSpec", {}).get("command")]


def unrunnable_message(job: Mapping[str, Any], pool: int) -> str:
    image = job["jobSpec"]["workerPoolSpecs"][pool]["containerSpec"].get("imageUri", "its image")
    return (f"workerpool{pool} runs the entrypoint of {image}; jobs run here as processes, not images: "
            "give that pool a command, or leave the pool out of local runs")


def container_command(pool: Mapping[str, Any], extra_args: Sequence[str], python: Optional[str] = None) -> List[str]:
    """The replica's command line; a pythonPackageSpec runs `python -m <pythonModule>` with `python` (its env)."""
    package = pool.get("pythonPackageSpec")
    if package:
        return [python or sys.executable, "-m", package["pythonModule"], *package.get("args", []), *extra_args]
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


def _exit_code(proc: Proc) -> Optional[int]:
    """The replica's exit code (negative: the signal that killed it) once it has ended, None while it runs.

    Read without reaping it where the platform can (waitid's WNOWAIT): until it is reaped its zombie keeps its
    session visible, so an `on_kill` hook called in between still knows which files it left open."""
    if proc.returncode is not None or not hasattr(os, "waitid"):
        return proc.poll()
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return proc.poll()
    if info is None or info.si_pid == 0:
        return None
    killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
    return -info.si_status if killed else info.si_status


def _reap(proc: Proc, on_kill: Optional[KillHook], timeout: Optional[float] = None) -> Optional[int]:
    """Wait up to `timeout` (None: no wait) for the replica to end; tell `on_kill` if a signal ended it, then reap it."""
    deadline = time.monotonic() + (timeout or 0.0)
    code = _exit_code(proc)
    while code is None and time.monotonic() < deadline:
        time.sleep(0.05)
        code = _exit_code(proc)
    if code is None:
        return None
    if code < 0 and on_kill is not None:
        on_kill(proc.pid)  # killed (out of memory, SIGTERM's default action): no clean close of its files
    proc.wait()
    return code


def _stop(proc: Proc, on_kill: Optional[KillHook] = None) -> None:
    """SIGTERM the replica's process group, SIGKILL it if it lingers."""
    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
        if sig == signal.SIGKILL and on_kill is not None:
            on_kill(proc.pid)
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # no such group: the replica has ended, or is not (yet) a group leader
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                break
        if sig == signal.SIGKILL:
            proc.wait()
        elif _reap(proc, on_kill, grace) is not None:
            break


def run_custom_job(
    job: Mapping[str, Any],
    *,
    job_id: str,
    workdir: Path,
    cancel: threading.Event,
    extra_args: Sequence[str] = (),
    trial_id: Optional[str] = None,
    extra_env: Optional[Mapping[str, str]] = None,
    on_kill: Optional[KillHook] = None,
    env_passthrough: Sequence[str] = (),
    forks: Optional["ForkServers"] = None,
) -> JobOutcome:
    """Run every replica of `job` until all exit, one fails, or `cancel` is set; with `forks`, replicas that run
    our entry are forked from a warm parent (`forkserver`), the others start as fresh processes."""
    if cancel.is_set():
        return JobOutcome(CANCELLED, "cancelled before it started", str(workdir))
    unrunnable = image_entrypoint_pools(job)
    if unrunnable:
        return JobOutcome(FAILED, unrunnable_message(job, unrunnable[0]), str(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        envs = package_envs(job)
    except (InstallError, OSError, subprocess.SubprocessError) as e:
        return _ended(workdir, JobOutcome(FAILED, f"the job's python packages could not be installed: {e}", str(workdir)))
    cluster = cluster_of(job)
    extra_env = {**_fuse_standin(job, workdir), **(extra_env or {})}
    procs: Dict[Replica, Proc] = {}
    for p, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        for r in range(int(pool.get("replicaCount", 0)) if pool else 0):
            replica = Replica(p, r)
            cwd = workdir / f"workerpool{p}-{r}"
            cwd.mkdir(exist_ok=True)
            package_env = envs.get(p)
            command = container_command(pool, extra_args, package_env.python if package_env else None)
            env = container_env(job, replica, job_id, cluster, trial_id, extra_env, env_passthrough)
            if package_env is not None:  # as a Vertex replica: its install first, apart from its run
                env.update(VIRTUAL_ENV=str(package_env.root), PATH=f"{package_env.root / 'bin'}{os.pathsep}{env.get('PATH', '')}")
            try:
                log_path = replica_log(workdir, p, r)
                forked = forks.start(command, cwd, env, log_path) if forks and package_env is None else None
                procs[replica] = forked or _popen(command, cwd, env, log_path,
                                                  package_env.describe() if package_env is not None else "")
                _record_pids(workdir, procs)
            except OSError as e:  # e.g. the command does not exist: this job fails, the sweep goes on
                for started in procs.values():
                    _stop(started, on_kill)
                return _ended(workdir, JobOutcome(
                    FAILED, f"replica workerpool{p}[{r}] could not start {command[:1]}: {e}", str(cwd)))
    run_start = time.monotonic()
    outcome = _supervise(procs, workdir, cancel, on_kill, timeout_s(job["jobSpec"]))
    if envs:
        with open(replica_log(workdir), "a") as chief_log:
            chief_log.write(f"[hydra-vertex-ai] ran for {time.monotonic() - run_start:.1f}s after its install\n")
    return _ended(workdir, outcome)


def prepare_fork_server(job: Mapping[str, Any], forks: "ForkServers", extra_env: Mapping[str, str],
                        env_passthrough: Sequence[str] = ()) -> None:
    """Start the fork server the job's replicas will be forked from, ahead of the first: the environment is
    the one `run_custom_job` gives them, less what differs from job to job (`forkserver.common_env`)."""
    pool = (job["jobSpec"]["workerPoolSpecs"] or [None])[0]
    if not pool or "pythonPackageSpec" in pool:  # python-package jobs are never forked
        return
    env = container_env(job, Replica(0, 0), "", cluster_of(job), None, extra_env, env_passthrough)
    forks.prepare(container_command(pool, (), None), env)


def _popen(command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path,
           header: str = "") -> "subprocess.Popen[bytes]":
    """A replica as a fresh process; its log starts with `header` (a python-package job's install)."""
    with open(log_path, "wb") as out:
        if header:
            out.write(header.encode())
            out.flush()
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher, which cancels deliberately
        )


# --- what a job's folder records, for a re-attached launcher and the CLI -------------------------------


def _record_pids(workdir: Path, procs: Mapping[Replica, Proc]) -> None:
    pids = {f"workerpool{r.pool}-{r.index}": [p.pid, start_ticks(p.pid)] for r, p in procs.items()}
    _write_json(workdir / PIDS_FILE, pids)


def _ended(workdir: Path, outcome: JobOutcome) -> JobOutcome:
    _write_json(workdir / OUTCOME_FILE, {"state": outcome.state, "error": outcome.error, "where": outcome.where})
    return outcome


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def recorded_pids(workdir: Path) -> Dict[str, List[Any]]:
    try:
        return dict(json.loads((workdir / PIDS_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def recorded_outcome(workdir: Path) -> Optional[JobOutcome]:
    try:
        data = json.loads((workdir / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return JobOutcome(data["state"], data.get("error"), data.get("where"))


def running_replicas(workdir: Path) -> List[int]:
    """PIDs of the job's replicas that still run (started by this or an earlier launcher)."""
    return [int(pid) for pid, ticks in recorded_pids(workdir).values() if pid_alive(int(pid), ticks)]


def local_job_state(workdir: Path, result_exists: bool) -> Optional[str]:
    """A local job's state from its folder: its outcome, RUNNING while a replica runs, None if never started;
    one that ended unwatched succeeded if its chief wrote a result (`result_exists`)."""
    outcome = recorded_outcome(workdir)
    if outcome is not None:
        return outcome.state
    if not recorded_pids(workdir):
        return None
    if running_replicas(workdir):
        return RUNNING
    return SUCCEEDED if result_exists else FAILED


def stop_recorded(workdir: Path) -> List[int]:
    """Stop a job started by another launcher (SIGTERM its replicas' process groups, then SIGKILL); the PIDs."""
    pids = running_replicas(workdir)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + _KILL_GRACE_S
        while time.monotonic() < deadline and running_replicas(workdir):
            time.sleep(0.05)
        if not running_replicas(workdir):
            break
    if pids and recorded_outcome(workdir) is None:
        _ended(workdir, JobOutcome(CANCELLED, "cancelled", str(workdir)))
    return pids


def adopt(workdir: Path, cancel: threading.Event, has_result: Callable[[], bool]) -> JobOutcome:
    """Wait for a job an earlier launcher started. Its replicas are not our children, so their exit codes are
    lost: once they have all ended, it succeeded if its chief wrote a result (`has_result`)."""
    while running_replicas(workdir):
        if cancel.is_set():
            stop_recorded(workdir)
            return recorded_outcome(workdir) or JobOutcome(CANCELLED, "cancelled", str(workdir))
        time.sleep(0.2)
    outcome = recorded_outcome(workdir)
    if outcome is not None:
        return outcome
    if has_result():
        return _ended(workdir, JobOutcome(SUCCEEDED, None, str(workdir)))
    log_path = replica_log(workdir)
    message = f"ended without a result while no launcher watched it{LOG_TAIL_HEAD}{log_path}:\n{_tail(log_path)}"
    return _ended(workdir, JobOutcome(FAILED, message, str(log_path)))


def _pause(running: Iterable[Proc]) -> None:
    """The wait between two looks at the replicas, cut short when a forked one ends (its server tells at once)."""
    forked = [proc for proc in running if not isinstance(proc, subprocess.Popen)]
    if forked:
        forked[0].ended(POLL_S)
    else:
        time.sleep(POLL_S)


def _supervise(
    procs: Dict[Replica, Proc],
    workdir: Path,
    cancel: threading.Event,
    on_kill: Optional[KillHook] = None,
    timeout: Optional[float] = None,
) -> JobOutcome:
    """Wait for the replicas; stop them all on `cancel`, on a failed replica, or past `timeout` seconds (the
    job's scheduling.timeout, which Vertex enforces the same way: see `_vertex_facts.timeout_error`)."""
    running = dict(procs)
    deadline = None if timeout is None else time.monotonic() + timeout
    while running:
        if cancel.is_set():
            for proc in running.values():
                _stop(proc, on_kill)
            return JobOutcome(CANCELLED, "cancelled", str(workdir))
        if deadline is not None and time.monotonic() >= deadline:
            for proc in running.values():
                _stop(proc, on_kill)
            return JobOutcome(FAILED, timeout_error(timeout or 0.0), str(workdir))
        for replica, proc in list(running.items()):
            code = _reap(proc, on_kill)
            if code is None:
                continue
            del running[replica]
            if code != 0:
                for other in running.values():
                    _stop(other, on_kill)
                log_path = replica_log(workdir, replica.pool, replica.index)
                message = f"replica workerpool{replica.pool}[{replica.index}] {_exit_text(code)}"
                tail = _tail(log_path)
                return JobOutcome(FAILED, f"{message}{LOG_TAIL_HEAD}{log_path}:\n{tail}", str(log_path))
        if running:  # once the last replica has ended the job has ended: no wait (50 ms a job, a trial)
            _pause(running.values())
    return JobOutcome(SUCCEEDED, None, str(workdir))
