"""VertexVizierSweeperConf + search space -> Vertex HyperparameterTuningJob, in the REST/JSON shape (camelCase).

Pure: no I/O, no SDK import. Its trials run the CustomJob spec `_jobspec` builds for the launcher.
"""
from typing import Any, Dict, Optional

from . import _jobspec
from ._errors import ConfigError
from ._search_space import SearchSpace, study_parameters
from ._vertex_facts import MAX_DISPLAY_NAME_LENGTH
from .config import Algorithm, EarlyStopping, Goal, MeasurementSelection, VertexVizierSweeperConf

# StudySpec.MetricSpec.GoalType, StudySpec.Algorithm, StudySpec.MeasurementSelectionType and the stopping
# spec fields of google/cloud/aiplatform/v1/study.proto.
# Keyed by the config Enums' values (see config.py on why values, not members).
GOALS: Dict[str, str] = {Goal.minimize: "MINIMIZE", Goal.maximize: "MAXIMIZE"}
ALGORITHMS: Dict[str, str] = {Algorithm.bayesian: "ALGORITHM_UNSPECIFIED", Algorithm.grid: "GRID_SEARCH",
                              Algorithm.random: "RANDOM_SEARCH"}
SELECTIONS: Dict[str, str] = {MeasurementSelection.last: "LAST_MEASUREMENT", MeasurementSelection.best: "BEST_MEASUREMENT"}
EARLY_STOPPING: Dict[str, Optional[str]] = {
    EarlyStopping.none: None,
    EarlyStopping.median: "medianAutomatedStoppingSpec",
    EarlyStopping.decay_curve: "decayCurveStoppingSpec",
}


def validate(conf: VertexVizierSweeperConf, key: str) -> None:
    """Settings Vertex would refuse, each error naming its key; nothing is submitted before this passes."""
    for name in ("max_trial_count", "parallel_trial_count"):
        if getattr(conf, name) < 1:
            raise ConfigError(f"{key}.{name}", "must be at least 1")
    if conf.parallel_trial_count > conf.max_trial_count:
        raise ConfigError(f"{key}.parallel_trial_count",
                          f"{conf.parallel_trial_count} trials at once is more than the study's "
                          f"max_trial_count={conf.max_trial_count}")
    if conf.max_failed_trial_count < 0:
        raise ConfigError(f"{key}.max_failed_trial_count", "must not be negative")
    if not conf.metric_id:
        raise ConfigError(f"{key}.metric_id", "must not be empty")
    _jobspec.validate(conf.job, f"{key}.job")


def build_tuning_job(
    conf: VertexVizierSweeperConf,
    space: SearchSpace,
    *,
    display_name: str,
    labels: Dict[str, str],
    payload_uri: str,
    base_output_dir: str,
    packages: Optional[_jobspec.PythonPackages] = None,
) -> Dict[str, Any]:
    """The HyperparameterTuningJob (REST shape); its trials run the launcher's CustomJob spec."""
    trial = _jobspec.build_custom_job(
        conf.job,
        display_name=f"{display_name}-trial",
        container=_jobspec.Container(args=[payload_uri], env=_jobspec.job_env(conf.job), packages=packages),
        labels=labels,
        base_output_dir=base_output_dir,
    )
    study: Dict[str, Any] = {
        "metrics": [{"metricId": conf.metric_id, "goal": GOALS[conf.goal]}],
        "parameters": study_parameters(space),
        "algorithm": ALGORITHMS[conf.algorithm],
        "measurementSelectionType": SELECTIONS[conf.measurement_selection],
    }
    stopping = EARLY_STOPPING[conf.early_stopping]
    if stopping:
        study[stopping] = {"useElapsedDuration": False}
    return {
        "displayName": display_name[:MAX_DISPLAY_NAME_LENGTH],
        "studySpec": study,
        "maxTrialCount": conf.max_trial_count,
        "parallelTrialCount": conf.parallel_trial_count,
        "maxFailedTrialCount": conf.max_failed_trial_count,
        "trialJobSpec": trial["jobSpec"],
        "labels": trial["labels"],
    }
