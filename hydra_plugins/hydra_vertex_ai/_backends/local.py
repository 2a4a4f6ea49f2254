"""The local backend: runs the very CustomJob specs Vertex would run, as local processes (`processes`).

Jobs run at most `max_parallel` at once; each job's replica logs go to its staging folder. A study runs in
the local study engine (`local_study`). Ctrl-C, SIGTERM and SIGHUP stop every job.

Re-attaching (`attach`): a job whose folder records how it ended is not run again, one whose replicas still
run (they live in their own sessions and outlive a killed launcher) is waited for, the others are started.
Detached (`wait=false`): a supervisor process, in its own session, runs the sweep as a re-attached launcher
would (`python -m hydra_plugins.hydra_vertex_ai._cli _supervise MANIFEST`); the launcher returns at once.
"""
import json
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .. import _storage
from .._progress import JobRow, Progress
from .._signals import interrupts, shielded
from .._staging import Staging, replica_log
from .._vertex_facts import CANCELLED, QUEUED, RUNNING
from .base import NEVER_CREATED, Backend, FailureWatch, JobFeed, JobOutcome, Outputs, TuningOutcome, summarize_trials
from .forkserver import ForkServers, third_party
from .processes import (
    adopt,
    pid_alive,
    prepare_fork_server,
    recorded_outcome,
    recorded_pids,
    run_custom_job,
    thread_env,
)

log = logging.getLogger(__name__)

JOB_SPEC_FILE = "job.json"
# how often a job waiting to be staged looks whether the sweep was stopped
FEED_WAIT_S = 0.2
SUPERVISOR_FILE = "supervisor.json"


class LocalBackend(Backend):
    """Runs jobs as local processes, at most `max_parallel` at once; logs go to each job's staging folder."""

    def __init__(self, staging: Staging, max_parallel: Optional[int] = None, env_passthrough: Sequence[str] = (),
                 warm_start: bool = False) -> None:
        self.staging = staging
        self.max_parallel = max_parallel or os.cpu_count() or 1
        # host variables the jobs see besides the documented few (processes.LOCAL_ENV_PASSTHROUGH)
        self.env_passthrough = tuple(env_passthrough)
        self.warm_start = warm_start  # jobs forked from a warm parent (forkserver) instead of fresh interpreters
        self.forks: Optional[ForkServers] = None
        # what the launching process has imported now, before our own run-time imports (optuna...)
        self._preload = third_party(list(sys.modules)) if warm_start else []

    @contextmanager
    def _fork_servers(self) -> Iterator[None]:
        """The fork servers of one run (with `warm_start`), ended when the run ends."""
        self.forks = ForkServers(Path(self.staging.root), self._preload) if self.warm_start else None
        try:
            yield
        finally:
            if self.forks is not None:
                self.forks.close()
            self.forks = None

    @contextmanager
    def tuning_session(self, job: Dict[str, Any]) -> Iterator[None]:
        """The trials' fork server starts now: its imports (0.2 s and more) overlap the staging and the study's
        set-up instead of delaying the first trial. Within a session, `run_tuning_job`'s own is that one."""
        if self.forks is not None:
            yield
            return
        with self._fork_servers():
            if self.forks is not None:
                trials = {"jobSpec": job["trialJobSpec"]}
                prepare_fork_server(trials, self.forks, thread_env(trials, int(job.get("parallelTrialCount") or 1)),
                                    self.env_passthrough)
            yield

    def container_path(self, local_path: str) -> str:
        return os.path.abspath(local_path)

    def output_uri(self, local_path: str) -> Optional[str]:
        return None  # local jobs write where this machine reads

    def job_dir(self, job: Dict[str, Any], i: int = 0) -> Path:
        return Path(self.staging.job_dir(int(job["labels"].get("hydra_job", i))))

    def run_jobs(self, jobs: Sequence[Dict[str, Any]], outputs: Optional[Outputs] = None,
                 feed: Optional[JobFeed] = None) -> List[JobOutcome]:
        feed = feed or JobFeed.all_ready(len(jobs))
        dirs = [self.job_dir(job, i) for i, job in enumerate(jobs)]
        for workdir in dirs:
            workdir.mkdir(parents=True, exist_ok=True)
        if not self.wait:
            feed.wait_for(len(jobs))  # the supervisor runs what is staged
            for job, workdir in zip(jobs, dirs):
                _write_spec(job, workdir)
            self._detach()
            return [JobOutcome(QUEUED, None, str(replica_log(d))) for d in dirs]
        cancel = threading.Event()
        ids = [job["labels"].get("hydra_uid", str(i)) for i, job in enumerate(jobs)]
        progress = Progress(f"local sweep {self.staging.sweep_id}", self.job_overrides)
        futures: List[Future[JobOutcome]] = []
        with self._fork_servers(), ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="vertex-local") as pool:
            # From the first submit on, an interrupt stops the jobs: one submitted as it lands sees `cancel`.
            try:
                with interrupts():
                    for order, (job, job_id, workdir) in enumerate(zip(jobs, ids, dirs)):
                        futures.append(pool.submit(self._timed, time.time(), feed, order, job, job_id, workdir,
                                                   cancel, min(self.max_parallel, len(jobs))))
                    self._wait(futures, jobs, dirs, progress, feed)
            except BaseException:
                with shielded(lambda: "stopping the local jobs"):  # a second Ctrl-C must not orphan them
                    cancel.set()
                    for f in futures:
                        f.cancel()
                    # Waits for every running job to be stopped; a job that raised must not hide the interrupt.
                    cancelled = [i for i, f in enumerate(futures)
                                 if f.cancelled() or (f.exception() is None and f.result().state == CANCELLED)]
                    never = [i for i in cancelled if not recorded_pids(dirs[i])]  # queued: never started
                    stopped = [jobs[i]["displayName"] for i in cancelled if i not in never]
                    never_started = len(never)
                    self.record_never_created([ids[i] for i in never])
                    progress.close()
                    for name in stopped:
                        print(f"Interrupted: cancelled local job {name}", file=sys.stderr, flush=True)
                    log.warning("Interrupted: stopped %d running and %d queued local job(s)", len(stopped),
                                never_started)
                raise
            progress.close()
        return [f.result() for f in futures]

    def _timed(self, queued: float, feed: JobFeed, order: int, job: Dict[str, Any], job_id: str, workdir: Path,
               cancel: threading.Event, parallel: int) -> JobOutcome:
        """`_run_one` once the job is staged, with when it was queued, started and ended (the report's timeline)."""
        while not feed.wait_for(order + 1, FEED_WAIT_S):  # raises what preparing the jobs raised
            if cancel.is_set():
                return JobOutcome(CANCELLED, NEVER_CREATED, str(workdir))
        _write_spec(job, workdir)
        started = time.time()
        outcome = self._run_one(job, job_id, workdir, cancel, parallel)
        if outcome.ended_at is None:
            outcome.created_at, outcome.started_at, outcome.ended_at = queued, started, time.time()
        return outcome

    def _run_one(self, job: Dict[str, Any], job_id: str, workdir: Path, cancel: threading.Event,
                 parallel: int) -> JobOutcome:
        """Run the job; when re-attaching, first take what an earlier launcher left: an end, or running replicas."""
        if job_id in self.cancelled and not recorded_pids(workdir):  # cancelled while queued: never started
            return JobOutcome(CANCELLED, NEVER_CREATED, str(workdir))
        if self.attach:
            ended = recorded_outcome(workdir)
            if ended is not None:
                return ended
            if recorded_pids(workdir):
                log.info("%s: re-attached to its running processes (log %s)", job["displayName"],
                         replica_log(workdir))
                result = self.staging.result(int(job["labels"].get("hydra_job", 0)))
                return adopt(workdir, cancel, lambda: _storage.exists(result))
        if not cancel.is_set():
            log.info("%s started: log %s", job["displayName"], replica_log(workdir))
        return run_custom_job(job, job_id=job_id, workdir=workdir, cancel=cancel, extra_env=thread_env(job, parallel),
                              env_passthrough=self.env_passthrough, forks=self.forks)

    def _wait(self, futures: List["Future[JobOutcome]"], jobs: Sequence[Dict[str, Any]], dirs: List[Path],
              progress: Progress, feed: JobFeed) -> None:
        pending = set(futures)
        while True:
            feed.check()  # raises here, in the main thread, what preparing the jobs raised
            progress.jobs([self._row(job, f, d) for job, f, d in zip(jobs, futures, dirs)])
            if not pending:
                return
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)

    @staticmethod
    def _row(job: Dict[str, Any], future: "Future[JobOutcome]", workdir: Path) -> JobRow:
        if future.done() and not future.cancelled() and future.exception() is None:
            state = future.result().state
        else:
            state = RUNNING if future.running() and recorded_pids(workdir) else QUEUED
        return JobRow.of(job, state, str(replica_log(workdir)))

    def _detach(self) -> None:
        """Start the supervisor that runs this sweep's jobs after the launcher has returned."""
        root = Path(self.staging.root)
        with open(root / "supervisor.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli", "_supervise", self.staging.manifest],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the launcher and its terminal
            )
        from .._pids import pid_record
        from .processes import _write_json

        _write_json(root / SUPERVISOR_FILE, pid_record(proc.pid))
        log.info("detached: local jobs run under supervisor PID %d (log %s)", proc.pid, root / "supervisor.log")

    def run_tuning_job(self, job: Dict[str, Any], outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Run the study on this machine; the engine runs in a thread so Ctrl-C can stop it cleanly."""
        from .local_study import require_engine

        with self.tuning_session(job):  # a session of its own, unless the caller opened one (the sweeper does)
            require_engine(job["studySpec"])  # fails here, in the main thread, with what to install
            return self._run_study(job)

    def _run_study(self, job: Dict[str, Any]) -> TuningOutcome:
        from .local_study import run_tuning_job

        cancel = threading.Event()
        maximize = job["studySpec"]["metrics"][0].get("goal") == "MAXIMIZE"
        last_line: List[str] = [""]

        def progress(trials: List[Dict[str, Any]]) -> None:
            _storage.write_bytes(self.staging.trials_record, json.dumps(trials).encode())
            line = summarize_trials(trials, maximize)
            if line != last_line[0]:
                last_line[0] = line
                log.info("[local study] %s", line)

        workdir = Path(self.staging.trials_dir)
        job_id = job["labels"].get("hydra_uid", "study")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-study") as engine:
            future: Optional[Future[TuningOutcome]] = None
            try:  # from the submit on: an interrupt as it returns still stops the study the thread started
                with interrupts():
                    future = engine.submit(run_tuning_job, job, job_id=job_id, workdir=workdir, cancel=cancel,
                                           on_update=progress, env_passthrough=self.env_passthrough, forks=self.forks,
                                           watch=FailureWatch(int(job.get("parallelTrialCount") or 1)),
                                           seed=self.study_seed)
                    while not future.done():
                        wait([future], timeout=0.5)
            except BaseException:
                with shielded(lambda: "stopping the local study"):
                    cancel.set()
                    if future is not None:  # the trials that finished, for optimization_results.yaml
                        self.partial_tuning = future.result()
                    print("Interrupted: cancelled the local study and its running trials", file=sys.stderr, flush=True)
                raise
            return future.result()


def _write_spec(job: Dict[str, Any], workdir: Path) -> None:
    """The job's spec beside its logs: what a detached supervisor (or a later re-attach) runs."""
    (workdir / JOB_SPEC_FILE).write_text(json.dumps(job))


def supervisor_alive(staging: Staging) -> bool:
    """Whether the detached supervisor of a local sweep still runs."""
    try:
        pid, ticks = json.loads((Path(staging.root) / SUPERVISOR_FILE).read_text())
    except (OSError, ValueError):
        return False
    return pid_alive(int(pid), ticks)
