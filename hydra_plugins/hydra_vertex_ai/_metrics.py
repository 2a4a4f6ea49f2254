"""The implementation behind `metrics` (see its docstring), and the process's one HyperTune.

It lives in an underscore module because Hydra's plugin scan re-executes every public module of
`hydra_plugins`, even one already imported: functions defined in `metrics.py` itself would be replaced by new
objects, so a `report_metric` an app imported earlier would no longer be `metrics.report_metric`, cloudpickle
would then ship the task function's copy by value (module lock and all), and the HyperTune state would reset.
"""
import logging
import math
import os
import threading
from typing import Any, Optional, Set, Tuple

log = logging.getLogger(__name__)

# Set by the entry module while it runs a trial: the metric id of the study's MetricSpec.
METRIC_ID_ENV = "HYDRA_VERTEX_AI_METRIC_ID"
# Set by Vertex (and by the local backend) in the containers of a tuning job's trials (their one home: the
# public metrics module re-exports them, and Hydra's scan must not import _vertex_facts).
TRIAL_ID_ENV = "CLOUD_ML_TRIAL_ID"
METRIC_FILE_ENV = "CLOUD_ML_HP_METRIC_FILE"

# ReportMetricCallback stays out of __all__ and dir(): `import *` and Hydra's plugin scan (which runs
# inspect.getmembers on this module) would otherwise import torch and Lightning in every app.
__all__ = ["in_trial", "report_metric", "METRIC_ID_ENV", "TRIAL_ID_ENV", "METRIC_FILE_ENV"]

_lock = threading.Lock()
_hypertune: Optional[Any] = None
# (metric file, trial id) the HyperTune above was created for; HyperTune reads both once, at creation.
_hypertune_key: Optional[Tuple[str, str]] = None
# The step of the last measurement written, the default of the next one.
_last_step = 0
_warned: Set[Tuple[str, Tuple[Any, ...]]] = set()


def in_trial() -> bool:
    """True inside a trial of a tuning job: Vertex sets CLOUD_ML_TRIAL_ID only there."""
    return bool(os.environ.get(TRIAL_ID_ENV))


def study_metric_id() -> Optional[str]:
    """The metric id this trial's study optimizes, or None when the entry module did not export one."""
    return os.environ.get(METRIC_ID_ENV) or None


def report_metric(value: float, step: Optional[int] = None, metric_id: Optional[str] = None) -> bool:
    """Report `value` (at `step`) to the current trial under `metric_id`, by default the study's metric id.

    Without `step`, the measurement takes the step of the last one reported in this process (0 at first): a
    final objective reported after per-epoch values must not go back to step 0.

    Returns True when the measurement was written; False, and nothing written, outside a trial, without a
    metric id, or for a value that is not a finite number (Vertex cannot use NaN or infinity).
    """
    if not in_trial():
        return False
    tag = metric_id or study_metric_id()
    if not tag:
        _warn_once("report_metric: no metric_id given and %s is not set; nothing reported", METRIC_ID_ENV)
        return False
    number = _finite(value)
    if number is None:
        log.warning("report_metric: refusing %s=%r (step %s): not a finite number", tag, value, step)
        return False
    global _last_step
    with _lock:
        hypertune = _instance()
        step = _last_step if step is None else int(step)
        hypertune.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=tag, metric_value=number, global_step=step
        )
        _last_step = step
    log.debug("reported %s=%s at step %s", tag, number, step)
    return True


def _warn_once(message: str, *args: Any) -> None:
    # A per-epoch caller would otherwise repeat the same warning every epoch.
    if (message, args) not in _warned:
        _warned.add((message, args))
        log.warning(message, *args)


def _finite(value: Any) -> Optional[float]:
    """`value` as a finite float (accepts anything float() takes, e.g. a one-element tensor), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _instance() -> Any:
    """The process's HyperTune, created on first use; a new one only if the trial's metric file changed."""
    global _hypertune, _hypertune_key, _last_step
    key = (os.environ.get(METRIC_FILE_ENV, ""), os.environ.get(TRIAL_ID_ENV, ""))
    if _hypertune is None or key != _hypertune_key:
        import hypertune

        _hypertune, _hypertune_key, _last_step = hypertune.HyperTune(), key, 0
    return _hypertune
