"""A launch's jobs on their way to the backend: each one's CustomJob (known from its number alone), then its
config composed and its payload staged, in order, in a thread, while the backend already creates the jobs that
are ready (a `JobFeed`): the first job of a 500-job sweep exists seconds after `launch()` is called, not after
every config has been composed and every payload written.

Exactly once and `max_parallel` are the backend's, unchanged: it creates a job only once the feed says it is
staged, and the manifest lists every job before the first is created."""
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from hydra.core.utils import filter_overrides
from omegaconf import DictConfig, open_dict, read_write

from . import _jobspec, _packaging, _payload
from ._backends.base import Backend, JobFeed
from ._compose_cache import SweepComposer
from ._staging import _STAGING_THREADS, stage_payload
from .config import VertexAILauncherConf

if TYPE_CHECKING:
    from .vertex_ai_launcher import VertexAILauncher

log = logging.getLogger(__name__)


@dataclass
class PreparedJob:
    """One Hydra job on its way to the backend; `config` is set once it is composed."""

    num: int
    overrides: List[str]
    payload_uri: str
    result_uri: str
    custom_job: Dict[str, Any]
    config: Optional[DictConfig] = None

    @property
    def composed(self) -> DictConfig:
        """Its config: every job the backend ran has been composed."""
        assert self.config is not None, f"job #{self.num} was not composed"
        return self.config


def plan(launcher: "VertexAILauncher", conf: VertexAILauncherConf, backend: Backend, num: int,
         overrides: List[str], packages: Optional[_packaging.StagedPackages] = None) -> PreparedJob:
    """The job's CustomJob: everything in it follows from its number and the launcher's settings."""
    assert launcher.config is not None and launcher.sweep_id
    staging = backend.staging
    labels = {"hydra_sweep": launcher.sweep_id, "hydra_job": str(num), "hydra_uid": f"{launcher.sweep_id}-{num}"}
    custom_job = _jobspec.build_custom_job(
        conf.job,
        display_name=f"{launcher.config.hydra.job.name}-{num}",  # the composed job's name, if it differs (compose)
        container=_jobspec.Container(args=[staging.payload(num)], env=_jobspec.job_env(conf.job),
                                     packages=packages.packages if packages else None),
        labels=labels,
        base_output_dir=staging.base_output(num, conf.job.base_output_dir),
    )
    return PreparedJob(num, overrides, staging.payload(num), staging.result(num), custom_job)


def compose(launcher: "VertexAILauncher", backend: Backend, job: PreparedJob, sweep_dir: str) -> None:
    """Compose the job's config as Hydra would (a bad override fails here) and name the job after it."""
    assert launcher.config is not None and launcher.sweep_id
    log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
    config = composer(launcher).compose(job.overrides)
    with open_dict(config):
        config.hydra.job.num = job.num
        # Replaced by the Vertex job id (CLOUD_ML_JOB_ID) inside the container.
        config.hydra.job.id = f"{launcher.sweep_id}-{job.num}"
    with read_write(config.hydra.sweep):
        # The container has neither our cwd nor our paths: give it the sweep dir as it sees it (when
        # re-attaching, the first run's, which a new composition's timestamps would not give).
        config.hydra.sweep.dir = backend.container_path(sweep_dir)
    job.custom_job["displayName"] = f"{config.hydra.job.name}-{job.num}"  # `hydra.job.name=` may change it
    job.config = config


def composer(launcher: "VertexAILauncher") -> SweepComposer:
    """Hydra's composition of the sweep's jobs, memoized for jobs that differ only in plain values; one per
    launcher, so every batch a sweeper launches shares it."""
    found = getattr(launcher, "_composer", None)
    if found is None or found.master is not launcher.config:
        assert launcher.hydra_context is not None and launcher.config is not None
        found = SweepComposer(launcher.hydra_context.config_loader, launcher.config)
        launcher._composer = found  # type: ignore[attr-defined]
    return found


class Stream:
    """Composes the jobs not composed yet and stages their payloads, in order, in one thread (Hydra's
    composition is not thread-safe), writes in parallel; `feed` tells the backend how many, from the first,
    are ready. Used as a context manager: leaving it stops preparing (an interrupt, an error)."""

    def __init__(self, launcher: "VertexAILauncher", backend: Backend, jobs: Sequence[PreparedJob], sweep_dir: str,
                 context_uri: str, header: Optional[Mapping[str, Any]], staged: Sequence[str] = ()) -> None:
        self.launcher, self.backend, self.jobs, self.sweep_dir = launcher, backend, jobs, sweep_dir
        self.context_uri, self.header, self.staged = context_uri, header, frozenset(staged)
        self.feed = JobFeed(len(jobs))
        self._written = [False] * len(jobs)
        self._staged_upto = 0  # jobs 0.._staged_upto-1 are written
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vertex-prepare", daemon=True)

    def __enter__(self) -> "Stream":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pool = ThreadPoolExecutor(max_workers=_STAGING_THREADS, thread_name_prefix="vertex-stage")
        try:
            for i, job in enumerate(self.jobs):
                if self._stop.is_set():
                    break
                if job.config is None:
                    compose(self.launcher, self.backend, job, self.sweep_dir)
                if job.payload_uri in self.staged:  # re-attaching: the job may exist and has read it as it is
                    self._done(i, None)
                else:
                    assert self.header is not None  # staged unless every payload is there already
                    payload = _payload.JobPayload(self.context_uri, job.composed, job.result_uri)
                    future = pool.submit(stage_payload, self.header, job.payload_uri, payload)
                    future.add_done_callback(lambda f, i=i: self._done(i, f))  # type: ignore[misc]
        except BaseException as e:  # the backend raises it in its own thread and cancels what it created
            self.feed.fail(e)
        finally:
            pool.shutdown(wait=not self._stop.is_set(), cancel_futures=self._stop.is_set())

    def _done(self, i: int, written: "Optional[Future[None]]") -> None:
        """Job `i`'s payload is written (or need not be): the feed advances over every job staged in order."""
        if written is not None and written.cancelled():
            return  # stopped: never ready
        error = None if written is None else written.exception()
        if error is not None:
            self.feed.fail(error)
            return
        with self._lock:
            self._written[i] = True
            while self._staged_upto < len(self._written) and self._written[self._staged_upto]:
                self._staged_upto += 1
            ready = self._staged_upto
        self.feed.advance(ready)
