"""The launcher's core: compose every job, stage its payload, build its CustomJob, run, collect JobReturns."""
import gc
import json
import logging
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, AbstractSet, Any, Dict, Iterator, List, Mapping, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf

from . import _jobspec, _packaging, _payload, _prepare, _report, _storage
from ._backends import factory
from ._backends.base import LOG_TAIL_HEAD, Backend, JobOutcome, exception_line, failure_summary, log_tail
from ._errors import ConfigError
from ._hints import host_setting_hint
from ._prepare import PreparedJob
from ._signals import interrupts
from ._staging import (
    COLLECT_THREADS,
    ManifestNotFound,
    Staging,
    cancelled_uids,
    find_manifest,
    manifest_header,
    merge_jobs,
    new_sweep_id,
    read_manifest,
    record_cancelled,
    stage_context,
    update_jobs,
    write_manifest,
)
from ._vertex_facts import SUCCEEDED, short_state
from .config import VertexAILauncherConf

if TYPE_CHECKING:
    from .vertex_ai_launcher import VertexAILauncher

log = logging.getLogger(__name__)
CONFIG_KEY = "hydra.launcher"


def launch(launcher: "VertexAILauncher", job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    """The sweep's jobs to their end; SIGTERM and SIGHUP act as Ctrl-C throughout (the jobs are cancelled)."""
    with interrupts(), _collector_for_a_batch():
        return _launch(launcher, job_overrides, initial_job_idx)


# Allocations between two young collections during launch() (Python's default: 700).
BATCH_GC_THRESHOLD = 10_000


@contextmanager
def _collector_for_a_batch() -> Iterator[None]:
    """During launch(), which builds many configs that stay alive, the garbage collector leaves alone what
    existed before (Hydra, the app's modules, the master config), which its full collections walked again and
    again as the composed jobs piled up, and collects young objects less often (1,800 collections at 500 jobs,
    a third of the launcher's CPU, then 120). Both are undone when launch() returns: all of it is collectable
    again, with the app's own settings."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], BATCH_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _launch(launcher: "VertexAILauncher", job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    assert launcher.config is not None and launcher.hydra_context is not None
    assert launcher.task_function is not None
    cpu_at_start = time.process_time()
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    conf: VertexAILauncherConf = OmegaConf.to_object(launcher.config.hydra.launcher)  # type: ignore[assignment]
    _jobspec.validate(conf.job, f"{CONFIG_KEY}.job")
    sweep_dir = str(launcher.config.hydra.sweep.dir)
    if conf.attach:
        earlier = _attach_to(conf)
        launcher.sweep_id, conf.staging_dir, sweep_dir = earlier["sweep_id"], earlier["staging_dir"], earlier["sweep_dir"]
    if launcher.sweep_id is None:
        launcher.sweep_id = new_sweep_id(str(launcher.config.hydra.job.name))
    log.info("Vertex AI launcher (%s backend): %d job(s) of sweep %s", conf.backend.value, len(job_overrides),
             launcher.sweep_id)
    backend = factory.make_backend(conf, CONFIG_KEY, launcher.sweep_id, connect=not conf.dry_run)
    backend.attach, backend.wait = bool(conf.attach), conf.wait
    staging = backend.staging
    packages = _packaging.for_launch(conf, CONFIG_KEY, launcher.task_function, staging)
    jobs = [_prepare.plan(launcher, conf, backend, initial_job_idx + i, list(overrides), packages)
            for i, overrides in enumerate(job_overrides)]
    if conf.dry_run:
        for job in jobs:
            _prepare.compose(launcher, backend, job, sweep_dir)
            print(json.dumps(job.custom_job, indent=2))
        log.info("dry_run: printed %d CustomJob spec(s) for %s, submitted nothing", len(jobs), backend.destination)
        return []
    try:
        outcomes = _run(launcher, conf, backend, jobs, sweep_dir, packages)
    except KeyboardInterrupt:
        print(follow_hint(launcher.sweep_id, staging, "Interrupted"), file=sys.stderr, flush=True)
        raise SystemExit(130) from None  # the backend has cancelled and said which jobs: no traceback
    log.debug("launch(): %d job(s) submitted%s using %.2f CPU-s of this process", len(jobs),
              "" if conf.wait else " (not waited for)", time.process_time() - cpu_at_start)
    if not conf.wait:
        print(follow_hint(launcher.sweep_id, staging, f"Submitted {len(jobs)} job(s), not waiting"), flush=True)
        return [_unknown_return(job) for job in jobs]
    # Storage reads give up after retry_timeout_s, all jobs at once: Cloud Storage gone must not hang the sweep.
    with ThreadPoolExecutor(max_workers=COLLECT_THREADS, thread_name_prefix="vertex-collect") as pool:
        returns = list(pool.map(lambda j, o: _collect(j, o, conf.retry_timeout_s), jobs, outcomes))
    _tell_failures(jobs, outcomes, returns, _shipped_env(conf))
    _report.report_launch(sweep_dir, launcher.sweep_id, jobs, outcomes, returns)
    return returns


def _run(launcher: "VertexAILauncher", conf: VertexAILauncherConf, backend: Backend, jobs: List[PreparedJob],
         sweep_dir: str, packages: Optional[_packaging.StagedPackages]) -> List[JobOutcome]:
    """Record the sweep, stage what every job shares, then stream the jobs to the backend (see `_prepare`)."""
    assert launcher.hydra_context is not None
    staging = backend.staging
    context_uri = staging.context(jobs[0].num if jobs else 0)
    if jobs:  # an override every job shares fails here, before anything is recorded or created
        _prepare.compose(launcher, backend, jobs[0], sweep_dir)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    log.info("Staging in %s", staging.root)
    backend.job_overrides = {str(job.num): " ".join(filter_overrides(job.overrides)) for job in jobs}
    _record(launcher, conf, backend, jobs, sweep_dir)  # before the first job exists: a crash can re-attach
    # re-attaching: jobs that exist already read what is staged; keep it as they saw it
    staged = [job.payload_uri for job in jobs if _storage.exists(job.payload_uri)] if conf.attach else []
    if packages is not None:
        _packaging.stage_packages(packages)
    header = None
    if len(staged) < len(jobs) or not _storage.exists(context_uri):
        header = stage_context(staging, conf.snapshot, CONFIG_KEY, launcher.hydra_context, launcher.task_function,
                               context_uri)
    with _prepare.Stream(launcher, backend, jobs, sweep_dir, context_uri, header, staged) as stream:
        return backend.run_jobs([job.custom_job for job in jobs], backend.outputs_of(sweep_dir), stream.feed)


def _collect(job: PreparedJob, outcome: JobOutcome, deadline_s: Optional[float] = None) -> JobReturn:
    """The job's own JobReturn when the job as a whole succeeded (or the task itself failed); otherwise a
    FAILED one saying what happened: no result, an unreadable one, or another replica that failed."""
    name = f"job #{job.num} ({job.custom_job['displayName']})"
    state = short_state(outcome.state)
    ret = None
    try:
        found = _storage.exists(job.result_uri, deadline_s)
        if found:
            ret = _payload.load_result(_storage.read_bytes(job.result_uri, deadline_s))
    except Exception as e:  # a truncated pickle, a type this environment lacks, storage gone: one job, not the sweep
        message = f"{name} ended {state}; its result {job.result_uri} cannot be read here: {e!r}"
        return _payload.failed_return(job.composed, job.overrides, _payload.RemoteJobError(message))
    if ret is not None and (ret.status != JobStatus.COMPLETED or outcome.state == SUCCEEDED):
        return ret
    message = f"{name} ended {state} " + ("although its chief completed" if ret else "without a result")
    if outcome.error:
        message += f": {outcome.error}"
    if outcome.where:
        message += f"\nsee {outcome.where}"
    return _payload.failed_return(job.composed, job.overrides, _payload.RemoteJobError(message))


def _tell_failures(jobs: Sequence[PreparedJob], outcomes: Sequence[JobOutcome], returns: Sequence[JobReturn],
                   shipped_env: AbstractSet[str] = frozenset()) -> None:
    """One console line per failed job saying why (its exception, not its log's last line, and what to set when a
    host setting was not shipped) with its log's last lines below; then the sweep's jobs counted by state and
    its failures by distinct reason. `shipped_env`: the variable names the jobs had."""
    reasons: List[str] = []
    for job, outcome, ret in zip(jobs, outcomes, returns):
        if ret.status != JobStatus.FAILED:
            continue
        reason = _reason(ret._return_value, outcome)
        reasons.append(reason)
        hint = host_setting_hint(reason, shipped_env, os.getcwd(), CONFIG_KEY)
        tail = log_tail(outcome.error)
        log.error("Job #%d (%s) failed: %s%s%s", job.num, " ".join(filter_overrides(job.overrides)), reason,
                  f"\n  -> {hint}" if hint else "", "\n  " + tail.replace("\n", "\n  ") if tail else "")
    if reasons:
        states = ["FAILED" if ret.status == JobStatus.FAILED and outcome.state == SUCCEEDED else short_state(outcome.state)
                  for outcome, ret in zip(outcomes, returns)]
        log.error("%s", failure_summary(states, reasons))


def _shipped_env(conf: VertexAILauncherConf) -> AbstractSet[str]:
    """The variable names a job's environment has besides Vertex's own: job.env, and locally the passthrough."""
    names = set(_jobspec.job_env(conf.job))
    if conf.backend.value == "local":
        from ._backends.processes import host_env

        names |= set(host_env(conf.local_env_passthrough))
    return names


def _reason(error: Any, outcome: JobOutcome) -> str:
    """Why a job failed, in one line: the task's own exception, or the one its log shows, or what Vertex said."""
    if isinstance(error, BaseException) and not isinstance(error, _payload.RemoteJobError):
        return f"{type(error).__name__}: {error}".splitlines()[0]
    shown = exception_line(log_tail(outcome.error).splitlines())
    if shown:
        return shown
    text = (outcome.error or str(error)).split(LOG_TAIL_HEAD)[0].strip()  # e.g. "replica ... exited with code 1"
    return text.splitlines()[0] if text else "no reason given"


# --- the manifest, re-attaching, detaching ---------------------------------------------------------------


def _attach_to(conf: VertexAILauncherConf) -> Dict[str, Any]:
    """The manifest of the sweep `hydra.launcher.attach` names (a sweep id or a manifest path/URI)."""
    assert conf.attach is not None
    try:
        manifest = read_manifest(find_manifest(conf.attach, [conf.staging_dir], os.getcwd()))
    except ManifestNotFound as e:
        raise ConfigError(f"{CONFIG_KEY}.attach", str(e)) from None
    if manifest.get("kind") != "launch" or manifest.get("backend") != conf.backend.value:
        raise ConfigError(f"{CONFIG_KEY}.attach", f"sweep {manifest.get('sweep_id')} is a {manifest.get('kind')} on "
                          f"the {manifest.get('backend')} backend, not a launch on the {conf.backend.value} backend")
    log.info("Re-attaching to sweep %s (sweep dir %s)", manifest["sweep_id"], manifest["sweep_dir"])
    return manifest


def _record(
    launcher: "VertexAILauncher", conf: VertexAILauncherConf, backend: Backend, jobs: List[PreparedJob], sweep_dir: str
) -> None:
    """Write the sweep manifest (merged with earlier batches of the same sweep) before any job is created."""
    assert launcher.config is not None and launcher.sweep_id is not None
    staging = backend.staging
    earlier = read_manifest(staging.manifest) if _storage.exists(staging.manifest) else {}
    entries = [{
        "num": job.num,
        "overrides": list(job.overrides),
        "hydra_uid": job.custom_job["labels"]["hydra_uid"],
        "display_name": job.custom_job["displayName"],
        "result": job.result_uri,
        "job_dir": staging.job_dir(job.num),
        "subdir": _subdir(job.config),  # None until composed: set once every job exists (`_record_names`)
    } for job in jobs]
    manifest = manifest_header("launch", launcher.sweep_id, str(launcher.config.hydra.job.name), sweep_dir, conf, backend)
    manifest.update(
        created=earlier.get("created", manifest["created"]),
        task_overrides=list(launcher.config.hydra.overrides.task),
        wait=conf.wait,
        jobs=merge_jobs(earlier.get("jobs", []), entries),
    )
    write_manifest(staging, manifest)
    backend.on_jobs_created = lambda names: _record_names(staging, names, jobs)
    # a job cancelled while queued (Ctrl-C, `hydra-vertex-ai cancel`) is never created, by this run or a re-attach
    backend.cancelled = cancelled_uids(manifest)
    backend.on_never_created = lambda uids: record_cancelled(staging, uids)
    backend.cancelled_now = lambda: cancelled_uids(read_manifest(staging.manifest))


def _record_names(staging: Staging, names: Mapping[str, str], jobs: Sequence[PreparedJob]) -> None:
    """Each job's resource name, output dir and display name, once all exist: one more write of the manifest
    per launch batch (as it is now: `hydra-vertex-ai cancel` may have recorded cancelled jobs meanwhile)."""
    composed = {job.custom_job["labels"]["hydra_uid"]: job for job in jobs}

    def update(entry: Dict[str, Any]) -> None:
        uid = str(entry.get("hydra_uid"))
        if uid in names:
            entry["name"] = names[uid]
        if uid in composed and entry.get("subdir") is None:  # resolving it parses its interpolation: once
            entry.update(subdir=_subdir(composed[uid].config), display_name=composed[uid].custom_job["displayName"])

    update_jobs(staging, update)


def _subdir(config: Optional[DictConfig]) -> Optional[str]:
    """The job's output dir below the sweep dir, where it can be resolved here."""
    if config is None:
        return None
    try:
        return str(config.hydra.sweep.subdir)
    except Exception:  # a resolver only the job has: the CLI falls back to the staged log
        return None


def follow_hint(sweep_id: str, staging: Staging, what: str) -> str:
    """How to follow, collect or re-attach a sweep, printed when the launcher leaves it running or stops."""
    cli = f"hydra-vertex-ai {{}} {sweep_id} --staging {shlex.quote(staging.staging_dir)}"
    rerun = shlex.join([os.path.basename(sys.executable), *_rerun_args(sys.argv)])
    return (f"{what}: sweep {sweep_id}\n"
            f"  follow:    {cli.format('status')}   (or logs, cancel)\n"
            f"  collect:   {cli.format('collect')}\n"
            f"  re-attach: {rerun} hydra.launcher.attach={sweep_id}")


# what the re-attach command must not repeat: it would detach again, or name another sweep
_NOT_REPEATED = (f"{CONFIG_KEY}.wait", f"{CONFIG_KEY}.attach")


def _rerun_args(argv: Sequence[str]) -> List[str]:
    """The command line to re-attach with: this one without `wait=` and `attach=` (`+`/`++`/`~` forms too)."""
    return [arg for arg in argv if arg.lstrip("+~").split("=", 1)[0] not in _NOT_REPEATED]


class _MadeWhenRead:
    """A config field of a PendingReturn, made from the job's config when first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ret: Optional["PendingReturn"], owner: Optional[type] = None) -> Optional[DictConfig]:
        return None if ret is None else ret._made(self.name)

    def __set__(self, ret: "PendingReturn", value: Optional[DictConfig]) -> None:
        ret.__dict__[self.name] = value


class PendingReturn(JobReturn):
    """A job still running when the launcher returned (`wait=false`): status UNKNOWN, Hydra's "not known yet".

    Its value reads as None rather than failing Hydra's assertion: Hydra's basic sweeper reads every value
    to re-raise failures, and a detached sweep has none yet (`hydra-vertex-ai collect` brings them later).
    Its `cfg` and `hydra_cfg` are made from the job's config when first read: 10 ms a job, 5 s of a 500-job
    detach that a sweeper reading only values never used."""

    _composed: Optional[DictConfig] = None

    @property
    def return_value(self) -> Any:
        return None if self.status == JobStatus.UNKNOWN else JobReturn.return_value.fget(self)  # type: ignore[attr-defined]

    @return_value.setter
    def return_value(self, value: Any) -> None:
        self._return_value = value

    cfg = _MadeWhenRead()
    hydra_cfg = _MadeWhenRead()

    def _made(self, field: str) -> Optional[DictConfig]:
        composed = self.__dict__.pop("_composed", None)
        if composed is not None:
            made = _payload.failed_return(composed, list(self.overrides or []), RuntimeError("not finished"))
            self.__dict__.update(cfg=made.cfg, hydra_cfg=made.hydra_cfg)
        value: Optional[DictConfig] = self.__dict__.get(field)
        return value


def _unknown_return(job: PreparedJob) -> JobReturn:
    """Hydra's JobReturn for a job still running: status UNKNOWN, no value yet."""
    ret = PendingReturn(overrides=job.overrides, working_dir=os.getcwd(), task_name=str(job.composed.hydra.job.name),
                        status=JobStatus.UNKNOWN)
    ret._composed = job.composed
    return ret
