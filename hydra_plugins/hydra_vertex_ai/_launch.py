"""The launcher's core: compose every job, stage its payload, build its CustomJob, run, collect JobReturns."""
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from . import _jobspec, _payload, _report, _storage
from ._backends import factory
from ._backends.base import Backend, JobOutcome
from ._signals import interrupts
from ._staging import new_sweep_id, stage
from ._vertex_facts import SUCCEEDED, short_state
from .config import VertexAILauncherConf

if TYPE_CHECKING:
    from .vertex_ai_launcher import VertexAILauncher

log = logging.getLogger(__name__)
CONFIG_KEY = "hydra.launcher"
_COLLECT_THREADS = 16


@dataclass
class PreparedJob:
    """One Hydra job on its way to the backend."""

    num: int
    overrides: List[str]
    config: DictConfig
    payload_uri: str
    result_uri: str
    custom_job: Dict[str, Any]


def launch(launcher: "VertexAILauncher", job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    """The sweep's jobs to their end; SIGTERM and SIGHUP act as Ctrl-C throughout (the jobs are cancelled)."""
    with interrupts():
        return _launch(launcher, job_overrides, initial_job_idx)


def _launch(launcher: "VertexAILauncher", job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    assert launcher.config is not None and launcher.hydra_context is not None
    assert launcher.task_function is not None
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    conf: VertexAILauncherConf = OmegaConf.to_object(launcher.config.hydra.launcher)  # type: ignore[assignment]
    _jobspec.validate(conf.job, f"{CONFIG_KEY}.job")
    if launcher.sweep_id is None:
        launcher.sweep_id = new_sweep_id(str(launcher.config.hydra.job.name))
    backend = factory.make_backend(conf, CONFIG_KEY, launcher.sweep_id, connect=not conf.dry_run)
    staging = backend.staging
    context_uri = staging.context(initial_job_idx)
    jobs = [
        _prepare(launcher, conf, backend, initial_job_idx + i, list(overrides))
        for i, overrides in enumerate(job_overrides)
    ]
    if conf.dry_run:
        for job in jobs:
            print(json.dumps(job.custom_job, indent=2))
        log.info("dry_run: printed %d CustomJob spec(s), submitted nothing", len(jobs))
        return []
    sweep_dir = str(launcher.config.hydra.sweep.dir)
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    log.info("Vertex AI launcher (%s backend): %d job(s), staging %s", conf.backend.value, len(jobs), staging.root)
    payloads = {job.payload_uri: _payload.JobPayload(context_uri, job.config, job.result_uri) for job in jobs}
    stage(staging, conf.snapshot, CONFIG_KEY, launcher.hydra_context, launcher.task_function, context_uri, payloads)
    outcomes = backend.run_jobs([job.custom_job for job in jobs], backend.outputs_of(sweep_dir))
    # Storage reads give up after retry_timeout_s, all jobs at once: Cloud Storage gone must not hang the sweep.
    with ThreadPoolExecutor(max_workers=_COLLECT_THREADS, thread_name_prefix="vertex-collect") as pool:
        returns = list(pool.map(lambda j, o: _collect(j, o, conf.retry_timeout_s), jobs, outcomes))
    _report.report_launch(sweep_dir, launcher.sweep_id, jobs, outcomes, returns)
    return returns


def _prepare(
    launcher: "VertexAILauncher",
    conf: VertexAILauncherConf,
    backend: Backend,
    num: int,
    overrides: List[str],
) -> PreparedJob:
    """Compose the job's config (bad overrides fail here, before anything runs) and build its CustomJob."""
    assert launcher.config is not None and launcher.hydra_context is not None and launcher.sweep_id
    log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
    config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(config):
        config.hydra.job.num = num
        # Replaced by the Vertex job id (CLOUD_ML_JOB_ID) inside the container.
        config.hydra.job.id = f"{launcher.sweep_id}-{num}"
    with read_write(config.hydra.sweep):
        # The container has neither our cwd nor our paths: give it the sweep dir as it sees it.
        config.hydra.sweep.dir = backend.container_path(str(config.hydra.sweep.dir))
    staging = backend.staging
    labels = {"hydra_sweep": launcher.sweep_id, "hydra_job": str(num), "hydra_uid": f"{launcher.sweep_id}-{num}"}
    custom_job = _jobspec.build_custom_job(
        conf.job,
        display_name=f"{config.hydra.job.name}-{num}",
        container=_jobspec.Container(args=[staging.payload(num)], env=_jobspec.job_env(conf.job)),
        labels=labels,
        base_output_dir=staging.base_output(num, conf.job.base_output_dir),
    )
    return PreparedJob(num, overrides, config, staging.payload(num), staging.result(num), custom_job)


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
        return _payload.failed_return(job.config, job.overrides, _payload.RemoteJobError(message))
    if ret is not None and (ret.status != JobStatus.COMPLETED or outcome.state == SUCCEEDED):
        return ret
    message = f"{name} ended {state} " + ("although its chief completed" if ret else "without a result")
    if outcome.error:
        message += f": {outcome.error}"
    if outcome.where:
        message += f"\nsee {outcome.where}"
    return _payload.failed_return(job.config, job.overrides, _payload.RemoteJobError(message))
