"""What crosses between the submitting process and the container, and the JobReturn coming back.

A payload file is one JSON header line (format, the versions it was pickled with, and the functions its body
carries by value) followed by a cloudpickle body. The header is read first, so a container whose runtime cannot
read the body fails with one clear line instead of an obscure unpickling error. What really breaks: another
hydra-core or omegaconf minor version (their objects are pickled), and, only for a body holding code by value
(a task defined inside a function, a resolver lambda), another Python minor version or cloudpickle version.
"""
import json
import os
import platform
import traceback
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

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
    # None when the task travels by reference (the header's `task`): the container imports it
    task_function: Optional[TaskFunction]
    # Hydra's Singleton state, less the OmegaConf resolvers (below)
    singleton_state: Any
    # user resolvers as (name, function, use_cache), registered in the container unless its imports did already
    resolvers: List[Tuple[str, Any, bool]] = field(default_factory=list)
    # resolvers whose function could not be told apart from OmegaConf's wrapper: restored as they are
    raw_resolvers: Dict[str, Any] = field(default_factory=dict)
    # resolvers the task's script registered here, which importing it in the container registers again
    from_import: List[str] = field(default_factory=list)


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
    # Sweeper only: conditional child id -> (parent id, parent's value spec kind, activating parent values).
    conditions: Dict[str, Tuple[str, str, List[Any]]] = field(default_factory=dict)
    # Sweeper only: overrides every trial gets, and the metric reported with cloudml-hypertune.
    fixed_overrides: List[str] = field(default_factory=list)
    metric_id: Optional[str] = None
    # Sweeper only: the sweep dir as the container sees it (each trial composes its config there).
    sweep_dir: Optional[str] = None
    # Sweeper, local warm start: shapes of trial configs the sweeper verified, which trials derive their config
    # from instead of composing it (`_compose_cache.TrialTemplate`); empty: every trial composes with Hydra.
    trial_templates: List[Any] = field(default_factory=list)


# Versions compared by major.minor whatever the body holds, and those compared only for code by value.
_ALWAYS_CHECKED = ("hydra-core", "omegaconf")
_CHECKED_FOR_CODE = ("python", "cloudpickle")
# Names of by-value functions listed in a header (the rest is counted).
_BY_VALUE_LISTED = 10


def runtime_versions() -> Dict[str, str]:
    import cloudpickle
    import hydra
    import omegaconf

    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "hydra-core": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "cloudpickle": cloudpickle.__version__,
    }


def pickle_tracking(obj: Any) -> Tuple[bytes, List[str]]:
    """cloudpickle's bytes, and the functions it pickled by value (their bytecode ties the body to this Python)."""
    import io

    import cloudpickle

    try:
        from cloudpickle.cloudpickle import _should_pickle_by_reference as by_reference
    except ImportError:  # another cloudpickle layout: say every function went by value (the strict check)
        def by_reference(fn: Any) -> bool:
            return False

    by_value: List[str] = []

    class _Tracking(cloudpickle.Pickler):
        def reducer_override(self, item: Any) -> Any:
            if isinstance(item, types.FunctionType) and not by_reference(item):
                by_value.append(f"{item.__module__}.{item.__qualname__}")
            return super().reducer_override(item)

    out = io.BytesIO()
    _Tracking(out, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
    return out.getvalue(), by_value


def dumps(obj: Any, **header_fields: Any) -> bytes:
    """Header line (format, versions, code by value, and e.g. the source snapshot the body needs) + body."""
    body, by_value = pickle_tracking(obj)
    listed = sorted(set(by_value))
    fields = {"format": FORMAT, "versions": runtime_versions(), **header_fields,
              "by_value": listed[:_BY_VALUE_LISTED] + ([f"... {len(listed) - _BY_VALUE_LISTED} more"]
                                                       if len(listed) > _BY_VALUE_LISTED else [])}
    return json.dumps(fields).encode() + b"\n" + body


def header(data: bytes) -> Dict[str, Any]:
    """The JSON header alone: readable before anything is unpickled."""
    line, _, _ = data.partition(b"\n")
    parsed: Dict[str, Any] = json.loads(line)
    return parsed


def loads(data: bytes) -> Any:
    meta = header(data)
    check_versions(meta["versions"], meta.get("by_value", ["unknown"]))
    import cloudpickle

    return cloudpickle.loads(data.partition(b"\n")[2])


def _minor(version: Optional[str]) -> Tuple[str, ...]:
    return tuple((version or "").split(".")[:2])


def check_versions(built_with: Dict[str, str], by_value: Sequence[str] = ("unknown",)) -> None:
    """Refuse what this runtime cannot read: another hydra-core or omegaconf minor version; for a body holding
    code by value (`by_value` names it), another Python minor or another cloudpickle version."""
    here = runtime_versions()
    diff = [f"{name} {built_with.get(name)} (here {here[name]})" for name in _ALWAYS_CHECKED
            if name in built_with and _minor(built_with.get(name)) != _minor(here[name])]
    if by_value:
        diff += [f"{name} {built_with.get(name)} (here {here[name]})" for name in _CHECKED_FOR_CODE
                 if (_minor(built_with.get(name)) if name == "python" else built_with.get(name)) !=
                 (_minor(here[name]) if name == "python" else here[name])]
    if diff:
        why = f" for code pickled by value ({', '.join(by_value[:3])})" if by_value and any(
            n in d for d in diff for n in _CHECKED_FOR_CODE) else ""
        raise VersionMismatchError(
            "payload was built with " + ", ".join(diff) + why + "; install the same versions in the image as on "
            "the submitting machine"
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


def completed_return(config: DictConfig, overrides: List[str], value: Any) -> JobReturn:
    """A COMPLETED JobReturn made here for a job stopped before it wrote its own (an early-stopped trial)."""
    return _made_return(config, overrides, JobStatus.COMPLETED, value)


def failed_return(config: DictConfig, overrides: List[str], error: BaseException) -> JobReturn:
    """A JobReturn for a job whose own result never came back."""
    return _made_return(config, overrides, JobStatus.FAILED, error)


def _made_return(config: DictConfig, overrides: List[str], status: JobStatus, value: Any) -> JobReturn:
    task_cfg = OmegaConf.masked_copy(config, [str(k) for k in config.keys() if k != "hydra"])
    hydra_cfg = OmegaConf.create({"hydra": OmegaConf.to_container(config.hydra)})
    ret = JobReturn(
        overrides=overrides,
        cfg=task_cfg,
        hydra_cfg=hydra_cfg,
        working_dir=os.getcwd(),
        task_name=str(config.hydra.job.name),
        status=status,
    )
    ret._return_value = value
    return ret
