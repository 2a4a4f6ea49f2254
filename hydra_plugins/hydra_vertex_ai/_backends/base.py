"""What the plugins need from a backend, how a job or a study ended, and how trials read on a progress line."""
import logging
import os
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, AbstractSet, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from .._errors import ConfigError

if TYPE_CHECKING:
    from .._staging import Staging

log = logging.getLogger(__name__)

# why a job has no resource: it was cancelled (Ctrl-C, `hydra-vertex-ai cancel`) while queued
NEVER_CREATED = "cancelled before it was created"
# Outputs to copy back when a backend is done: local directory -> the gs:// URI its jobs wrote it to.
Outputs = Mapping[str, str]


@dataclass
class JobOutcome:
    """The end of one job, in Vertex's terms."""

    # a Vertex JobState name, e.g. JOB_STATE_SUCCEEDED
    state: str
    # why it did not succeed: the job's error message, with the tail of its log where we have it
    error: Optional[str] = None
    # where to look: a Cloud Console link and logging filter, or a local log path
    where: Optional[str] = None
    # when it was created (queued), started running and ended, in seconds since the epoch, where known
    created_at: Optional[float] = None
    started_at: Optional[float] = None
    ended_at: Optional[float] = None


@dataclass
class TuningOutcome:
    """The end of one HyperparameterTuningJob."""

    # a Vertex JobState name
    state: str
    # REST-shaped Trial dicts (id, state, parameters, finalMeasurement, infeasibleReason, ...)
    trials: List[Dict[str, Any]] = field(default_factory=list)
    # why the job did not succeed
    error: Optional[str] = None
    # the tuning job's resource name (vertex) or staging directory (local)
    name: Optional[str] = None
    # the trials' first container argument: the study payload, whose folder holds the trials' results
    payload_uri: Optional[str] = None


class JobFeed:
    """A launch's jobs becoming ready to run (composed and staged) one by one, in order, while the backend already
    runs the first ones: compose, stage and create as a stream. A job is created only once it is ready; an error
    while preparing one is raised in the backend's own thread, which then cancels what it created."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._ready = 0
        self._error: Optional[BaseException] = None
        self._changed = threading.Condition()

    @classmethod
    def all_ready(cls, total: int) -> "JobFeed":
        feed = cls(total)
        feed._ready = total
        return feed

    @property
    def ready(self) -> int:
        """How many jobs, from the first, may be created now; raises the preparing thread's error."""
        self.check()
        return self._ready

    def check(self) -> None:
        """Raise the error that stopped preparing the jobs, if one did."""
        if self._error is not None:
            raise self._error

    @property
    def complete(self) -> bool:
        return self._ready >= self.total or self._error is not None

    def advance(self, ready: int) -> None:
        """The first `ready` jobs are staged."""
        with self._changed:
            self._ready = max(self._ready, ready)
            self._changed.notify_all()

    def fail(self, error: BaseException) -> None:
        """Preparing a job failed: no further job becomes ready, and whoever reads `ready` gets `error`."""
        with self._changed:
            self._error = error
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: Optional[float] = None) -> bool:
        """Wait until `count` jobs are ready (True) or `timeout` passes (False); raises the preparing error."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready >= count or self._error is not None, timeout)
        return self.ready >= count


class Backend(ABC):
    """Runs CustomJobs and tuning jobs (REST-shaped dicts) to a terminal state; Ctrl-C cancels what is unfinished."""

    # this sweep's staged locations
    staging: "Staging"
    # the config key of the plugin's settings (hydra.launcher or hydra.sweeper), for error messages
    key: str = "hydra.launcher"
    # re-attaching (hydra.launcher.attach): jobs of this sweep that already exist are waited for, not created
    attach: bool = False
    # False (hydra.launcher.wait=false): submit, then return outcomes that are not final
    wait: bool = True
    # called with a tuning job's name as soon as it exists (the sweeper records it in the manifest)
    on_tuning_created: Optional[Callable[[str], None]] = None
    # called once every CustomJob of a run exists, with hydra_uid -> resource name (the launcher's manifest)
    on_jobs_created: Optional[Callable[[Dict[str, str]], None]] = None
    # hydra_uids of this sweep's jobs cancelled before they were created (the manifest says): never created
    cancelled: AbstractSet[str] = frozenset()
    # called with the hydra_uids of jobs an interrupt left uncreated: the manifest records them cancelled
    on_never_created: Optional[Callable[[List[str]], None]] = None
    # the hydra_uids recorded cancelled by now (`hydra-vertex-ai cancel` while this launcher runs)
    cancelled_now: Optional[Callable[[], AbstractSet[str]]] = None
    # job number -> its overrides as one string, for the progress table
    job_overrides: Mapping[str, str] = {}
    # after Ctrl-C of a tuning job: how far it got (trials that finished), where the backend knows
    partial_tuning: Optional[TuningOutcome] = None
    # seeds the local study engine's sampler (a ported Optuna config's sampler.seed); a Vertex study has no seed
    study_seed: Optional[int] = None

    @property
    def destination(self) -> str:
        """Where this backend runs jobs, as a dry run names it."""
        return "this machine (local backend)"

    @abstractmethod
    def container_path(self, local_path: str) -> str:
        """Where the container sees a directory that the submitting machine calls `local_path`."""

    @abstractmethod
    def output_uri(self, local_path: str) -> Optional[str]:
        """The bucket URI a job writes `local_path` to, for copying back; None when jobs write it in place."""

    @abstractmethod
    def run_jobs(self, jobs: Sequence[Dict[str, Any]], outputs: Optional[Outputs] = None,
                 feed: Optional[JobFeed] = None) -> List[JobOutcome]:
        """Submit every job (each once `feed` says it is ready; all at once without a feed), wait for all of
        them, copy `outputs` back, return the outcomes in order."""

    @contextmanager
    def tuning_session(self, job: Dict[str, Any]) -> Iterator[None]:
        """Around staging `job` and `run_tuning_job(job)`: what running it needs, started ahead and ended after
        (the local backend's fork server, whose imports then overlap the staging). Nothing here."""
        yield

    @abstractmethod
    def run_tuning_job(self, job: Dict[str, Any], outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Run one HyperparameterTuningJob (REST-shaped dict) to its end; Ctrl-C cancels it."""

    def record_never_created(self, uids: Sequence[str]) -> None:
        """Hand the jobs an interrupt left uncreated to `on_never_created`: a re-attach must not create them."""
        if not uids or self.on_never_created is None:
            return
        try:
            self.on_never_created(list(uids))
        except Exception as e:  # the interrupt goes on; the user is told what a re-attach would do
            log.warning("could not record %d uncreated job(s) as cancelled (a re-attach would run them): %s",
                        len(uids), e)

    def outputs_of(self, local_dir: str) -> Dict[str, str]:
        """The copy-back mapping for a sweep dir: {local dir: bucket URI}, empty when jobs write in place."""
        uri = self.output_uri(local_dir)
        return {os.path.abspath(local_dir): uri} if uri else {}

    def attach_tuning_job(self, name: str, outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Wait for an existing tuning job and collect it (`hydra.sweeper.resume`)."""
        raise ConfigError(
            f"{self.key}.resume", f"reattaching needs backend=vertex; the {type(self).__name__} has no job '{name}'"
        )


def final_value(trial: Mapping[str, Any]) -> Optional[float]:
    """A REST Trial's objective; None without a final measurement. proto3 JSON leaves a 0.0 out: missing is 0."""
    metrics = (trial.get("finalMeasurement") or {}).get("metrics") or []
    return float(metrics[0].get("value", 0.0)) if metrics else None


def summarize_trials(trials: Sequence[Mapping[str, Any]], maximize: bool) -> str:
    """One progress line: trials by state and the best value so far."""
    done = [t for t in trials if t.get("state") == "SUCCEEDED" and final_value(t) is not None]
    failed = sum(t.get("state") == "INFEASIBLE" for t in trials)
    running = sum(t.get("state") in ("ACTIVE", "REQUESTED", "STOPPING") for t in trials)
    line = f"trials: {len(done)} succeeded, {failed} failed, {running} running"
    if done:
        best = (max if maximize else min)(done, key=lambda t: final_value(t) or 0.0)
        line += f"; best {final_value(best):.6g} (trial {best['id']})"
    return line


# The early stop of a study whose first trials fail alike: once this many trials (or parallel_trial_count, if
# more) have failed, before any trial succeeded, all with the same error (the last line of their log tail, e.g.
# the exception), the study stops: the next trials would fail the same way and only burn the budget.
SAME_FAILURE_MIN_TRIALS = 2
_LOG_PATH = re.compile(r"(\S+\.log)\b")
_TRACEBACK = "Traceback (most recent call last):"
# how a local job's error introduces its log's last lines (processes: "<why>; last lines of <log>:\n<lines>")
LOG_TAIL_HEAD = "; last lines of "


def failure_line(reason: str) -> str:
    """One line saying why a job or trial failed: the exception its log's last traceback ended with (log lines
    written after it, e.g. a logger's or Hydra's, do not hide it), else the last non-empty line of its log tail."""
    head, sep, tail = reason.partition(":\n")
    lines = [ln.rstrip() for ln in (tail if sep else reason).splitlines() if ln.strip()]
    exception = exception_line(lines)
    if exception:
        return exception
    return lines[-1].strip() if lines else head.strip()


def failure_summary(states: Sequence[str], reasons: Sequence[str], what: str = "job(s)") -> str:
    """The line that ends a run with failures: how many ended in each state, and each distinct reason's count."""
    by_state = Counter(states)
    by_reason = Counter(reasons)
    return (f"{len(states)} {what}: {', '.join(f'{n} {s}' for s, n in sorted(by_state.items()))}; "
            f"{len(by_reason)} failure reason(s): "
            + "; ".join(f"{r} ({n} {what})" for r, n in by_reason.most_common()))


def exception_line(lines: Sequence[str]) -> Optional[str]:
    """The `Type: message` line that ends the last Python traceback in `lines`, or None."""
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(_TRACEBACK)]
    if not starts:
        return None
    for line in lines[starts[-1] + 1:]:
        if line and not line[0].isspace():  # the frames are indented; the exception line is not
            return line.strip()
    return None


def log_tail(error: Optional[str]) -> str:
    """The log lines a local job's error carries after `; last lines of <log>:`, or ""."""
    head, sep, tail = (error or "").partition(":\n")
    return tail.rstrip() if sep and LOG_TAIL_HEAD in head else ""


class FailureWatch:
    """Says (once) why the first trial failed, where its log is, and when to stop a study failing alike."""

    def __init__(self, parallel_trial_count: int, where: Optional[str] = None) -> None:
        self.needed = max(SAME_FAILURE_MIN_TRIALS, parallel_trial_count)
        self.where = where
        self.reported = False

    def update(self, trials: Sequence[Mapping[str, Any]]) -> Optional[str]:
        """Report the first failed trial; return why the study should stop now, or None."""
        failed = [t for t in trials if t.get("state") == "INFEASIBLE"]
        if failed and not self.reported:
            self.reported = True
            first = failed[0]
            reason = str(first.get("infeasibleReason") or "no reason given")
            found = _LOG_PATH.search(reason)
            where = found.group(1) if found else self.where
            log.error("Trial %s failed: %s%s", first.get("id"), failure_line(reason), f" (log: {where})" if where else "")
        if any(t.get("state") == "SUCCEEDED" for t in trials) or len(failed) < self.needed:
            return None
        lines = {failure_line(str(t.get("infeasibleReason") or "")) for t in failed}
        if len(lines) != 1:
            return None
        return (f"stopped the study: its first {len(failed)} trials all failed with the same error: {lines.pop()} "
                f"(a study stops when its first max({SAME_FAILURE_MIN_TRIALS}, parallel_trial_count) trials fail alike)")
