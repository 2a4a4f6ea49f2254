"""The local study engine: a HyperparameterTuningJob's trials, proposed by Optuna (a grid search's are the grid's
points, in order, with no optuna needed), run as local CustomJobs.

It reads the same REST-shaped tuning job Vertex would get, starts each trial with the trial job spec's
command plus Vertex-style `--id=value` flags (numbers formatted as Vertex sends them: DISCRETE values as
doubles), gives each trial its own `CLOUD_ML_TRIAL_ID` and `CLOUD_ML_HP_METRIC_FILE`, and reads the metric
back from that file with the study's measurement selection. The emulator runs tuning jobs through it too.
"""
import copy
import json
import logging
import math
import statistics
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .._errors import MissingDependencyError
from .._metrics import METRIC_FILE_ENV
from .._vertex_facts import CANCELLED, FAILED, SUCCEEDED, child_is_active, conditional_spec_problem
from .base import FailureWatch, JobOutcome, TuningOutcome
from .processes import KillHook, run_custom_job, thread_env

if TYPE_CHECKING:
    from .forkserver import ForkServers

log = logging.getLogger(__name__)

TrialsCallback = Callable[[List[Dict[str, Any]]], None]
METRICS_FILE = "hypertune.metrics"
# Completed trials needed before the median rule may stop another one.
MEDIAN_STOPPING_MIN_COMPLETED = 2


class StudySpecError(ValueError):
    """A study spec the local engine cannot run (Vertex would refuse it too)."""


def run_tuning_job(
    job: Mapping[str, Any],
    *,
    job_id: str,
    workdir: Path,
    cancel: threading.Event,
    on_update: Optional[TrialsCallback] = None,
    on_kill: Optional[KillHook] = None,
    env_passthrough: Sequence[str] = (),
    watch: Optional[FailureWatch] = None,
    seed: Optional[int] = None,
    forks: Optional["ForkServers"] = None,
) -> TuningOutcome:
    """Run every trial of `job` (REST HyperparameterTuningJob) to the study's end, or until `cancel`.

    With a `watch` (the local backend's; not the emulator's, which behaves as Vertex does) the first failed trial
    is reported at once and a study whose first trials fail alike stops early (see base.FailureWatch)."""
    try:
        study = _LocalStudy(job, job_id, Path(workdir), cancel, on_update or (lambda trials: None), seed)
        study.on_kill = on_kill
    except StudySpecError as e:
        return TuningOutcome(FAILED, [], str(e), str(workdir))
    study.env_passthrough, study.watch, study.forks = tuple(env_passthrough), watch, forks
    return study.run()


def require_optuna() -> Any:
    """optuna, which only the local study engine needs (an extra, so that installing us never conflicts with
    hydra-optuna-sweeper's pin); a one-line error saying what to install when it is missing."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError(
            "the local study engine (hydra.sweeper.backend=local, and the emulator's tuning jobs) needs optuna: "
            "pip install 'hydra-vertex-ai[local-sweeps]'"
        ) from None
    return optuna


def is_grid(study_spec: Mapping[str, Any]) -> bool:
    """GRID_SEARCH: the engine enumerates the grid itself, with no sampler, so it needs no optuna."""
    return study_spec.get("algorithm") == "GRID_SEARCH"


def require_engine(study_spec: Mapping[str, Any]) -> None:
    """Fail now, saying what to install, if this study's algorithm needs optuna and it is missing."""
    if not is_grid(study_spec):
        require_optuna()


def _sampler(study_spec: Mapping[str, Any], seed: Optional[int] = None) -> Any:
    optuna = require_optuna()

    if study_spec.get("algorithm") == "RANDOM_SEARCH":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)  # Vertex's default algorithm is Bayesian optimization


class _OptunaProposer:
    """Trials proposed by Optuna's sampler (random search, Bayesian optimization) and told their results."""

    def __init__(self, study_spec: Mapping[str, Any], maximize: bool, seed: Optional[int]) -> None:
        self.optuna = require_optuna()
        self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
        self.study = self.optuna.create_study(direction="maximize" if maximize else "minimize",
                                              sampler=_sampler(study_spec, seed))

    def ask(self) -> Any:
        return self.study.ask()

    def tell(self, trial: Any, value: Optional[float]) -> None:
        """The trial's final value; None: it failed."""
        if value is None:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, value)


class _GridPoint:
    """One grid point, handing out its values as an Optuna trial hands out its suggestions (`_suggest`)."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def suggest_float(self, pid: str, *args: Any, **kwargs: Any) -> Any:
        return self.values[pid]

    suggest_int = suggest_categorical = suggest_float


class _GridProposer:
    """Every grid point, in order (`_grid`): a trial per point until they are used up."""

    def __init__(self, points: List[Dict[str, Any]]) -> None:
        self._points = iter(points)

    def ask(self) -> _GridPoint:
        return _GridPoint(next(self._points))

    def tell(self, trial: Any, value: Optional[float]) -> None:
        pass  # the next point does not depend on the results


def _grid(parameters: List[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Every grid point, in order; a conditional child is enumerated only under the parent values activating it."""
    points: List[Dict[str, Any]] = [{}]
    for spec in parameters:
        subtree = []
        for value in _grid_values(spec):
            subtree += [{spec["parameterId"]: value, **rest} for rest in _grid(_active_children(spec, value))]
        points = [{**point, **more} for point in points for more in subtree]
    return points


def _grid_values(spec: Mapping[str, Any]) -> List[Any]:
    if "integerValueSpec" in spec:
        bounds = spec["integerValueSpec"]
        return list(range(int(_bound(bounds, "minValue")), int(_bound(bounds, "maxValue")) + 1))
    if "discreteValueSpec" in spec:
        return [float(v) for v in spec["discreteValueSpec"]["values"]]
    if "categoricalValueSpec" in spec:
        return list(spec["categoricalValueSpec"]["values"])
    raise StudySpecError(f"grid search cannot enumerate DOUBLE parameter '{spec['parameterId']}'")


def _active_children(spec: Mapping[str, Any], value: Any) -> List[Mapping[str, Any]]:
    """The conditional children of `spec` active when it takes `value` (study.proto conditional_parameter_specs)."""
    return [c["parameterSpec"] for c in spec.get("conditionalParameterSpecs") or [] if child_is_active(spec, c, value)]


def _suggest_active(trial: Any, parameters: List[Mapping[str, Any]]) -> List[Tuple[str, Any, str]]:
    """(id, value, flag text) of each active parameter: a child is sampled only when its parent took a value that
    activates it (define-by-run), so an inactive child gets no value and no flag, as on Vertex."""
    suggested = []
    for spec in parameters:
        value, text = _suggest(trial, spec)
        suggested.append((spec["parameterId"], value, text))
        suggested += _suggest_active(trial, _active_children(spec, value))
    return suggested


def _bound(bounds: Mapping[str, Any], key: str) -> Any:
    return bounds.get(key, 0)  # proto3 JSON (as Vertex and the emulator return it) leaves zero bounds out


def _suggest(trial: Any, spec: Mapping[str, Any]) -> Tuple[Any, str]:
    """Optuna's value for one ParameterSpec, and the flag text Vertex would pass for it."""
    pid = spec["parameterId"]
    log_scale = spec.get("scaleType") == "UNIT_LOG_SCALE"
    if "doubleValueSpec" in spec:
        bounds = spec["doubleValueSpec"]
        value = trial.suggest_float(pid, float(_bound(bounds, "minValue")), float(_bound(bounds, "maxValue")),
                                    log=log_scale)
        return value, repr(float(value))
    if "integerValueSpec" in spec:
        bounds = spec["integerValueSpec"]
        value = trial.suggest_int(pid, int(_bound(bounds, "minValue")), int(_bound(bounds, "maxValue")), log=log_scale)
        return value, str(value)
    if "discreteValueSpec" in spec:
        value = trial.suggest_categorical(pid, [float(v) for v in spec["discreteValueSpec"]["values"]])
        return value, repr(float(value))  # Vertex hands discrete values to containers as doubles
    if "categoricalValueSpec" in spec:
        value = trial.suggest_categorical(pid, list(spec["categoricalValueSpec"]["values"]))
        return value, str(value)
    raise StudySpecError(f"parameter '{pid}' has no value spec")


def read_measurements(path: Path, metric_id: str) -> List[Dict[str, Any]]:
    """REST Measurements from a cloudml-hypertune metrics file (JSON lines), in the order reported."""
    measurements = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # read while hypertune was rewriting the file: the next read sees it whole
            continue
        if metric_id in entry:
            value = float(entry[metric_id])
            step = str(entry.get("global_step") or "0")
            measurements.append({"stepCount": step, "metrics": [{"metricId": metric_id, "value": value}]})
    return measurements


def select_measurement(
    measurements: List[Dict[str, Any]], selection: str, maximize: bool
) -> Optional[Dict[str, Any]]:
    finite = [m for m in measurements if math.isfinite(m["metrics"][0]["value"])]
    if not finite:
        return None
    if selection == "BEST_MEASUREMENT":
        pick = max if maximize else min
        return pick(finite, key=lambda m: m["metrics"][0]["value"])
    return finite[-1]  # LAST_MEASUREMENT is Vertex's default


@dataclass
class _Trial:
    proposed: Any  # the proposer's trial: Optuna's, or a grid point
    rest: Dict[str, Any]
    workdir: Path
    future: "Optional[Future[JobOutcome]]" = field(default=None)
    # set to stop this trial's processes: early stopping, or the whole study stopping
    stop: threading.Event = field(default_factory=threading.Event)
    stopped_early: bool = False


def median_says_stop(
    measurements: List[Dict[str, Any]], completed: List[List[Dict[str, Any]]], maximize: bool
) -> bool:
    """Vertex's median automated stopping rule, by step count: stop a trial whose best value so far is worse
    than the median of the completed trials' running averages up to the trial's last step."""
    if not measurements:
        return False
    step = int(measurements[-1]["stepCount"])
    values = [m["metrics"][0]["value"] for m in measurements]
    best = max(values) if maximize else min(values)
    averages = []
    for other in completed:
        upto = [m["metrics"][0]["value"] for m in other if int(m["stepCount"]) <= step]
        if upto:
            averages.append(sum(upto) / len(upto))
    if not averages:
        return False
    median = statistics.median(averages)
    return best < median if maximize else best > median


class _LocalStudy:
    def __init__(
        self, job: Mapping[str, Any], job_id: str, workdir: Path, cancel: threading.Event, on_update: TrialsCallback,
        seed: Optional[int] = None,
    ) -> None:
        spec = job["studySpec"]
        self.metric_id = spec["metrics"][0]["metricId"]
        self.maximize = spec["metrics"][0].get("goal") == "MAXIMIZE"
        self.selection = spec.get("measurementSelectionType", "LAST_MEASUREMENT")
        self.parameters = spec["parameters"]
        problem = conditional_spec_problem(self.parameters)
        if problem:
            raise StudySpecError(problem)
        self.max_trials = int(job.get("maxTrialCount") or 1)
        self.parallel = max(1, int(job.get("parallelTrialCount") or 1))
        self.max_failed = int(job.get("maxFailedTrialCount") or 0)
        self.trial_job = {"displayName": job.get("displayName", job_id), "jobSpec": job["trialJobSpec"], "labels": {}}
        self.proposer: Any
        if is_grid(spec):
            points = _grid(self.parameters)
            self.max_trials = min(self.max_trials, len(points))
            self.proposer = _GridProposer(points[: self.max_trials])
        else:
            self.proposer = _OptunaProposer(spec, self.maximize, seed)
        self.job_id, self.workdir, self.cancel, self.on_update = job_id, workdir, cancel, on_update
        self.stop = threading.Event()  # stops running trials: user cancel, or too many failures
        self.median_stopping = "medianAutomatedStoppingSpec" in spec
        if "decayCurveStoppingSpec" in spec:
            log.warning("decay-curve early stopping is applied by Vertex only; locally every trial runs to its end")
        self.trials: List[_Trial] = []
        self.failed = 0
        self.on_kill: Optional[KillHook] = None  # the emulator's FUSE stand-in: see processes.KillHook
        self.env_passthrough: Tuple[str, ...] = ()
        self.watch: Optional[FailureWatch] = None
        self.forks: Optional[ForkServers] = None  # the local backend's warm start (forkserver)

    def run(self) -> TuningOutcome:
        error: Optional[str] = None
        with ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="local-trial") as pool:
            running: List[_Trial] = []
            while True:
                if self.cancel.is_set():
                    self.stop.set()
                while not self.stop.is_set() and len(running) < self.parallel and len(self.trials) < self.max_trials:
                    running.append(self._start(pool))
                if not running:
                    break
                for trial in running:
                    if self.stop.is_set():
                        trial.stop.set()
                    elif self.median_stopping:
                        self._maybe_stop_early(trial)
                wait([t.future for t in running if t.future], timeout=0.2, return_when=FIRST_COMPLETED)
                for trial in [t for t in running if t.future and t.future.done()]:
                    running.remove(trial)
                    self._finish(trial, trial.future.result())  # type: ignore[union-attr]
                if error is None and self.max_failed and self.failed >= self.max_failed:
                    error = f"{self.failed} trials failed, reaching max_failed_trial_count={self.max_failed}"
                    log.error("Stopping the study: %s", error)
                    self.stop.set()
                if error is None and self.watch is not None:
                    error = self.watch.update([t.rest for t in self.trials])
                    if error:
                        log.error("%s", error)
                        self.stop.set()
        return self._outcome(error)

    def _start(self, pool: ThreadPoolExecutor) -> _Trial:
        trial_id = str(len(self.trials) + 1)  # Vertex numbers trials from 1; the entry makes hydra.job.num id - 1
        proposed = self.proposer.ask()
        params, flags = [], []
        for pid, value, text in _suggest_active(proposed, self.parameters):
            params.append({"parameterId": pid, "value": value})
            flags.append(f"--{pid}={text}")
        rest = {"id": trial_id, "state": "ACTIVE", "parameters": params, "startTime": _now()}
        trial = _Trial(proposed, rest, self.workdir / trial_id)
        trial.workdir.mkdir(parents=True, exist_ok=True)
        trial.future = pool.submit(
            run_custom_job,
            self.trial_job,
            job_id=f"{self.job_id}-{trial_id}",
            workdir=trial.workdir,
            cancel=trial.stop,
            extra_args=flags,
            trial_id=trial_id,
            extra_env={METRIC_FILE_ENV: str(trial.workdir / METRICS_FILE),
                       **thread_env(self.trial_job, self.parallel)},
            on_kill=self.on_kill,
            env_passthrough=self.env_passthrough,
            forks=self.forks,
        )
        self.trials.append(trial)
        self._notify()
        return trial

    def _maybe_stop_early(self, trial: _Trial) -> None:
        completed = [t.rest["measurements"] for t in self.trials if t.rest["state"] == "SUCCEEDED"]
        if trial.stop.is_set() or len(completed) < MEDIAN_STOPPING_MIN_COMPLETED:
            return
        if median_says_stop(read_measurements(trial.workdir / METRICS_FILE, self.metric_id), completed, self.maximize):
            log.info("Stopping trial %s early: worse than the median of completed trials", trial.rest["id"])
            trial.rest["state"] = "STOPPING"
            trial.stopped_early = True
            trial.stop.set()

    def _finish(self, trial: _Trial, outcome: JobOutcome) -> None:
        measurements = read_measurements(trial.workdir / METRICS_FILE, self.metric_id)
        final = select_measurement(measurements, self.selection, self.maximize)
        trial.rest.update(measurements=measurements, endTime=_now())
        if (outcome.state == SUCCEEDED or trial.stopped_early) and final is not None:
            trial.rest.update(state="SUCCEEDED", finalMeasurement=final)
            self.proposer.tell(trial.proposed, final["metrics"][0]["value"])
        else:
            reason = outcome.error if outcome.state != SUCCEEDED else f"no value reported for metric '{self.metric_id}'"
            trial.rest.update(state="INFEASIBLE", infeasibleReason=reason)
            self.proposer.tell(trial.proposed, None)
            self.failed += outcome.state != CANCELLED
        self._notify()

    def _notify(self) -> None:
        self.on_update(copy.deepcopy([t.rest for t in self.trials]))

    def _outcome(self, error: Optional[str]) -> TuningOutcome:
        trials = [t.rest for t in self.trials]
        if self.cancel.is_set():
            return TuningOutcome(CANCELLED, trials, "cancelled", str(self.workdir))
        if error is None and not any(t["state"] == "SUCCEEDED" for t in trials):
            error = f"all {len(trials)} trials failed"
        return TuningOutcome(FAILED if error else SUCCEEDED, trials, error, str(self.workdir))


def _now() -> str:
    """A REST timestamp (RFC 3339, UTC), as Vertex gives a Trial's startTime and endTime."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")

