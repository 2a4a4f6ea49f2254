"""What the launcher needs from a backend, and how a job ended."""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, PARTIALLY_SUCCEEDED})


@dataclass
class JobOutcome:
    """The end of one job, in Vertex's terms."""

    # a Vertex JobState name, e.g. JOB_STATE_SUCCEEDED
    state: str
    # why it did not succeed: the job's error message, with the tail of its log where we have it
    error: Optional[str] = None
    # where to look: a Cloud Console link and logging filter, or a local log path
    where: Optional[str] = None


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


class Backend(ABC):
    """Runs CustomJobs (REST-shaped dicts) to a terminal state; Ctrl-C cancels what is unfinished."""

    # this sweep's staging directory or gs:// URI: payloads, results, (local) logs
    staging: str

    @abstractmethod
    def container_path(self, local_path: str) -> str:
        """Where the container sees a directory that the submitting machine calls `local_path`."""

    @abstractmethod
    def run_jobs(self, jobs: Sequence[Dict[str, Any]]) -> List[JobOutcome]:
        """Submit every job, wait for all of them, return their outcomes in order."""

    def run_tuning_job(self, job: Dict[str, Any]) -> TuningOutcome:
        """Run one HyperparameterTuningJob (REST-shaped dict) to its end; Ctrl-C cancels it."""
        raise NotImplementedError(f"{type(self).__name__} does not run tuning jobs")
