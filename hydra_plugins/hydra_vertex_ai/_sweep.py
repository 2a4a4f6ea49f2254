"""The sweeper's core: Hydra sweep -> one HyperparameterTuningJob -> optimization_results.yaml."""
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from hydra.core.utils import JobReturn, setup_globals
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from . import _jobspec, _payload, _report, _search_space, _storage
from ._backends import factory
from ._backends.base import SUCCEEDED, Backend, TuningOutcome
from ._jobspec import JobSpecError
from ._launch import new_sweep_id, stage
from .config import VertexVizierSweeperConf

if TYPE_CHECKING:
    from .vertex_vizier_sweeper import VertexVizierSweeper

log = logging.getLogger(__name__)
CONFIG_KEY = "hydra.sweeper"
RESULTS_FILE = "optimization_results.yaml"
ALGORITHMS = {"bayesian": "ALGORITHM_UNSPECIFIED", "grid": "GRID_SEARCH", "random": "RANDOM_SEARCH"}
GOALS = {"minimize": "MINIMIZE", "maximize": "MAXIMIZE"}
SELECTIONS = {"last": "LAST_MEASUREMENT", "best": "BEST_MEASUREMENT"}
EARLY_STOPPING = {"none": None, "median": "medianAutomatedStoppingSpec", "decay_curve": "decayCurveStoppingSpec"}
# Each categorical value is composed once on this machine before submission; beyond this, only the first.
_MAX_CHECK_COMPOSITIONS = 32


def sweep(sweeper: "VertexVizierSweeper", arguments: List[str]) -> List[List[JobReturn]]:
    assert sweeper.config is not None and sweeper.hydra_context is not None
    setup_globals()
    config = sweeper.config
    conf: VertexVizierSweeperConf = OmegaConf.to_object(config.hydra.sweeper)  # type: ignore[assignment]
    validate(conf)
    sweep_id = new_sweep_id(str(config.hydra.job.name))
    backend = factory.make_backend(conf, CONFIG_KEY, sweep_id)
    space = _search_space.parse_search_space(_search_space.merge_params(conf.params, arguments), conf.algorithm)
    parameter_map = _search_space.parameter_map(space)
    if conf.resume is None:
        _check_composes(sweeper, space, parameter_map)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    payload_uri = _storage.join(backend.staging, "study", "payload.pkl")
    job = build_tuning_job(conf, space, sweep_id, str(config.hydra.job.name), backend.staging, payload_uri)
    if conf.dry_run:
        print(json.dumps(job, indent=2))
        log.info("dry_run: printed the HyperparameterTuningJob, submitted nothing")
        return []
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    if conf.resume is None:
        _stage(sweeper, backend, payload_uri, space, parameter_map, conf, str(sweep_dir))
        log.info("Vertex Vizier sweeper (%s backend): %d parameter(s), %d trial(s), staging %s",
                 conf.backend, len(space.parameters), conf.max_trial_count, backend.staging)
        outcome = backend.run_tuning_job(job)
    else:
        outcome = _resume(backend, conf.resume)
    results = write_results(sweep_dir / RESULTS_FILE, conf, parameter_map, list(space.fixed), outcome)
    _report.report_sweep(sweep_dir, results, outcome, job["studySpec"], backend)  # never raises
    if outcome.state != SUCCEEDED:
        raise HydraException(f"the tuning job ended {outcome.state.replace('JOB_STATE_', '')}: {outcome.error} "
                             f"(partial results in {sweep_dir / RESULTS_FILE})")
    log.info("Best %s = %s with %s", conf.metric_id, results["best_value"], " ".join(results["best_params"]))
    # A resumed study's trials wrote their results next to its own payload, not under this run's staging.
    staging = _storage.parent(_storage.parent(outcome.payload_uri)) if outcome.payload_uri else backend.staging
    return [_trial_returns(staging, config, parameter_map, list(space.fixed), outcome)]


def validate(conf: VertexVizierSweeperConf) -> None:
    """Settings Vertex would refuse, each error naming its key; nothing is submitted before this passes."""
    choices = {"goal": GOALS, "algorithm": ALGORITHMS, "measurement_selection": SELECTIONS,
               "early_stopping": EARLY_STOPPING}
    for name, allowed in choices.items():
        if getattr(conf, name) not in allowed:
            raise JobSpecError(f"{CONFIG_KEY}.{name}", f"'{getattr(conf, name)}' is not one of {', '.join(allowed)}")
    for name in ("max_trial_count", "parallel_trial_count"):
        if getattr(conf, name) < 1:
            raise JobSpecError(f"{CONFIG_KEY}.{name}", "must be at least 1")
    if conf.max_failed_trial_count < 0:
        raise JobSpecError(f"{CONFIG_KEY}.max_failed_trial_count", "must not be negative")
    if not conf.metric_id:
        raise JobSpecError(f"{CONFIG_KEY}.metric_id", "must not be empty")
    _jobspec.validate(conf.job, f"{CONFIG_KEY}.job")


def build_tuning_job(
    conf: VertexVizierSweeperConf,
    space: "_search_space.SearchSpace",
    sweep_id: str,
    job_name: str,
    staging: str,
    payload_uri: str,
) -> Dict[str, Any]:
    """The HyperparameterTuningJob (REST shape); its trials run the launcher's CustomJob spec."""
    trial = _jobspec.build_custom_job(
        conf.job,
        display_name=f"{job_name}-trial",
        container=_jobspec.Container(args=[payload_uri], env=conf.job.env),
        labels={"hydra_sweep": sweep_id, "hydra_job": "study", "hydra_uid": f"{sweep_id}-study"},
        base_output_dir=conf.job.base_output_dir or _storage.join(staging, "outputs"),
    )
    study: Dict[str, Any] = {
        "metrics": [{"metricId": conf.metric_id, "goal": GOALS[conf.goal]}],
        "parameters": [p.spec for p in space.parameters],
        "algorithm": ALGORITHMS[conf.algorithm],
        "measurementSelectionType": SELECTIONS[conf.measurement_selection],
    }
    stopping = EARLY_STOPPING[conf.early_stopping]
    if stopping:
        study[stopping] = {"useElapsedDuration": False}
    return {
        "displayName": f"{job_name}-{sweep_id}"[:128],
        "studySpec": study,
        "maxTrialCount": conf.max_trial_count,
        "parallelTrialCount": conf.parallel_trial_count,
        "maxFailedTrialCount": conf.max_failed_trial_count,
        "trialJobSpec": trial["jobSpec"],
        "labels": trial["labels"],
    }


def _check_composes(
    sweeper: "VertexVizierSweeper", space: "_search_space.SearchSpace", parameter_map: Mapping[str, Any]
) -> None:
    """Compose a few trials here, so a typo'd key or a missing config group fails before any trial runs."""
    assert sweeper.hydra_context is not None and sweeper.config is not None
    for values in _sample_values(space)[:_MAX_CHECK_COMPOSITIONS]:
        overrides = list(space.fixed) + _search_space.overrides_from_values(parameter_map, values)
        try:
            sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, overrides)
        except Exception as e:
            raise HydraException(f"a trial with overrides {overrides} cannot be composed: {e}") from e


def _sample_values(space: "_search_space.SearchSpace") -> List[Dict[str, Any]]:
    """One trial at each parameter's first value, then one per other categorical/discrete value."""
    base = {p.parameter_id: _values_of(p.spec)[0] for p in space.parameters}
    samples = [base]
    for p in space.parameters:
        if "categoricalValueSpec" in p.spec:
            samples += [{**base, p.parameter_id: v} for v in _values_of(p.spec)[1:]]
    return samples


def _values_of(spec: Mapping[str, Any]) -> List[Any]:
    for kind in ("doubleValueSpec", "integerValueSpec"):
        if kind in spec:
            return [float(spec[kind]["minValue"])]
    if "discreteValueSpec" in spec:
        return [float(v) for v in spec["discreteValueSpec"]["values"]]
    return list(spec["categoricalValueSpec"]["values"])


def _stage(
    sweeper: "VertexVizierSweeper",
    backend: Backend,
    payload_uri: str,
    space: "_search_space.SearchSpace",
    parameter_map: Dict[str, Any],
    conf: VertexVizierSweeperConf,
    sweep_dir: str,
) -> None:
    """One payload for the whole study: every trial composes its own config from it and its flags."""
    assert sweeper.hydra_context is not None and sweeper.task_function is not None and sweeper.config is not None
    context_uri = _storage.join(backend.staging, "context.pkl")
    payload = _payload.JobPayload(
        context_uri=context_uri,
        config=sweeper.config,
        result_uri=_storage.join(backend.staging, "trials", "{trial_id}", "result.pkl"),
        parameters=parameter_map,
        fixed_overrides=list(space.fixed),
        metric_id=conf.metric_id,
        sweep_dir=backend.container_path(sweep_dir),
    )
    stage(conf, CONFIG_KEY, backend.staging, sweeper.hydra_context, sweeper.task_function, context_uri,
          {payload_uri: payload})


def _resume(backend: Backend, name: str) -> TuningOutcome:
    attach = getattr(backend, "attach_tuning_job", None)
    if attach is None:
        raise JobSpecError(f"{CONFIG_KEY}.resume", "reattaching needs backend=vertex (a local study ends with its process)")
    outcome: TuningOutcome = attach(name)
    return outcome


def _final_value(trial: Mapping[str, Any]) -> Optional[float]:
    final = trial.get("finalMeasurement") or {}
    metrics = final.get("metrics") or []
    return float(metrics[0].get("value", 0.0)) if metrics else None


def write_results(
    path: Path,
    conf: VertexVizierSweeperConf,
    parameter_map: Mapping[str, Any],
    fixed: List[str],
    outcome: TuningOutcome,
) -> Dict[str, Any]:
    """optimization_results.yaml: the best value and parameters as paste-ready overrides, and every trial."""
    trials = [_trial_summary(t, parameter_map) for t in outcome.trials]
    scored = [t for t in trials if t["state"] == "SUCCEEDED" and t["value"] is not None and math.isfinite(t["value"])]
    best = (max if conf.goal == "maximize" else min)(scored, key=lambda t: t["value"]) if scored else None
    results = {
        "name": "vertex_vizier",
        "tuning_job": outcome.name,
        "state": outcome.state.replace("JOB_STATE_", ""),
        "metric_id": conf.metric_id,
        "goal": conf.goal,
        "best_trial": best["id"] if best else None,
        "best_value": best["value"] if best else None,
        "best_params": best["params"] if best else [],
        "fixed_params": fixed,
        "trials": trials,
    }
    OmegaConf.save(OmegaConf.create(results), path)
    return results


def _trial_summary(trial: Mapping[str, Any], parameter_map: Mapping[str, Any]) -> Dict[str, Any]:
    values = {p["parameterId"]: p.get("value") for p in trial.get("parameters", [])}
    return {
        "id": str(trial.get("id")),
        "state": trial.get("state"),
        "params": _search_space.overrides_from_values(parameter_map, values),
        "value": _final_value(trial),
        "infeasible_reason": trial.get("infeasibleReason") or None,
    }


def _trial_returns(
    staging: str, config: DictConfig, parameter_map: Mapping[str, Any], fixed: List[str], outcome: TuningOutcome
) -> List[JobReturn]:
    """Each trial's JobReturn as its container wrote it, or a FAILED one saying why there is none."""
    returns = []
    for trial in outcome.trials:
        uri = _storage.join(staging, "trials", str(trial.get("id")), "result.pkl")
        if _storage.exists(uri):
            returns.append(_payload.load_result(_storage.read_bytes(uri)))
            continue
        overrides = fixed + _trial_summary(trial, parameter_map)["params"]
        reason = trial.get("infeasibleReason") or f"trial ended {trial.get('state')} without a result"
        returns.append(_payload.failed_return(config, overrides, _payload.RemoteJobError(reason)))
    return returns

