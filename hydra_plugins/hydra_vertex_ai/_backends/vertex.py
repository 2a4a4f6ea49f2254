"""The vertex backend: a sweep's CustomJobs (and its tuning job) through Vertex AI's JobService.

The REST-shaped dicts built by `_jobspec` and `_tuning_spec` are the single source: they are parsed into the
real `aiplatform_v1` protos by `vertex_client`. Waiting costs one ListCustomJobs per poll for the whole sweep
(other calls are rate-limited too); creates are concurrent, rate-limited and exactly once; Ctrl-C cancels
every unfinished job. Tuning jobs live in `vertex_tuning`, the copy of outputs back in `vertex_outputs`.
"""
import logging
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .. import _storage
from .._errors import ConfigError, VertexAPIError
from .._progress import Progress, count_states
from .._staging import Staging
from .._vertex_facts import CANCELLING, PAUSED, QUEUED, SUCCEEDED, TERMINAL_STATES, console_link, short_state, where
from ..config import VertexBackendConf
from .base import Backend, JobOutcome, Outputs, TuningOutcome
from .vertex_client import (
    RPC_TIMEOUT_S,
    VertexClient,
    api_error,
    default_project,
    error_message,
    make_client,
    parse_endpoint,
    proto_of,
)
from .vertex_outputs import sync_outputs
from .vertex_tuning import TuningJobs

log = logging.getLogger(__name__)

# The fields a poll needs; Vertex returns whole jobs (specs and all) without a read mask.
LIST_READ_MASK = ("name", "display_name", "state", "error", "labels")
LIST_PAGE_SIZE = 100
# After Ctrl-C: how long to wait for the cancellations to register (CANCELLING or terminal).
CANCEL_WAIT_S = 30.0
# Creates in flight at once: with a raised quota, N creates take about N * latency / CREATE_THREADS.
CREATE_THREADS = 32

__all__ = ["VertexAPIError", "VertexBackend", "make_client"]


@dataclass
class _Tracked:
    """One CustomJob of this run: what we submitted and what Vertex last said about it."""

    spec: Dict[str, Any]
    uid: str
    name: Optional[str] = None
    state: str = QUEUED
    error: Optional[str] = None
    stalled_warned: bool = False

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


class VertexBackend(Backend):
    """Submits, watches and cancels the jobs of one sweep on Vertex AI (or the emulator)."""

    def __init__(
        self,
        client: Any,
        *,
        project: str,
        location: str,
        staging_dir: str,
        sweep_id: str,
        poll_interval_s: float = 15.0,
        create_rate_per_minute: float = 60.0,
        retry_initial_s: float = 1.0,
        retry_timeout_s: float = 600.0,
        sync_outputs: bool = True,
    ) -> None:
        self.api = VertexClient(
            client, project=project, location=location, retry_initial_s=retry_initial_s,
            retry_timeout_s=retry_timeout_s, create_rate_per_minute=create_rate_per_minute,
        )
        self.client = client
        self.sweep_id = sweep_id
        self.staging = Staging.of(staging_dir, sweep_id)
        self.poll_interval_s = poll_interval_s
        self.sync_outputs = sync_outputs
        self.tuning = TuningJobs(self.api, poll_interval_s)
        # API calls made by the last poll (pages of one List): what the benchmark reports
        self.calls_last_poll = 0

    @classmethod
    def from_config(cls, conf: VertexBackendConf, key: str, sweep_id: str, connect: bool = True) -> "VertexBackend":
        """Check every setting the vertex backend needs, naming the key, then connect (nothing is submitted).

        Without `connect` (a dry run) no client is built: no credentials, no network."""
        project = conf.project or default_project()
        if not project:
            raise ConfigError(
                f"{key}.project", "no GCP project: set it, or GOOGLE_CLOUD_PROJECT, or `gcloud config set project`"
            )
        if not conf.location:
            raise ConfigError(f"{key}.location", "a Vertex AI region is required, e.g. us-central1")
        if not _storage.is_gcs(conf.staging_dir) or not _storage.split_gcs(conf.staging_dir)[0]:
            raise ConfigError(
                f"{key}.staging_dir", f"the vertex backend stages in Cloud Storage: use gs://BUCKET/PATH, not '{conf.staging_dir}'"
            )
        if not conf.job.image_uri:
            raise ConfigError(
                f"{key}.job.image_uri", "required on the vertex backend: the container image with your code and this package"
            )
        if conf.poll_interval_s <= 0:
            raise ConfigError(f"{key}.poll_interval_s", "must be positive")
        if conf.create_rate_per_minute <= 0:
            raise ConfigError(f"{key}.create_rate_per_minute", "must be positive")
        if conf.api_endpoint:
            try:
                parse_endpoint(conf.api_endpoint)
            except ValueError as e:
                raise ConfigError(f"{key}.api_endpoint", str(e)) from None
        return cls(
            make_client(conf.location, conf.api_endpoint) if connect else None,
            project=project,
            location=conf.location,
            staging_dir=conf.staging_dir.rstrip("/"),
            sweep_id=sweep_id,
            poll_interval_s=conf.poll_interval_s,
            create_rate_per_minute=conf.create_rate_per_minute,
            retry_initial_s=conf.retry_initial_s,
            retry_timeout_s=conf.retry_timeout_s,
            sync_outputs=conf.sync_outputs,
        )

    @property
    def parent(self) -> str:
        return self.api.parent

    # --- paths -----------------------------------------------------------------------------------------

    def output_uri(self, local_path: str) -> Optional[str]:
        return self.staging.bucket_mirror(local_path)

    def container_path(self, local_path: str) -> str:
        """The bucket mirror of `local_path`, seen through the FUSE mount.

        An interpolation of the FUSE root that the container resolves (see `_storage`), so the same config
        works on Vertex (/gcs) and in the emulator (a local stand-in)."""
        return _storage.fuse_interpolation(self.staging.bucket_mirror(local_path))

    # --- CustomJobs ------------------------------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[Dict[str, Any]], outputs: Optional[Outputs] = None) -> List[JobOutcome]:
        tracked = [_Tracked(dict(job), str(job["labels"]["hydra_uid"])) for job in jobs]
        stop = threading.Event()
        progress = Progress(f"Vertex AI sweep {self.sweep_id}")
        pool = ThreadPoolExecutor(max_workers=min(CREATE_THREADS, len(jobs)) or 1, thread_name_prefix="vertex-create")
        try:
            futures = [pool.submit(self._create_custom_job, job, stop) for job in tracked]
            self._wait(tracked, futures, progress)
        except BaseException:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)  # in-flight creates end at their next retry
            progress.close()
            self._cancel_unfinished(tracked)
            raise
        pool.shutdown()
        progress.close()
        if self.sync_outputs and outputs:
            sync_outputs(outputs)
        return [self._outcome(job) for job in tracked]

    def _create_custom_job(self, job: _Tracked, stop: threading.Event) -> None:
        from google.cloud.aiplatform_v1 import CustomJob

        self.api.limiter.acquire(stop)
        proto = proto_of(CustomJob, job.spec)
        created = self.api.create_once(
            f"creating CustomJob '{job.spec['displayName']}'",
            lambda: self.client.create_custom_job(parent=self.api.parent, custom_job=proto, timeout=RPC_TIMEOUT_S),
            lambda: self._find_custom_job(job.uid),
            stop,
        )
        job.name, job.state = created.name, created.state.name
        log.info("Created %s: %s", job.spec["displayName"], console_link(created.name))

    def _find_custom_job(self, uid: str) -> Optional[Any]:
        found = self.client.list_custom_jobs(
            request={"parent": self.api.parent, "filter": f'labels.hydra_uid="{uid}"',
                     "read_mask": {"paths": list(LIST_READ_MASK)}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _list_sweep(self) -> Iterator[Any]:
        """Every job of this sweep: one ListCustomJobs call (and its pages), however many jobs there are."""
        pager = self.client.list_custom_jobs(
            request={
                "parent": self.api.parent,
                "filter": f'labels.hydra_sweep="{self.sweep_id}"',
                "read_mask": {"paths": list(LIST_READ_MASK)},
                "page_size": LIST_PAGE_SIZE,
            },
            retry=self.api.retry_policy(),
            timeout=RPC_TIMEOUT_S,
        )
        self.calls_last_poll = 0
        for page in pager.pages:
            self.calls_last_poll += 1
            yield from page.custom_jobs

    def poll(self, tracked: Sequence[_Tracked]) -> None:
        """Refresh every tracked job's state from one List of the sweep."""
        from google.api_core import exceptions as ex

        by_uid = {job.uid: job for job in tracked}
        try:
            listed = list(self._list_sweep())
        except (ex.GoogleAPICallError, ex.RetryError) as e:
            raise api_error(f"listing the jobs of sweep {self.sweep_id}", e) from e
        for item in listed:
            job = by_uid.get(item.labels.get("hydra_uid", ""))
            if job is None:
                continue  # an earlier batch of the same sweep
            job.name, job.state, job.error = item.name, item.state.name, error_message(item)
            if job.state == PAUSED and not job.stalled_warned:
                log.warning("%s is PAUSED: stalled until resumed in the console (%s)", job.name, console_link(job.name))
                job.stalled_warned = True

    def _wait(self, tracked: List[_Tracked], futures: List["Future[None]"], progress: Progress) -> None:
        pending = set(futures)
        while True:
            done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # a permanent create error ends the sweep (the caller cancels the rest)
            if any(job.name for job in tracked):
                self.poll(tracked)
            progress.update(count_states([job.state if job.name else "NOT_CREATED" for job in tracked]))
            if not pending and all(job.done for job in tracked):
                return
            if pending:
                wait(pending, timeout=self.poll_interval_s)  # no return_when: sleeps a whole poll interval
            else:
                time.sleep(self.poll_interval_s)

    def _cancel_unfinished(self, tracked: List[_Tracked]) -> None:
        """Cancel every unfinished job of this run (those an ambiguous create made too), then say which."""
        try:
            self.poll(tracked)  # picks up jobs whose create reply was lost
        except VertexAPIError as e:
            log.warning("could not list the sweep's jobs before cancelling: %s", e)
        targets = [job for job in tracked if job.name and not job.done]
        for job in targets:
            self._cancel_one(job.name or "")
        deadline = time.monotonic() + CANCEL_WAIT_S
        while targets and time.monotonic() < deadline:
            try:
                self.poll(tracked)
            except VertexAPIError:
                pass
            if all(job.done or job.state == CANCELLING for job in targets):
                break
            time.sleep(min(self.poll_interval_s, 1.0))
        if targets:
            lines = "\n".join(f"  {job.spec['displayName']}: {job.name} ({short_state(job.state)})" for job in targets)
            print(f"Interrupted: cancelled {len(targets)} unfinished Vertex AI job(s):\n{lines}", file=sys.stderr, flush=True)
        else:
            print("Interrupted: no unfinished Vertex AI job to cancel", file=sys.stderr, flush=True)

    def _cancel_one(self, name: str) -> None:
        from google.api_core import exceptions as ex

        try:
            self.api.call(f"cancelling {name}", lambda: self.client.cancel_custom_job(name=name, timeout=RPC_TIMEOUT_S))
        except VertexAPIError as e:
            if not isinstance(e.__cause__, (ex.FailedPrecondition, ex.NotFound)):  # not already finished
                log.error("%s", e)

    def _outcome(self, job: _Tracked) -> JobOutcome:
        assert job.name is not None
        error = job.error if job.state != SUCCEEDED else None
        return JobOutcome(job.state, error, where(job.name))

    # --- HyperparameterTuningJobs ----------------------------------------------------------------------

    def run_tuning_job(self, job: Dict[str, Any], outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Create the HyperparameterTuningJob `job` (REST dict) exactly once, wait with progress, collect it."""
        return self.attach_tuning_job(self.tuning.create(job), outputs)

    def attach_tuning_job(self, name: str, outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Wait for the existing HyperparameterTuningJob `name` (projects/.../hyperparameterTuningJobs/ID)."""
        outcome = self.tuning.wait(name)
        if self.sync_outputs and outputs:
            sync_outputs(outputs)
        return outcome
