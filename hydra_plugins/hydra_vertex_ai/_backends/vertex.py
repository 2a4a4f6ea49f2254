"""The vertex backend: a sweep's CustomJobs (and its tuning job) through Vertex AI's JobService.

The REST-shaped dicts built by `_jobspec` and `_tuning_spec` are the single source: they are parsed into the
real `aiplatform_v1` protos by `vertex_client`. Waiting costs one ListCustomJobs per poll for the whole sweep
(other calls are rate-limited too); creates are concurrent, rate-limited, exactly once and at most
`max_parallel` unfinished at once; a used-up GPU quota waits for the sweep's own jobs. Ctrl-C (and SIGTERM,
SIGHUP: `_signals`) cancels every unfinished job concurrently, shielded from further interrupts; an outage
longer than retry_timeout_s cancels nothing. Tuning jobs live in `vertex_tuning`, the copy of outputs back in
`vertex_outputs`.
"""
import logging
import math
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from .. import _storage
from .._errors import ConfigError, VertexAPIError
from .._progress import JobRow, Progress
from .._signals import deferred, shielded
from .._staging import Staging
from .._vertex_facts import (
    CANCELLED,
    PAUSED,
    QUEUED,
    SUCCEEDED,
    TERMINAL_STATES,
    cancel_command,
    cancel_sweep_command,
    console_link,
    location_problem,
    quota_console_url,
    regional_endpoint,
    short_state,
    where,
)
from ..config import VertexBackendConf
from .base import NEVER_CREATED, Backend, JobFeed, JobOutcome, Outputs, TuningOutcome
from .vertex_client import (
    CANCEL_WAIT_S,
    RPC_TIMEOUT_S,
    QuotaExceeded,
    Unreachable,
    VertexClient,
    check_connects,
    default_project,
    error_message,
    make_client,
    parse_endpoint,
    proto_of,
)
from .vertex_outputs import OutputFilter, sync_outputs
from .vertex_tuning import TuningJobs

log = logging.getLogger(__name__)

# The fields a poll needs; Vertex returns whole jobs (specs and all) without a read mask.
LIST_READ_MASK = ("name", "display_name", "state", "error", "labels", "create_time", "start_time", "end_time")
LIST_PAGE_SIZE = 100
# Creates in flight at once: with a raised quota, N creates take about N * latency / CREATE_THREADS.
CREATE_THREADS = 32
# How often the create loop looks whether the next job became ready while creates are in flight
FEED_TICK_S = 0.05
# How often the progress is refreshed while jobs are still being prepared (the loop wakes for each job)
STREAMING_PROGRESS_S = 0.5
# Cancels sent at once: a sweep's cancellation takes about one round trip.
CANCEL_THREADS = 32

__all__ = ["VertexAPIError", "VertexBackend", "make_client"]


@dataclass
class _CancelStatus:
    """How a cancellation stands: what a further Ctrl-C prints, and the final report."""

    # the run's jobs: what is left is counted from them, live, whenever a further Ctrl-C asks
    tracked: Sequence["_Tracked"] = ()
    confirmed: Dict[str, "_Tracked"] = field(default_factory=dict)
    failed: Dict[str, Tuple["_Tracked", str]] = field(default_factory=dict)
    # cancel calls on the wire now
    sending: int = 0
    # creates still on the wire: a job they commit is cancelled too
    creating: int = 0

    def text(self) -> str:
        left = sum(1 for job in self.tracked if not job.done and job.name not in self.confirmed)
        return (f"{len(self.confirmed)} cancel(s) confirmed, {self.sending} being sent, {self.creating} create(s) "
                f"still on the wire, {left} job(s) not confirmed ended")


@dataclass
class _Tracked:
    """One CustomJob of this run: what we submitted and what Vertex last said about it."""

    spec: Dict[str, Any]
    uid: str
    name: Optional[str] = None
    state: str = QUEUED
    error: Optional[str] = None
    stalled_warned: bool = False
    # (create, start, end) as Vertex last said, in seconds since the epoch: the report's durations and timeline
    times: Tuple[Optional[float], Optional[float], Optional[float]] = (None, None, None)
    # a create call went out and no answer said it was refused: without a name, the job may exist all the same
    create_sent: bool = False
    # its place in the launch: created only once the feed has this many + 1 jobs ready
    order: int = 0

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
        output_filter: Optional[OutputFilter] = None,
        max_parallel: Optional[int] = None,
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
        self.output_filter = output_filter or OutputFilter()
        # jobs of this sweep unfinished at once (created or being created); None: all of them
        self.max_parallel = max_parallel
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
        region = location_problem(conf.location)
        if region:
            raise ConfigError(f"{key}.location", region)
        if not _storage.is_gcs(conf.staging_dir) or not _storage.split_gcs(conf.staging_dir)[0]:
            raise ConfigError(
                f"{key}.staging_dir", f"the vertex backend stages in Cloud Storage: use gs://BUCKET/PATH, not '{conf.staging_dir}'"
            )
        for name in ("poll_interval_s", "create_rate_per_minute", "retry_initial_s", "retry_timeout_s"):
            if getattr(conf, name) <= 0:
                raise ConfigError(f"{key}.{name}", f"must be positive, got {getattr(conf, name)}")
        if conf.sync_outputs_max_mb < 0:
            raise ConfigError(f"{key}.sync_outputs_max_mb", f"must be 0 or more, got {conf.sync_outputs_max_mb}")
        if conf.api_endpoint:
            if "://" in conf.api_endpoint:
                raise ConfigError(f"{key}.api_endpoint",
                                  f"'{conf.api_endpoint}': give HOST:PORT, without a scheme (gRPC, not a URL)")
            try:
                parse_endpoint(conf.api_endpoint)
            except ValueError as e:
                raise ConfigError(f"{key}.api_endpoint", str(e)) from None
        client = None
        if connect:
            client = make_client(conf.location, conf.api_endpoint)
            check_connects(client, conf.api_endpoint or regional_endpoint(conf.location), key)
        return cls(
            client,
            project=project,
            location=conf.location,
            staging_dir=conf.staging_dir.rstrip("/"),
            sweep_id=sweep_id,
            poll_interval_s=conf.poll_interval_s,
            create_rate_per_minute=conf.create_rate_per_minute,
            retry_initial_s=conf.retry_initial_s,
            retry_timeout_s=conf.retry_timeout_s,
            sync_outputs=conf.sync_outputs,
            output_filter=OutputFilter.of(conf),
            max_parallel=conf.max_parallel,
        )

    @property
    def parent(self) -> str:
        return self.api.parent

    @property
    def destination(self) -> str:
        return f"Vertex AI, {self.api.parent}"

    # --- paths -----------------------------------------------------------------------------------------

    def output_uri(self, local_path: str) -> Optional[str]:
        return self.staging.bucket_mirror(local_path)

    def container_path(self, local_path: str) -> str:
        """The bucket mirror of `local_path`, seen through the FUSE mount.

        An interpolation of the FUSE root that the container resolves (see `_storage`), so the same config
        works on Vertex (/gcs) and in the emulator (a local stand-in)."""
        return _storage.fuse_interpolation(self.staging.bucket_mirror(local_path))

    # --- CustomJobs ------------------------------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[Dict[str, Any]], outputs: Optional[Outputs] = None,
                 feed: Optional[JobFeed] = None) -> List[JobOutcome]:
        # the launcher's own spec dicts: it may still name a job (displayName) until the feed says it is ready
        tracked = [_Tracked(job, str(job["labels"]["hydra_uid"]), order=i) for i, job in enumerate(jobs)]
        if self.attach:
            self._adopt_existing(tracked)
        for job in tracked:
            if job.name is None and job.uid in self.cancelled:  # cancelled while queued: it never exists
                job.state, job.error = CANCELLED, NEVER_CREATED
        self._run(tracked, feed or JobFeed.all_ready(len(tracked)))
        if self.sync_outputs and outputs and self.wait:
            sync_outputs(outputs, self.api.retry_timeout_s, self.output_filter)
        return [self._outcome(job) for job in tracked]

    def _run(self, tracked: List[_Tracked], feed: JobFeed) -> None:
        """Create (at most max_parallel unfinished at once) and wait until every job of `tracked` has ended.

        An interrupt or a permanent error cancels every unfinished job, shielded from further interrupts; an
        outage longer than retry_timeout_s cancels nothing (the jobs may be fine): it says how to re-attach."""
        creator = _Creator(self, tracked, feed)
        progress = Progress(f"Vertex AI sweep {self.sweep_id}", self.job_overrides)
        try:
            self._wait(tracked, creator, progress)
        except Unreachable as e:
            creator.stop()
            progress.close()
            raise VertexAPIError(self._outage_report(tracked, e)) from e
        except BaseException as e:
            status = _CancelStatus(tracked)
            with shielded(status.text):
                creator.stop()
                progress.close()
                self._cancel_unfinished(tracked, creator, e, status)
                if isinstance(e, KeyboardInterrupt):  # the user cancelled the sweep: queued jobs too, for good
                    self._never_created(tracked)
            raise
        creator.stop()  # creates still in backoff for jobs that have ended (found by their label) give up
        progress.close()

    def _never_created(self, tracked: Sequence[_Tracked]) -> None:
        """Jobs an interrupt left uncreated end CANCELLED, and the manifest says so: no re-attach creates them."""
        never = [job for job in tracked if job.name is None and not job.done]
        for job in never:
            job.state, job.error = CANCELLED, NEVER_CREATED
        self.record_never_created([job.uid for job in never])

    def _drop_cancelled(self, tracked: Sequence[_Tracked], creator: "_Creator") -> None:
        """`hydra-vertex-ai cancel` while this launcher runs: it recorded the queued jobs cancelled in the
        manifest; they are not created, and one whose create crossed the command is cancelled here."""
        if self.cancelled_now is None:
            return
        created = sum(job.name is not None for job in tracked)
        if not creator.todo and creator.settled() and created == creator.created_at_check:
            return  # nothing created or queued since the last look: nothing the command could have missed
        creator.created_at_check = created
        try:
            cancelled = self.cancelled_now()
        except Exception as e:  # the record is unreadable for now: look again at the next poll
            log.warning("could not read the sweep's manifest for cancelled jobs: %s", e)
            return
        for job in [job for job in creator.todo if job.uid in cancelled]:
            creator.todo.remove(job)
            job.state, job.error = CANCELLED, NEVER_CREATED
        for job in tracked:
            if job.uid in cancelled and job.name and not job.done:
                self._cancel_one(job.name, self.api.retry_timeout_s)

    def _report_names(self, tracked: List[_Tracked]) -> None:
        """Every job exists: hand their resource names to `on_jobs_created` (the manifest), once per run."""
        if self.on_jobs_created is None:
            return
        try:
            self.on_jobs_created({job.uid: job.name for job in tracked if job.name})
        except Exception as e:  # a record for re-attaching, never a reason to stop the sweep
            log.warning("could not record the jobs' resource names: %s", e)

    def _create_custom_job(self, job: _Tracked, stop: threading.Event) -> None:
        from google.cloud.aiplatform_v1 import CustomJob

        self.api.limiter.acquire(stop)
        proto = proto_of(CustomJob, job.spec)
        def create() -> Any:
            job.create_sent = True
            return self.client.create_custom_job(parent=self.api.parent, custom_job=proto, timeout=RPC_TIMEOUT_S)

        created = self.api.create_once(
            f"creating CustomJob '{job.spec['displayName']}'", create, lambda: self._find_custom_job(job.uid), stop
        )
        if job.name is None:  # a poll that listed the sweep may have found it first, with a newer state
            job.name, job.state = created.name, created.state.name
        log.info("Created %s: %s", job.spec["displayName"], console_link(created.name))

    def _adopt_existing(self, tracked: List[_Tracked]) -> None:
        """Re-attaching: the jobs of this sweep that exist already (found by hydra_uid) are watched, not created."""
        self.poll(tracked)
        adopted = [job for job in tracked if job.name]
        if adopted:
            log.info("Re-attached to %d existing job(s) of sweep %s; creating %d", len(adopted), self.sweep_id,
                     len(tracked) - len(adopted))

    def _find_custom_job(self, uid: str) -> Optional[Any]:
        found = self.client.list_custom_jobs(
            request={"parent": self.api.parent, "filter": f'labels.hydra_uid="{uid}"',
                     "read_mask": {"paths": list(LIST_READ_MASK)}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _list_sweep(self) -> List[Any]:
        """Every job of this sweep: one ListCustomJobs call (and its pages), however many jobs there are."""
        pager = self.client.list_custom_jobs(
            request={
                "parent": self.api.parent,
                "filter": f'labels.hydra_sweep="{self.sweep_id}"',
                "read_mask": {"paths": list(LIST_READ_MASK)},
                "page_size": LIST_PAGE_SIZE,
            },
            timeout=RPC_TIMEOUT_S,
        )
        self.calls_last_poll = 0
        listed: List[Any] = []
        for page in pager.pages:
            self.calls_last_poll += 1
            listed.extend(page.custom_jobs)
        return listed

    def poll(self, tracked: Sequence[_Tracked], budget_s: Optional[float] = None) -> None:
        """Refresh every tracked job's state from one List of the sweep (retried for `budget_s`)."""
        by_uid = {job.uid: job for job in tracked}
        listed = self.api.call(f"listing the jobs of sweep {self.sweep_id}", self._list_sweep, budget_s=budget_s)
        for item in listed:
            job = by_uid.get(item.labels.get("hydra_uid", ""))
            if job is None:
                continue  # an earlier batch of the same sweep
            job.name, job.state, job.error = item.name, item.state.name, error_message(item)
            job.times = (_epoch(item.create_time), _epoch(item.start_time), _epoch(item.end_time))
            if job.state == PAUSED and not job.stalled_warned:
                log.warning("%s is PAUSED: stalled until resumed in the console (%s)", job.name, console_link(job.name))
                job.stalled_warned = True

    def _wait(self, tracked: List[_Tracked], creator: "_Creator", progress: Progress) -> None:
        named = False
        looked = shown = -math.inf
        while True:
            creator.pump()  # a permanent create error, or one preparing a job, ends the sweep (the caller cancels)
            # While jobs are still being prepared the loop wakes for each one that becomes ready; what costs a
            # call (a List, a read of the manifest) stays once per poll interval, the progress twice a second.
            streaming, now = not creator.feed.complete, time.monotonic()
            if not streaming or now - looked >= self.poll_interval_s:
                looked = now
                # once creates have had a poll interval, a poll also finds jobs whose create reply was lost
                if creator.waited or any(job.name for job in tracked):
                    self.poll(tracked)
                self._drop_cancelled(tracked, creator)
            if not named and creator.all_submitted and creator.settled():
                named = True
                self._report_names(tracked)
            if not streaming or now - shown >= STREAMING_PROGRESS_S:
                shown = now
                progress.jobs([JobRow.of(job.spec, job.state if job.name or job.done else "NOT_CREATED",
                                         console_link(job.name) if job.name else "") for job in tracked])
            if creator.all_submitted and all(job.done for job in tracked):
                return  # finished is finished: a create in backoff for a job that has ended is not waited for
            if not self.wait and creator.all_submitted and creator.settled():
                return  # detached: every job exists
            creator.wait(self.poll_interval_s)

    def _cancel_unfinished(
        self, tracked: List[_Tracked], creator: "_Creator", reason: BaseException, status: "_CancelStatus"
    ) -> None:
        """Cancel every unfinished job of this run, concurrently, then say which cancels were confirmed.

        Creates in flight are waited for (they give up at once unless their call is on the wire): a job they
        made is then found by its label and cancelled too, so nothing created is left running unknown."""
        budget = min(self.api.retry_timeout_s, CANCEL_WAIT_S)
        deadline = time.monotonic() + CANCEL_WAIT_S
        with ThreadPoolExecutor(max_workers=CANCEL_THREADS, thread_name_prefix="vertex-cancel") as pool:
            while True:
                creating = not creator.settled()
                try:
                    self.poll(tracked, budget_s=budget)  # picks up jobs whose create reply was lost
                except VertexAPIError as e:
                    log.warning("could not list the sweep's jobs while cancelling: %s", e)
                status.creating = sum(not future.done() for future in creator.creating)
                targets = [job for job in tracked if job.name and not job.done and job.name not in status.confirmed]
                status.sending = len(targets)
                for job, error in zip(targets, pool.map(lambda job: self._cancel_one(job.name or "", budget), targets)):
                    status.sending -= 1
                    if error is None:
                        status.confirmed[job.name or ""] = job
                        status.failed.pop(job.name or "", None)
                    else:
                        status.failed[job.name or ""] = (job, error)
                if (not creating and not status.failed) or time.monotonic() > deadline:
                    break
                time.sleep(min(self.poll_interval_s, 1.0))
        try:
            self.poll(tracked, budget_s=min(budget, 5.0))  # the states the report shows
        except VertexAPIError:
            pass
        print(self._cancel_report(reason, status), file=sys.stderr, flush=True)

    def _cancel_one(self, name: str, budget_s: float) -> Optional[str]:
        """Cancel one job; None when Vertex took the cancel (or the job had already ended), else why not."""
        return self.api.cancel(name, lambda: self.client.cancel_custom_job(name=name, timeout=RPC_TIMEOUT_S), budget_s)

    def _cancel_report(self, reason: BaseException, status: "_CancelStatus") -> str:
        """What was cancelled and what may still run; 'Interrupted' only when an interrupt was the reason."""
        if isinstance(reason, KeyboardInterrupt):
            head = f"Interrupted ({reason})" if str(reason) else "Interrupted"
        else:
            head = f"Stopped by an error ({type(reason).__name__})"
        line = lambda job: f"  {job.spec['displayName']}: {job.name} ({short_state(job.state)})"  # noqa: E731
        if not status.confirmed and not status.failed:
            return f"{head}: no unfinished Vertex AI job to cancel"
        text = f"{head}: cancelled {len(status.confirmed)} unfinished Vertex AI job(s):"
        text += "".join(f"\n{line(job)}" for job in status.confirmed.values())
        if status.failed:
            text += (f"\nCould NOT confirm the cancellation of {len(status.failed)} job(s); they may still be "
                     "running (and billed). Cancel them with:")
            text += "".join(f"\n  {cancel_command(name)}   # {error}" for name, (_, error) in status.failed.items())
            text += f"\nor re-attach to the sweep when the service answers: hydra.launcher.attach={self.sweep_id}"
        return text

    def _outage_report(self, tracked: List[_Tracked], error: Unreachable) -> str:
        """An outage longer than retry_timeout_s: nothing was cancelled; every job that may exist (a create on
        the wire may have been committed), how to cancel them all by the sweep's label, and how to come back."""
        created = [job for job in tracked if job.name and not job.done]
        unanswered = [job for job in tracked if not job.name and job.create_sent]
        text = (f"{error}\nVertex AI did not answer for longer than retry_timeout_s: nothing was cancelled and no "
                f"more jobs were created. {len(created) + len(unanswered)} job(s) of sweep {self.sweep_id} may exist "
                f"and run: {len(created)} created, {len(unanswered)} whose create got no answer (it may have been "
                "committed):")
        text += "".join(f"\n  {job.spec['displayName']}: {job.name} (last seen {short_state(job.state)})"
                        for job in created)
        text += "".join(f"\n  {job.spec['displayName']}: create sent, no answer" for job in unanswered)
        project, location = self.parent.split("/")[1], self.parent.split("/")[3]
        text += (f"\nTo cancel them, select the sweep's jobs by its label (this finds the unanswered ones too):"
                 f"\n  hydra-vertex-ai cancel {self.sweep_id} --staging {self.staging.staging_dir}"
                 f"\n  or: {cancel_sweep_command(project, location, self.sweep_id)}"
                 f"\nRe-attach when the service answers (finished jobs' results are kept): "
                 f"hydra.launcher.attach={self.sweep_id}. A larger retry_timeout_s waits longer.")
        return text

    def _outcome(self, job: _Tracked) -> JobOutcome:
        error = job.error if job.state != SUCCEEDED else None
        return JobOutcome(job.state, error, where(job.name) if job.name else None, *job.times)

    # --- HyperparameterTuningJobs ----------------------------------------------------------------------

    def run_tuning_job(self, job: Dict[str, Any], outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Create the HyperparameterTuningJob `job` (REST dict) exactly once, wait with progress, collect it."""
        hook = self.on_tuning_created or (lambda name: None)
        return self._collected(lambda: self.tuning.run(job, hook), outputs)

    def attach_tuning_job(self, name: str, outputs: Optional[Outputs] = None) -> TuningOutcome:
        """Wait for the existing HyperparameterTuningJob `name` (projects/.../hyperparameterTuningJobs/ID)."""
        return self._collected(lambda: self.tuning.wait(name), outputs)

    def tuning_snapshot(self, name: str) -> Optional[TuningOutcome]:
        """The tuning job as it stands (its trials so far), or None if it cannot be read."""
        return self.tuning.snapshot(name)

    def _collected(self, run: Callable[[], TuningOutcome], outputs: Optional[Outputs]) -> TuningOutcome:
        """Run a tuning job to its end and copy its outputs back; after Ctrl-C keep the trials that finished."""
        try:
            outcome = run()
        except KeyboardInterrupt:
            self.partial_tuning = self.tuning.interrupted
            raise
        if self.sync_outputs and outputs:
            sync_outputs(outputs, self.api.retry_timeout_s, self.output_filter)
        return outcome


class _Creator:
    """Creates the jobs of one run: at most `max_parallel` unfinished at once, through the rate limiter.

    A capacity quota refusal (GPUs in use) is not an error while one of this sweep's own jobs runs: the job
    goes back to the queue until one of them ends (said once on the console). With none running, waiting
    could last forever: it fails with the server's message and where to raise the quota. Jobs that already
    have a name (created earlier) are not created again."""

    def __init__(self, backend: VertexBackend, tracked: List[_Tracked], feed: JobFeed) -> None:
        self.backend = backend
        self.tracked = tracked
        self.feed = feed
        self.todo: Deque[_Tracked] = deque(job for job in tracked if job.name is None and not job.done)
        # jobs that existed when the manifest was last read for cancelled ones (`_drop_cancelled`)
        self.created_at_check = -1
        self.limit = backend.max_parallel or len(tracked) or 1
        self.creating: Dict[Future[None], _Tracked] = {}
        self.stop_event = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=min(CREATE_THREADS, self.limit), thread_name_prefix="vertex-create")
        # whether a poll interval has passed with creates in flight
        self.waited = len(self.todo) < len(tracked)
        # jobs of the sweep ended when a quota refusal came: creating resumes once more have ended
        self.quota_block: Optional[int] = None
        self.quota_said = False

    @property
    def all_submitted(self) -> bool:
        return not self.todo

    def unfinished(self) -> int:
        """This sweep's jobs created (or being created) and not ended."""
        creating = {id(job) for job in self.creating.values()}
        named = sum(1 for job in self.tracked if job.name and not job.done and id(job) not in creating)
        return named + len(self.creating)

    def pump(self) -> None:
        """Collect ended creates (re-raising a permanent error), then create what the limits allow."""
        for future in [f for f in self.creating if f.done()]:
            job = self.creating.pop(future)
            try:
                future.result()
            except QuotaExceeded as e:
                job.create_sent = False  # refused: it does not exist
                self.todo.appendleft(job)
                self._quota_refused(e)
        if self.quota_block is not None:
            if sum(job.done for job in self.tracked) <= self.quota_block:
                return
            self.quota_block = None
        while self.can_create():
            with deferred():  # a create handed to the pool is in `creating`, so an interrupt waits for it
                job = self.todo.popleft()
                self.creating[self.pool.submit(self.backend._create_custom_job, job, self.stop_event)] = job

    def can_create(self) -> bool:
        """Whether the next job is ready (staged) and the limits allow creating it now."""
        return (bool(self.todo) and self.todo[0].order < self.feed.ready and self.quota_block is None
                and self.unfinished() < self.limit and not self.stop_event.is_set())

    def _quota_refused(self, error: QuotaExceeded) -> None:
        project = self.backend.api.parent.split("/")[1]
        if self.unfinished() == 0:
            raise VertexAPIError(
                f"{error}\nNone of this sweep's jobs is running, so none will free it: raise the quota "
                f"{', '.join(error.metrics)} at {quota_console_url(project)} (or use another region or machine)"
            ) from error
        if self.quota_block is None:
            self.quota_block = sum(job.done for job in self.tracked)
        if not self.quota_said:
            self.quota_said = True
            log.warning("Vertex AI quota %s is used up: creating the next job when one of this sweep's %d running "
                        "job(s) ends (raise it at %s)", ", ".join(error.metrics), self.unfinished(),
                        quota_console_url(project))

    def wait(self, timeout: float) -> None:
        """Sleep a poll interval, or less when every create in flight ends sooner, or (while jobs are being
        prepared) when the next job becomes ready and may be created."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            streaming = not self.feed.complete
            if left <= 0 or (streaming and self.can_create()):
                return
            if self.creating:
                # no return_when: polls stay one per interval
                _, pending = wait(list(self.creating), timeout=min(left, FEED_TICK_S) if streaming else left)
                self.waited = True
                if not pending:
                    return
            elif streaming and self.todo:
                self.feed.wait_for(self.todo[0].order + 1, left)
                return
            else:
                time.sleep(left)
                return

    def stop(self) -> None:
        """No more creates: queued ones are dropped, those in backoff give up at once."""
        self.stop_event.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def settled(self) -> bool:
        """Whether no create can still commit a job."""
        return all(future.done() for future in self.creating)


def _epoch(moment: Any) -> Optional[float]:
    """A proto-plus timestamp (a datetime, None when unset) in seconds since the epoch."""
    seconds = moment.timestamp() if moment is not None and hasattr(moment, "timestamp") else None
    return seconds if seconds else None
