"""The sweeper's core: Hydra sweep -> one HyperparameterTuningJob -> optimization_results.yaml."""
import json
import logging
import math
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Dict, List, Mapping, Optional, Set

from hydra.core.utils import JobReturn, JobStatus, setup_globals
from omegaconf import DictConfig, OmegaConf

from . import (
    _conditions,
    _inherit,
    _optuna_port,
    _packaging,
    _payload,
    _report,
    _search_space,
    _storage,
    _tuning_spec,
)
from ._backends import factory
from ._backends.base import Backend, TuningOutcome, failure_line, failure_summary, final_value
from ._compose_cache import SweepComposer
from ._errors import ConfigError, StudyFailedError
from ._signals import interrupts
from ._staging import (
    COLLECT_THREADS,
    ManifestNotFound,
    Staging,
    find_manifest,
    manifest_header,
    new_sweep_id,
    read_manifest,
    stage,
    write_manifest,
)
from ._vertex_facts import SUCCEEDED, short_state, stops_early
from .config import BackendKind, Goal, VertexVizierSweeperConf

if TYPE_CHECKING:
    from .vertex_vizier_sweeper import VertexVizierSweeper

log = logging.getLogger(__name__)
CONFIG_KEY = "hydra.sweeper"
RESULTS_FILE = "optimization_results.yaml"
# Each categorical value is composed once on this machine before submission; beyond this, only the first.
_MAX_CHECK_COMPOSITIONS = 32
# a REST Trial.State
SUCCEEDED_TRIAL = "SUCCEEDED"


def sweep(sweeper: "VertexVizierSweeper", arguments: List[str]) -> List[List[JobReturn]]:
    """The study to its end; SIGTERM and SIGHUP act as Ctrl-C throughout (the tuning job is cancelled)."""
    with interrupts():
        return _sweep(sweeper, arguments)


def _sweep(sweeper: "VertexVizierSweeper", arguments: List[str]) -> List[List[JobReturn]]:
    assert sweeper.config is not None and sweeper.hydra_context is not None
    setup_globals()
    config = sweeper.config
    conf = _settings(config)
    _tuning_spec.validate(conf, CONFIG_KEY)
    sweep_id = new_sweep_id(str(config.hydra.job.name))
    backend = factory.make_backend(conf, CONFIG_KEY, sweep_id, connect=not conf.dry_run)
    backend.study_seed = _optuna_port.seed(config.hydra.sweeper)
    space = _search_space.parse_search_space(_search_space.merge_params(conf.params, arguments), conf.algorithm.value)
    if not space.parameters:  # study.proto: StudySpec.parameters is REQUIRED; nothing is staged yet
        raise ConfigError(
            f"{CONFIG_KEY}.params",
            "no swept parameter: a Vizier study tunes at least one, e.g. model.lr=interval(1e-4,1e-1) or "
            "hydra.sweeper.params; to run fixed overrides as a plain multirun use hydra/launcher=vertex_ai",
        )
    if conf.resume is None:
        space = _conditional(sweeper, space, conf)
    parameter_map = _search_space.parameter_map(space)
    composer = None
    if conf.resume is None:
        composer = _check_composes(sweeper, space, parameter_map)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    staging = backend.staging
    packages = _packaging.for_launch(conf, CONFIG_KEY, sweeper.task_function, staging)
    job = _tuning_spec.build_tuning_job(
        conf, space,
        packages=packages.packages if packages else None,
        display_name=sweep_id,  # starts with the job name already
        labels={"hydra_sweep": sweep_id, "hydra_job": "study", "hydra_uid": f"{sweep_id}-study"},
        payload_uri=staging.study_payload,
        base_output_dir=staging.outputs(conf.job.base_output_dir),
    )
    if conf.dry_run:
        print(json.dumps(job, indent=2))
        log.info("dry_run: printed the HyperparameterTuningJob for %s, submitted nothing", backend.destination)
        return []
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    outputs = backend.outputs_of(str(sweep_dir))
    try:
        if conf.resume is None:
            with backend.tuning_session(job):
                assert composer is not None
                templates = _trial_templates(composer, space, parameter_map, conf)
                if packages is not None:
                    _packaging.stage_packages(packages)
                _stage(sweeper, backend, space, parameter_map, conf, str(sweep_dir), templates)
                _record(backend, conf, sweep_id, str(config.hydra.job.name), str(sweep_dir), parameter_map,
                        list(space.fixed))
                log.info("Vertex Vizier sweeper (%s backend): %d parameter(s), %d trial(s), staging %s",
                         conf.backend.value, len(space.parameters), conf.max_trial_count, staging.root)
                outcome = backend.run_tuning_job(job, outputs)
        else:
            outcome = backend.attach_tuning_job(_resume_target(conf), outputs)
    except KeyboardInterrupt:
        _interrupted(backend, conf, parameter_map, list(space.fixed), sweep_dir, sweep_id)
    # A resumed study's trials wrote their results next to its own payload, not under this run's staging.
    if outcome.payload_uri:
        staging = Staging.of_study_payload(outcome.payload_uri)
    early = stopped_early_ids(outcome, job["studySpec"], staging)
    # read before the summary: a trial whose result is truncated or unreadable is a failed trial there too
    returns = _trial_returns(staging, config, parameter_map, list(space.fixed), outcome, early, conf.retry_timeout_s)
    unreadable = unreadable_results(outcome, returns)
    _tell_trial_failures(outcome, unreadable)
    results = write_results(sweep_dir / RESULTS_FILE, conf, parameter_map, list(space.fixed), outcome, early,
                            unreadable)
    _report.report_sweep(sweep_dir, results, outcome, job["studySpec"], backend)  # never raises
    if early:
        log.info("Stopped early by the early stopping rule (reported with their last measurement): trial(s) %s",
                 ", ".join(sorted(early, key=lambda i: (len(i), i))))
    if outcome.state != SUCCEEDED:
        raise StudyFailedError(f"the tuning job ended {short_state(outcome.state)}: {outcome.error} "
                               f"(partial results in {sweep_dir / RESULTS_FILE})")
    _summarize(results, conf, sweep_dir)
    return [returns]


def _settings(config: DictConfig) -> VertexVizierSweeperConf:
    """hydra.sweeper as one typed conf: unset keys read from hydra/launcher=vertex_ai and from the Optuna keys."""
    _optuna_port.check(config.hydra.sweeper, CONFIG_KEY)
    conf: VertexVizierSweeperConf = OmegaConf.to_object(config.hydra.sweeper)  # type: ignore[assignment]
    _inherit.merged_mappings(config, conf)
    differs = _inherit.differs_line(config, conf)
    if differs:
        log.warning("%s", differs)
    return conf


def _summarize(results: Mapping[str, Any], conf: VertexVizierSweeperConf, sweep_dir: Path) -> None:
    """The best trial's overrides in Hydra's form and as a command line to paste; a study without one fails."""
    if results["best_trial"] is None:
        states = sorted({str(t["state"]) for t in results["trials"]})
        reasons = [t["infeasible_reason"] for t in results["trials"] if t["infeasible_reason"]]
        why = f"trial states {', '.join(states)}" if states else "the study has no trial"
        raise StudyFailedError(
            f"no trial completed with a finite {conf.metric_id}: {why}"
            + (f"; first reason: {reasons[0]}" if reasons else "") + f" (see {sweep_dir / RESULTS_FILE})"
        )
    log.info("Best %s = %s (trial %s) with %s", conf.metric_id, results["best_value"], results["best_trial"],
             " ".join(results["best_params"]))
    # hydra.mode=RUN: an hparams_search config sets MULTIRUN, and the pasted line would sweep again
    log.info("Run the best trial again: %s hydra.mode=RUN", " ".join([_program(), results["best_overrides_shell"]]))


def _program() -> str:
    """How this run was started, as a shell would read it back: `python src/train.py`, or a console script."""
    script = sys.argv[0]
    return shlex.join(["python", script]) if script.endswith(".py") else shlex.quote(os.path.basename(script))


def _resume_target(conf: VertexVizierSweeperConf) -> str:
    """`hydra.sweeper.resume`: a tuning job's resource name, or a sweep id (or manifest) whose job it records."""
    assert conf.resume is not None
    if conf.resume.startswith("projects/"):
        return conf.resume
    try:
        manifest = read_manifest(find_manifest(conf.resume, [conf.staging_dir], os.getcwd()))
    except ManifestNotFound as e:
        raise ConfigError(f"{CONFIG_KEY}.resume", str(e)) from None
    if not manifest.get("tuning_job"):
        raise ConfigError(f"{CONFIG_KEY}.resume", f"sweep {manifest.get('sweep_id')} recorded no tuning job")
    return str(manifest["tuning_job"])


def _record(backend: Backend, conf: VertexVizierSweeperConf, sweep_id: str, job_name: str, sweep_dir: str,
            parameter_map: Mapping[str, Any], fixed: List[str]) -> None:
    """The study's manifest, before its tuning job exists; the job's name is added as soon as it is known."""
    manifest = manifest_header("study", sweep_id, job_name, sweep_dir, conf, backend)
    manifest.update(metric_id=conf.metric_id, goal=conf.goal.value, parameter_map=dict(parameter_map), fixed=fixed,
                    tuning_job=None)
    write_manifest(backend.staging, manifest)
    backend.on_tuning_created = lambda name: write_manifest(backend.staging, {**manifest, "tuning_job": name})


def _interrupted(backend: Backend, conf: VertexVizierSweeperConf, parameter_map: Mapping[str, Any],
                 fixed: List[str], sweep_dir: Path, sweep_id: str) -> None:
    """Ctrl-C: the backend has cancelled the study; keep the trials that finished, then exit without a traceback."""
    partial: Optional[TuningOutcome] = backend.partial_tuning
    if partial is not None:
        write_results(sweep_dir / RESULTS_FILE, conf, parameter_map, fixed, partial)
        done = sum(t.get("state") == "SUCCEEDED" for t in partial.trials)
        print(f"Interrupted: wrote {sweep_dir / RESULTS_FILE} with the {done} trial(s) that finished", file=sys.stderr)
    print(f"Interrupted: sweep {sweep_id}; see it with `hydra-vertex-ai status {sweep_id} --staging "
          f"{backend.staging.staging_dir}`", file=sys.stderr, flush=True)
    raise SystemExit(130)


def _conditional(
    sweeper: "VertexVizierSweeper", space: "_search_space.SearchSpace", conf: VertexVizierSweeperConf
) -> "_search_space.SearchSpace":
    """The conditions stated in `hydra.sweeper.conditions`, then those the swept config groups' options imply."""
    assert sweeper.hydra_context is not None and sweeper.config is not None
    space = _search_space.apply_conditions(space, conf.conditions, f"{CONFIG_KEY}.conditions")
    loader, config = sweeper.hydra_context.config_loader, sweeper.config
    stated = [_search_space.parameter_id_for(key.lstrip("+")) for key in conf.conditions]
    return _conditions.infer(space, lambda overrides: loader.load_sweep_config(config, overrides),
                             lambda group: bool(loader.get_group_options(group)), stated, CONFIG_KEY)


def _check_composes(sweeper: "VertexVizierSweeper", space: "_search_space.SearchSpace",
                    parameter_map: Mapping[str, Any]) -> SweepComposer:
    """Compose a few trials here, so a typo'd key or a missing config group fails before any trial runs; the
    composer that did, with their shapes (`_trial_templates`)."""
    assert sweeper.hydra_context is not None and sweeper.config is not None
    composer = SweepComposer(sweeper.hydra_context.config_loader, sweeper.config)
    for sample in _sample_values(space)[:_MAX_CHECK_COMPOSITIONS]:
        overrides = _sample_overrides(space, parameter_map, sample)
        try:
            composer.compose(overrides)
        except Exception as e:  # the search space names a key or an option the config does not have
            raise ConfigError(f"{CONFIG_KEY}.params", f"a trial with overrides {overrides} cannot be composed: {e}") from e
    return composer


def _sample_overrides(space: "_search_space.SearchSpace", parameter_map: Mapping[str, Any],
                      sample: Mapping[str, Any]) -> List[str]:
    """A trial's overrides for `sample`'s values, as the trial builds them: the fixed ones, then the active ones."""
    conditions = _search_space.conditions_of(space)
    values = {pid: v for pid, v in sample.items() if _search_space.is_active(conditions, sample, pid)}
    return list(space.fixed) + _search_space.overrides_from_values(parameter_map, values)


def _trial_templates(composer: SweepComposer, space: "_search_space.SearchSpace", parameter_map: Mapping[str, Any],
                     conf: VertexVizierSweeperConf) -> List[Any]:
    """On the local backend with warm start, the trial shapes whose derivation Hydra's composition confirmed here
    (`_compose_cache`): trials derive their configs from them. One more trial, every parameter at its other end,
    confirms the first one's shape; where that cannot be shown, trials compose as they do on Vertex."""
    if conf.backend != BackendKind.local or not conf.local_warm_start:
        return []
    try:
        composer.compose(_sample_overrides(space, parameter_map, _last_values(space)))
    except Exception as e:  # refused by the config (a trial with these values would fail alike): no template
        log.debug("no verified trial template: %r", e)
    return composer.templates()


def _sample_values(space: "_search_space.SearchSpace") -> List[Dict[str, Any]]:
    """One trial at each parameter's first value, then one per other categorical/discrete value."""
    base = {p.parameter_id: _values_of(p.spec)[0] for p in space.parameters}
    samples = [base]
    for p in space.parameters:
        if "categoricalValueSpec" in p.spec:
            samples += [{**base, p.parameter_id: v} for v in _values_of(p.spec)[1:]]
    return samples


def _last_values(space: "_search_space.SearchSpace") -> Dict[str, Any]:
    """One trial with every parameter at its last value (its maximum, its last listed value)."""
    return {p.parameter_id: _values_of(p.spec)[-1] for p in space.parameters}


def _values_of(spec: Mapping[str, Any]) -> List[Any]:
    """The values a check composes: a range's ends, every listed value."""
    for kind in ("doubleValueSpec", "integerValueSpec"):
        if kind in spec:
            return [float(spec[kind]["minValue"]), float(spec[kind]["maxValue"])]
    if "discreteValueSpec" in spec:
        return [float(v) for v in spec["discreteValueSpec"]["values"]]
    return list(spec["categoricalValueSpec"]["values"])


def _stage(
    sweeper: "VertexVizierSweeper",
    backend: Backend,
    space: "_search_space.SearchSpace",
    parameter_map: Dict[str, Any],
    conf: VertexVizierSweeperConf,
    sweep_dir: str,
    templates: List[Any],
) -> None:
    """One payload for the whole study: every trial composes its own config from it and its flags."""
    assert sweeper.hydra_context is not None and sweeper.task_function is not None and sweeper.config is not None
    staging = backend.staging
    payload = _payload.JobPayload(
        context_uri=staging.study_context,
        config=sweeper.config,
        result_uri=staging.trial_result(),
        parameters=parameter_map,
        conditions=_search_space.conditions_of(space),
        fixed_overrides=list(space.fixed),
        metric_id=conf.metric_id,
        sweep_dir=backend.container_path(sweep_dir),
        trial_templates=templates,
    )
    stage(staging, conf.snapshot, CONFIG_KEY, sweeper.hydra_context, sweeper.task_function, staging.study_context,
          {staging.study_payload: payload})


def _tell_trial_failures(outcome: TuningOutcome, unreadable: Mapping[str, str]) -> None:
    """One console line per failed trial with its reason (the exception its log shows), then the trials counted
    by state and the failures by distinct reason. (Unreadable results were told as they were found.)"""
    reasons = [failure_line(str(t.get("infeasibleReason") or "no reason given")) for t in outcome.trials
               if t.get("state") == "INFEASIBLE"]
    for trial, reason in zip([t for t in outcome.trials if t.get("state") == "INFEASIBLE"], reasons):
        log.error("Trial %s failed: %s", trial.get("id"), reason)
    reasons += [failure_line(why) for why in unreadable.values()]
    if reasons:
        states = ["FAILED" if str(t.get("id")) in unreadable else str(t.get("state")) for t in outcome.trials]
        log.error("%s", failure_summary(states, reasons, "trial(s)"))


def unreadable_results(outcome: TuningOutcome, returns: List[JobReturn]) -> Dict[str, str]:
    """Trial id -> why, for the trials the service counts SUCCEEDED whose result could not be read here (truncated,
    unreadable): each is told on the console, and counted failed in the summary."""
    failed = {str(t.get("id")): str(r._return_value) for t, r in zip(outcome.trials, returns)
              if t.get("state") == SUCCEEDED_TRIAL and r.status == JobStatus.FAILED}
    for trial_id, why in failed.items():
        log.error("Trial %s failed: %s", trial_id, why)
    return failed


def write_results(
    path: Path,
    conf: VertexVizierSweeperConf,
    parameter_map: Mapping[str, Any],
    fixed: List[str],
    outcome: TuningOutcome,
    stopped_early: AbstractSet[str] = frozenset(),
    unreadable: Mapping[str, str] = {},
) -> Dict[str, Any]:
    """optimization_results.yaml: the best value and parameters as paste-ready overrides, and every trial
    (those in `unreadable` as FAILED, with why)."""
    trials = [_trial_summary(t, parameter_map, stopped_early) for t in outcome.trials]
    for trial in trials:
        if trial["id"] in unreadable:
            trial.update(state="FAILED", infeasible_reason=unreadable[trial["id"]])
    scored = [t for t in trials if t["state"] == "SUCCEEDED" and t["value"] is not None and math.isfinite(t["value"])]
    best = (max if conf.goal == Goal.maximize else min)(scored, key=lambda t: t["value"]) if scored else None
    results = {
        "name": "vertex_vizier",
        "tuning_job": outcome.name,
        "state": short_state(outcome.state),
        "metric_id": conf.metric_id,
        "goal": conf.goal.value,
        "best_trial": best["id"] if best else None,
        "best_value": best["value"] if best else None,
        "best_params": best["params"] if best else [],
        # the fixed and best overrides as one line a shell reads back unchanged (printed, never run here)
        "best_overrides_shell": shlex.join(fixed + best["params"]) if best else None,
        "fixed_params": fixed,
        "trials": trials,
    }
    OmegaConf.save(OmegaConf.create(results), path)
    return results


def _trial_summary(
    trial: Mapping[str, Any], parameter_map: Mapping[str, Any], stopped_early: AbstractSet[str] = frozenset()
) -> Dict[str, Any]:
    values = {p["parameterId"]: p.get("value") for p in trial.get("parameters", [])}
    return {
        "id": str(trial.get("id")),
        "state": trial.get("state"),
        "params": _search_space.overrides_from_values(parameter_map, values),
        "value": final_value(trial),
        "infeasible_reason": trial.get("infeasibleReason") or None,
        # the value is the last measurement the trial reported before the rule stopped it
        "stopped_early": str(trial.get("id")) in stopped_early,
    }


def stopped_early_ids(outcome: TuningOutcome, study_spec: Mapping[str, Any], staging: Staging) -> Set[str]:
    """The trials an early stopping rule stopped: SUCCEEDED with a final measurement but without a result.

    Neither Vertex's Trial nor the local study has a field for it. A trial whose container ran to its end
    has a result.pkl (the chief writes it before exiting 0, and a failed write fails the trial); one that the
    service stopped was killed first, and Vertex still completes it SUCCEEDED with its last measurement
    (study.proto Trial.State STOPPING, then final_measurement auto-selected per measurement_selection_type).
    """
    if not stops_early(study_spec):
        return set()
    return {
        str(t.get("id"))
        for t in outcome.trials
        if t.get("state") == SUCCEEDED_TRIAL
        and final_value(t) is not None
        and not _storage.exists(staging.trial_result(str(t.get("id"))))
    }


def _trial_returns(
    staging: Staging,
    config: DictConfig,
    parameter_map: Mapping[str, Any],
    fixed: List[str],
    outcome: TuningOutcome,
    stopped_early: AbstractSet[str] = frozenset(),
    deadline_s: Optional[float] = None,
) -> List[JobReturn]:
    """Each trial's JobReturn as its container wrote it; a COMPLETED one whose return value is the last
    measurement for a trial stopped early; or a FAILED one saying why there is none.

    One unreadable result (truncated, or storage gone: reads give up after `deadline_s`) fails that trial only."""

    def collect(trial: Mapping[str, Any]) -> JobReturn:
        overrides = fixed + _trial_summary(trial, parameter_map)["params"]
        if str(trial.get("id")) in stopped_early:
            return _payload.completed_return(config, overrides, final_value(trial))
        uri = staging.trial_result(str(trial.get("id")))
        try:
            if _storage.exists(uri, deadline_s):
                return _payload.load_result(_storage.read_bytes(uri, deadline_s))
        except Exception as e:
            reason = f"trial {trial.get('id')} ended {trial.get('state')}; its result {uri} cannot be read here: {e!r}"
            return _payload.failed_return(config, overrides, _payload.RemoteJobError(reason))
        reason = trial.get("infeasibleReason") or f"trial ended {trial.get('state')} without a result"
        return _payload.failed_return(config, overrides, _payload.RemoteJobError(reason))

    with ThreadPoolExecutor(max_workers=COLLECT_THREADS, thread_name_prefix="vertex-collect") as pool:
        return list(pool.map(collect, outcome.trials))

