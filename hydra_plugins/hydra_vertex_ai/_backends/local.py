"""The local backend: runs the very CustomJob specs Vertex would run, as local processes (`processes`).

Jobs run at most `max_parallel` at once; each job's replica logs go to its staging folder. A study runs in
the local study engine (`local_study`). Ctrl-C, SIGTERM and SIGHUP stop every job.
"""
import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .._signals import interrupts, shielded
from .._staging import Staging
from .._vertex_facts import CANCELLED, short_state
from .base import Backend, JobOutcome, Outputs, TuningOutcome, summarize_trials
from .processes import run_custom_job, thread_env

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    """Runs jobs as local processes, at most `max_parallel` at once; logs go to each job's staging folder."""

    def __init__(self, staging: Staging, max_parallel: Optional[int] = None) -> None:
        self.staging = staging
        self.max_parallel = max_parallel or os.cpu_count() or 1

    def container_path(self, local_path: str) -> str:
        return os.path.abspath(local_path)

    def output_uri(self, local_path: str) -> Optional[str]:
        return None  # local jobs write where this machine reads

    def run_jobs(self, jobs: Sequence[Dict[str, Any]], outputs: Optional[Outputs] = None) -> List[JobOutcome]:
        cancel = threading.Event()
        ids = [job["labels"].get("hydra_uid", str(i)) for i, job in enumerate(jobs)]
        dirs = [Path(self.staging.job_dir(int(job["labels"].get("hydra_job", i)))) for i, job in enumerate(jobs)]
        with ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="vertex-local") as pool:
            futures = [
                pool.submit(run_custom_job, job, job_id=job_id, workdir=workdir, cancel=cancel,
                            extra_env=thread_env(job, min(self.max_parallel, len(jobs))))
                for job, job_id, workdir in zip(jobs, ids, dirs)
            ]
            try:
                with interrupts():
                    self._wait(futures, jobs)
            except BaseException:
                with shielded(lambda: "stopping the local jobs"):  # a second Ctrl-C must not orphan them
                    cancel.set()
                    never_started = sum(f.cancel() for f in futures)
                    # Waits for every running job to be stopped; a job that raised must not hide the interrupt.
                    stopped = sum(
                        f.exception() is None and f.result().state == CANCELLED for f in futures if not f.cancelled()
                    )
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
                log.info("[%d/%d done] %s: %s", len(futures) - len(pending), len(futures),
                         jobs[i]["displayName"], short_state(f.result().state))

    def run_tuning_job(self, job: Dict[str, Any], outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Run the study on this machine; the engine runs in a thread so Ctrl-C can stop it cleanly."""
        from .local_study import run_tuning_job

        cancel = threading.Event()
        maximize = job["studySpec"]["metrics"][0].get("goal") == "MAXIMIZE"
        last_line: List[str] = [""]

        def progress(trials: List[Dict[str, Any]]) -> None:
            line = summarize_trials(trials, maximize)
            if line != last_line[0]:
                last_line[0] = line
                log.info("[local study] %s", line)

        workdir = Path(self.staging.trials_dir)
        job_id = job["labels"].get("hydra_uid", "study")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-study") as engine:
            future = engine.submit(run_tuning_job, job, job_id=job_id, workdir=workdir, cancel=cancel, on_update=progress)
            try:
                with interrupts():
                    while not future.done():
                        wait([future], timeout=0.5)
            except BaseException:
                with shielded(lambda: "stopping the local study"):
                    cancel.set()
                    future.result()
                    log.warning("Interrupted: cancelled the local study and its running trials")
                raise
            return future.result()
