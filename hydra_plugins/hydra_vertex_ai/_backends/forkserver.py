"""Local jobs started from a warm parent: a fork server that has imported what the jobs import.

A local job is `python -m hydra_plugins.hydra_vertex_ai.entry PAYLOAD`: a fresh interpreter that imports Hydra,
OmegaConf and the user's script with its third-party packages (torch and Lightning: seconds of CPU per job,
for a task that may take less than one). The fork server is one process per sweep, started with the jobs'
common environment, that imports those modules once; each job is forked from it and then becomes the job:

- its own process in its own session, with exactly the environment, working directory, argv, stdin/stdout/stderr
  and open files a fresh `python -m ...entry` would get (`_become_job`);
- the entry module runs as `__main__` and imports the user's script from the source snapshot in the job, so the
  script's module-level code runs in every job, with that job's environment. The server never imports anything
  of the project: only modules whose file lies in this environment's site-packages (`third_party`);
- the global random generators a fresh process would seed from the OS (random, numpy's, torch's) are reseeded;
- the server never initialises CUDA and runs no thread when it forks (checked: otherwise it refuses and jobs
  start as fresh processes); a job's own state dies with the job, so nothing of one job reaches the next;
- the server's objects are frozen out of garbage collection before each fork (`gc.freeze`, Python's recipe for
  fork servers): the job's collections and its exit skip them (a job with torch and Lightning loaded ends in
  0.3 s instead of 1.3 s), the job's own objects are collected as in a fresh process.

What is pre-imported: Hydra, OmegaConf and our container-side modules; the third-party modules the launching
process had imported when the sweep started (the user's script imports them at module level, before Hydra
runs); and those the first job that ends had imported (`modules-<pid>.txt`, written at its exit). The server
also runs Hydra's plugin scan once, which jobs keep unless their source ships plugins of its own (`_plugin_scan`).
`hydra.launcher.local_warm_start=false` starts every job as a fresh interpreter instead.
"""
import atexit
import gc
import importlib
import json
import logging
import os
import select
import signal
import site
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .._storage import FUSE_ROOT_ENV

log = logging.getLogger(__name__)

ENTRY_MODULE = "hydra_plugins.hydra_vertex_ai.entry"
# What every job imports: the container side of this package (and with it Hydra and OmegaConf).
BASE_PRELOAD = (
    "hydra", "omegaconf", "hydra.core.utils", "hydra.core.plugins", "hydra._internal.config_loader_impl",
    "hydra_plugins.hydra_vertex_ai._payload", "hydra_plugins.hydra_vertex_ai._storage",
    "hydra_plugins.hydra_vertex_ai._snapshot", "hydra_plugins.hydra_vertex_ai._task_ref",
    "hydra_plugins.hydra_vertex_ai._output_sync", "hydra_plugins.hydra_vertex_ai._distributed",
    "hydra_plugins.hydra_vertex_ai._search_space", "hydra_plugins.hydra_vertex_ai.metrics",
)
# Packages only the launching side uses (the Vertex client, the local study engine, reports, tests): a job
# that needs one imports it itself.
HOST_ONLY = frozenset({
    "google", "grpc", "proto", "optuna", "sqlalchemy", "alembic", "colorlog", "plotly", "kfp", "_pytest", "pytest",
    "pluggy", "hypothesis", "gcp_storage_emulator", "hydra_plugins",
})
# Variables that differ between the jobs of one sweep: the server's environment is the rest.
PER_JOB_PREFIXES = ("CLOUD_ML_", "AIP_")
# (the /gcs stand-in's folder is each job's own: read when used, never at import)
PER_JOB_NAMES = frozenset({"CLUSTER_SPEC", "TF_CONFIG", FUSE_ROOT_ENV})
MODULES_FILE = "modules-{pid}.txt"
# The server's last argument: room in its argv memory for each job's own command line (`_show_command`).
PAD = " " * 8192


def _site_dirs() -> Tuple[str, ...]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs)


def third_party(names: Iterable[str], modules: Optional[Mapping[str, Any]] = None) -> List[str]:
    """The loaded modules among `names` whose file lies in this environment's site-packages, not host-only."""
    modules = sys.modules if modules is None else modules
    sites, out = _site_dirs(), []
    for name in names:
        origin = getattr(modules.get(name), "__file__", None)
        if not origin or name.split(".")[0] in HOST_ONLY or name == "__main__":
            continue
        if os.path.realpath(origin).startswith(sites):
            out.append(name)
    return out


def is_entry_command(command: Sequence[str]) -> bool:
    """Whether a replica's command is our container entry run by this interpreter (what the server can fork)."""
    return len(command) >= 3 and command[0] == sys.executable and command[1:3] == ["-m", ENTRY_MODULE]


def common_env(env: Mapping[str, str]) -> Dict[str, str]:
    """The part of a job's environment that every job of the sweep shares: what the server runs with."""
    return {k: v for k, v in env.items() if k not in PER_JOB_NAMES and not k.startswith(PER_JOB_PREFIXES)}


# --- the launching side ------------------------------------------------------------------------------------


class Forked:
    """A job forked by the server: the part of `subprocess.Popen` that `processes` uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None
        self._ended = threading.Event()

    def _end(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> Optional[int]:
        return self.returncode

    def ended(self, timeout: float) -> bool:
        """Whether it has ended, waiting up to `timeout` seconds for it."""
        return self._ended.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
        return self.returncode


class ForkServer:
    """One warm parent for the jobs whose common environment is `env`."""

    def __init__(self, env: Mapping[str, str], preload: Sequence[str], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._replies: Dict[int, Any] = {}
        self._reply = threading.Condition()
        self._children: Dict[int, Forked] = {}
        self._early_exits: Dict[int, int] = {}
        self.usable = True
        with open(workdir / "forkserver.log", "ab") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._backends.forkserver", PAD],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=workdir, env=dict(env),
                start_new_session=True,  # Ctrl-C reaches the launcher, which stops the jobs deliberately
            )
        self._send({"preload": list(preload), "report_dir": str(workdir)})
        self._reader = threading.Thread(target=self._read, name="vertex-forkserver", daemon=True)
        self._reader.start()
        self._next = 0

    def _send(self, message: Mapping[str, Any]) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        self._proc.stdin.flush()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            message = json.loads(line)
            if "exit" in message:
                pid, code = int(message["exit"]), int(message["code"])
                child = self._children.pop(pid, None)
                if child is not None:
                    child._end(code)
                else:
                    self._early_exits[pid] = code
                continue
            with self._reply:
                self._replies[int(message.get("id", -1))] = message
                self._reply.notify_all()
        with self._reply:  # the server is gone: jobs it forked go on, their exit codes are lost
            self.usable = False
            self._reply.notify_all()
        for child in list(self._children.values()):
            child._end(255)

    def _request(self, message: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        with self._lock:
            self._next += 1
            message["id"] = self._next
            try:
                self._send(message)
            except OSError:
                return None
            with self._reply:
                while self._next not in self._replies and self.usable:
                    self._reply.wait()
                return self._replies.pop(self._next, None)

    def spawn(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> Optional[Forked]:
        """Fork a job; None when the server cannot (it says why in its log): start a fresh process instead."""
        if not self.usable:
            return None
        reply = self._request({"argv": list(argv), "cwd": str(cwd), "env": dict(env), "log": str(log_path)})
        if reply is None or "pid" not in reply:
            if reply is not None and reply.get("error"):
                log.info("warm start refused, fresh processes instead: %s", reply["error"])
            self.usable = False
            return None
        child = Forked(int(reply["pid"]))
        self._children[child.pid] = child
        if child.pid in self._early_exits:  # ended before we registered it
            child._end(self._early_exits.pop(child.pid))
        return child

    def close(self) -> None:
        try:
            assert self._proc.stdin is not None
            self._proc.stdin.close()  # the server exits; jobs still running go on (their own sessions)
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class ForkServers:
    """The fork servers of one run, one per common environment, started on first use; `close()` ends them."""

    def __init__(self, workdir: Path, preload: Sequence[str] = ()) -> None:
        self.workdir = workdir
        # `preload`: what the launching process had imported (`third_party`), i.e. the user's script's packages
        self.preload = list(BASE_PRELOAD) + list(preload)
        self._servers: Dict[Tuple[Tuple[str, str], ...], ForkServer] = {}
        self._lock = threading.Lock()

    def start(self, command: Sequence[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> Optional[Forked]:
        """The job forked from a warm parent, or None if this command or this server cannot be forked."""
        server = self.prepare(command, env)
        return server.spawn(command[3:], cwd, env, log_path) if server is not None else None

    def prepare(self, command: Sequence[str], env: Mapping[str, str]) -> Optional[ForkServer]:
        """The server for jobs of this command and environment, started now if it is not yet: before the
        first job, its imports overlap what the launcher still does until then."""
        if not is_entry_command(command):
            return None
        shared = common_env(env)
        key = tuple(sorted(shared.items()))
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = ForkServer(shared, self.preload,
                                                         self.workdir / f"forkserver-{len(self._servers)}")
        return server

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.close()
            self._servers.clear()


# --- the server -----------------------------------------------------------------------------------------------


def _import_all(names: Iterable[str]) -> None:
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except BaseException as e:  # a module that cannot be imported here is imported (or not) by the job
            print(f"forkserver: not pre-imported {name}: {e!r}", file=sys.stderr, flush=True)


def _warm_up() -> None:
    """What every job does first and can share: the override grammar's parser tables, Hydra's plugin scan."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .._plugin_scan import scan

    OverridesParser.create().parse_overrides(["a=1", "+b=[1,2]", "~c"])
    scan()


def _fork_unsafe() -> Optional[str]:
    """Why forking now would be unsafe: CUDA initialised, or a Python thread running (a lock it holds, e.g.
    logging's, would stay held forever in the child). Native worker pools started at import (OpenBLAS's, under
    numpy) are not counted: they stop and restart around fork() through their pthread_atfork handlers, which is
    what makes `multiprocessing`'s fork start method work with numpy."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and getattr(cuda, "is_initialized", lambda: False)():
        return "CUDA was initialised while pre-importing"
    if threading.active_count() > 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        return f"{threading.active_count() - 1} Python thread(s) run after pre-importing: {names}"
    return None


class _Lines:
    """Lines from a raw file descriptor, read without blocking once select() says there is data."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer, self.eof = fd, b"", False

    def read(self) -> List[bytes]:
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        return lines


def _serve() -> Optional[Dict[str, Any]]:
    """The server loop. Returns, in a forked child only, the request that child is to run."""
    out = os.dup(1)  # the protocol; a stray print of a pre-imported module goes to the log instead
    os.dup2(2, 1)
    requests = _Lines(0)

    def send(message: Mapping[str, Any]) -> None:
        os.write(out, json.dumps(message).encode() + b"\n")

    first: List[bytes] = []
    while not first and not requests.eof:
        first = requests.read()
    if not first:
        return None
    setup = json.loads(first[0])
    pending = first[1:]
    report_dir = Path(setup["report_dir"])
    gc.disable()  # no collections while importing: no holes in the pages the jobs share (gc.freeze's recipe)
    _import_all(setup["preload"])
    _warm_up()
    learned = False
    ended = _child_ends()
    while True:
        if not pending:
            ready, _, _ = select.select([ended] if requests.eof else [0, ended], [], [], 0.5)
            if ended in ready:
                os.read(ended, 1 << 12)
            if 0 in ready:
                pending = requests.read()
        for raw in pending:
            request = json.loads(raw)
            unsafe = _fork_unsafe()
            if unsafe:
                print(f"forkserver: not forking: {unsafe}", file=sys.stderr, flush=True)
                send({"id": request["id"], "error": unsafe})
                continue
            # what it imported, until the server has learned from one job (listing them costs 0.1 s with torch)
            request["report"] = None if learned else str(report_dir / MODULES_FILE)
            sys.stdout.flush()  # nothing of the server's buffers may reach a job's log
            sys.stderr.flush()
            # What the server holds (the pre-imported modules) is left out of every later collection, in the
            # job too: Python's recipe for a fork server (docs of gc.freeze). A job's collections, and the
            # interpreter's teardown at its exit (1.1 s with torch and Lightning loaded, here), no longer walk
            # (and copy) the server's objects; the job's own objects are collected as in a fresh process.
            gc.freeze()
            session_r, session_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _as_fresh_signals(ended)
                os.close(out)
                os.close(session_r)
                os.setsid()  # its own session and process group before the launcher knows its pid
                os.close(session_w)
                return request
            os.close(session_w)
            os.read(session_r, 1)  # EOF once the child has its session (or has died): a stop now reaches it
            os.close(session_r)
            send({"id": request["id"], "pid": pid})
        pending = []
        learned = _reap(send, report_dir, learned)
        if requests.eof and not _has_children():
            return None


def _child_ends() -> int:
    """A descriptor that becomes readable when a job ends (SIGCHLD through Python's wakeup fd): the server
    reports the end at once instead of at its next poll."""
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a Python handler, so that the wakeup fd is written
    return read


def _as_fresh_signals(ended: int) -> None:
    """In a forked job: SIGCHLD and the wakeup fd as in a fresh interpreter (the job's own subprocesses)."""
    wakeup = signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in (ended, wakeup):
        if fd >= 0:
            os.close(fd)


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _reap(send: Any, report_dir: Path, learned: bool) -> bool:
    """Report every job that ended; pre-import what the first of them had imported. Returns whether it has."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return learned
        if pid == 0:
            return learned
        send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        report = report_dir / MODULES_FILE.format(pid=pid)
        if report.exists():
            if not learned:
                _import_all(report.read_text().split())
                learned = True
            report.unlink()


def _become_job(request: Mapping[str, Any], initial_path: List[str]) -> None:
    """In the forked child (already in its own session): turn into what `python -m ...entry ARGS` would be."""
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in _open_fds():  # as Popen(close_fds=True): only 0, 1, 2
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass
    gc.enable()  # as in a fresh interpreter (the server's objects stay frozen: see _serve)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = [os.getcwd(), *initial_path[1:]]  # `python -m` puts the working directory first
    sys.argv = ["-m", *request["argv"]]
    _show_command([sys.executable, "-m", ENTRY_MODULE, *request["argv"]])
    _reseed()
    if request["report"]:
        atexit.register(_report_modules, request["report"].format(pid=os.getpid()))


def _show_command(argv: Sequence[str]) -> None:
    """What `ps` and `pgrep -f` show for this process: the job's command, as for a fresh process, not the
    server's. The kernel reads a process's command line from its argv memory (/proc/self/stat: arg_start,
    arg_end), which the server reserved with a blank argument (PAD) and which nothing reads after start-up."""
    try:
        import ctypes

        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5), counted after the name
        data = "\0".join(argv).encode()[: end - start - 1]
        ctypes.memmove(start, data + b"\0" * (end - start - len(data)), end - start)
    except Exception:  # no /proc, or an unexpected layout: `ps` shows the server's command, nothing else differs
        pass


def _open_fds() -> List[int]:
    try:
        return [int(fd) for fd in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(3, 256))


def _reseed() -> None:
    """A fresh interpreter seeds these from the OS; forked jobs would all share the server's state."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "seed"):
        torch.seed()  # CUDA generators are seeded lazily: no CUDA initialised here
    # `random` reseeds itself in a forked child (os.register_at_fork)


def _report_modules(path: str) -> None:
    try:
        Path(path).write_text("\n".join(third_party(list(sys.modules))))
    except OSError:
        pass


def main() -> None:
    initial_path = list(sys.path)
    request = _serve()
    if request is None:  # the server holds no state of anyone's: no teardown (a second with torch loaded)
        sys.stderr.flush()
        os._exit(0)
    _become_job(request, initial_path)
    import runpy

    sys.modules.pop(ENTRY_MODULE, None)  # as in a fresh `python -m`: __main__ is the only copy yet
    runpy.run_module(ENTRY_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
