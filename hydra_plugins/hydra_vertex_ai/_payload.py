"""What crosses between the submitting process and the container, and the JobReturn coming back.

A payload file is one JSON header line (format and the versions it was pickled with) followed by a
cloudpickle body. The header is read first, so a container whose Python, hydra-core or cloudpickle differs
from the laptop's fails with one clear line instead of an obscure unpickling error.
"""
import json
import os
import platform
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

FORMAT = 1


class VersionMismatchError(RuntimeError):
    """The container's runtime cannot safely unpickle what the submitting machine pickled."""


class RemoteTraceback(Exception):
    """Carries the job's formatted traceback; set as `__cause__` of the exception re-raised locally."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


class RemoteJobError(RuntimeError):
    """A job failed without a picklable exception of its own (killed, crashed, or unpicklable error)."""


@dataclass
class SweepContext:
    """Shared by every job of one launch (or every trial of one study): pickled once, staged once."""

    hydra_context: HydraContext
    task_function: TaskFunction
    singleton_state: Any


@dataclass
class JobPayload:
    """Everything one job needs besides the shared context; small."""

    context_uri: str
    # The composed config of this job (launcher) or the study's base config (sweeper).
    config: DictConfig
    # Where the entry module writes the pickled JobReturn.
    result_uri: str
    # Sweeper only: parameter id -> (override key, Vertex parameter type); empty for launcher jobs.
    parameters: Dict[str, Tuple[str, str]] = field(default_factory=dict)
    # Sweeper only: overrides every trial gets, and the metric reported with cloudml-hypertune.
    fixed_overrides: List[str] = field(default_factory=list)
    metric_id: Optional[str] = None
    # Sweeper only: the sweep dir as the container sees it (each trial composes its config there).
    sweep_dir: Optional[str] = None


def runtime_versions() -> Dict[str, str]:
    import cloudpickle
    import hydra

    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "hydra-core": hydra.__version__,
        "cloudpickle": cloudpickle.__version__,
    }


def dumps(obj: Any, **header_fields: Any) -> bytes:
    """Header line (format, versions, and e.g. the source snapshot the body needs) + cloudpickle body."""
    import cloudpickle

    header = json.dumps({"format": FORMAT, "versions": runtime_versions(), **header_fields})
    return header.encode() + b"\n" + cloudpickle.dumps(obj)


def header(data: bytes) -> Dict[str, Any]:
    """The JSON header alone: readable before anything is unpickled."""
    line, _, _ = data.partition(b"\n")
    parsed: Dict[str, Any] = json.loads(line)
    return parsed


def loads(data: bytes) -> Any:
    check_versions(header(data)["versions"])
    import cloudpickle

    return cloudpickle.loads(data.partition(b"\n")[2])


def check_versions(built_with: Dict[str, str]) -> None:
    here = runtime_versions()
    diff = [f"{name} {built_with.get(name)} (here {have})" for name, have in here.items() if built_with.get(name) != have]
    if diff:
        raise VersionMismatchError(
            "payload was built with " + ", ".join(diff) + "; install the same versions in the image as on the "
            "submitting machine"
        )


def dump_result(ret: JobReturn) -> bytes:
    """Pickle a JobReturn; an exception travels with its formatted traceback (tracebacks don't pickle).

    A return value or exception that cannot make the trip becomes a RemoteJobError keeping its type, message
    and traceback text: one that does not pickle (holds a lock, a socket), and one that pickles but does not
    unpickle (an exception whose __init__ takes other arguments than its args), which would otherwise fail
    in the launcher, far from its cause.
    """
    value = ret._return_value
    tb = None
    if ret.status == JobStatus.FAILED and isinstance(value, BaseException):
        tb = "".join(traceback.format_exception(type(value), value, value.__traceback__)).rstrip()
    try:
        data = dumps({"job_return": ret, "traceback": tb})
    except Exception as e:
        return _dump_stand_in(ret, tb, f"could not be pickled: {type(e).__name__}: {e}")
    try:
        loads(data)
    except Exception as e:
        return _dump_stand_in(ret, tb, f"could not be unpickled: {type(e).__name__}: {e}")
    return data


def _dump_stand_in(ret: JobReturn, tb: Optional[str], why: str) -> bytes:
    value = ret._return_value
    ret._return_value = RemoteJobError(f"{type(value).__name__}: {value} (the job's result {why})")
    ret.status = JobStatus.FAILED
    return dumps({"job_return": ret, "traceback": tb})


def load_result(data: bytes) -> JobReturn:
    obj = loads(data)
    ret: JobReturn = obj["job_return"]
    if obj["traceback"] and isinstance(ret._return_value, BaseException):
        ret._return_value.__cause__ = RemoteTraceback(obj["traceback"])
    return ret


def failed_return(config: DictConfig, overrides: List[str], error: BaseException) -> JobReturn:
    """A JobReturn for a job whose own result never came back."""
    task_cfg = OmegaConf.masked_copy(config, [str(k) for k in config.keys() if k != "hydra"])
    hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(config.hydra)})
    ret = JobReturn(
        overrides=overrides,
        cfg=task_cfg,
        hydra_cfg=hydra_cfg,
        working_dir=os.getcwd(),
        task_name=str(config.hydra.job.name),
        status=JobStatus.FAILED,
    )
    ret._return_value = error
    return ret
