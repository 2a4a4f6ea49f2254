"""The vertex backend: CustomJobs and HyperparameterTuningJobs through Vertex AI's JobService.

The REST-shaped dicts built by `_jobspec` are the single source: they are parsed into the real
`aiplatform_v1` protos here. Vertex facts that shape this module (see DESIGN.md section 3):
- creates have no request id, so a create that failed ambiguously is looked up by its `hydra_uid` label
  before it is retried: every job is created exactly once;
- submissions are limited to about 60 per minute per region: creates go through a token bucket;
- other calls are limited too: waiting costs one ListCustomJobs per poll for the whole sweep.
"""
import configparser
import ipaddress
import logging
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from hydra.errors import HydraException

from .. import _storage
from .._jobspec import JobSpecError
from ..config import VertexBackendConf
from .base import SUCCEEDED, TERMINAL_STATES, Backend, JobOutcome, TuningOutcome

log = logging.getLogger(__name__)

PAUSED = "JOB_STATE_PAUSED"
CANCELLING = "JOB_STATE_CANCELLING"
# The fields a poll needs; Vertex returns whole jobs (specs and all) without a read mask.
LIST_READ_MASK = ("name", "display_name", "state", "error", "labels")
LIST_PAGE_SIZE = 100
# One RPC's deadline; a longer one would only delay the retry of a lost request.
RPC_TIMEOUT_S = 60.0
RETRY_MAX_DELAY_S = 60.0
# After Ctrl-C: how long to wait for the cancellations to register (CANCELLING or terminal).
CANCEL_WAIT_S = 30.0
# Creates in flight at once: with a raised quota, N creates take about N * latency / CREATE_THREADS.
CREATE_THREADS = 32
# sync_outputs copies these small files back; checkpoints and the like stay in the bucket.
SYNC_MAX_BYTES = 10 * 1024 * 1024
CONSOLE = "https://console.cloud.google.com"


class VertexAPIError(HydraException):
    """A Vertex API call failed for good; the message carries the server's."""


class _Stopped(Exception):
    """Creation was stopped (Ctrl-C or another job's permanent error) before this job was created."""


# --- endpoint and client ---------------------------------------------------------------------------------


def parse_endpoint(endpoint: str) -> Tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) -> (host, port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"'{endpoint}' is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_client(location: str, api_endpoint: Optional[str] = None) -> Any:
    """A JobServiceClient: Vertex's regional endpoint with ADC and TLS, or a plain-text loopback emulator."""
    from google.cloud.aiplatform_v1 import JobServiceClient

    if api_endpoint and is_loopback(parse_endpoint(api_endpoint)[0]):
        import grpc
        from google.cloud.aiplatform_v1.services.job_service.transports import JobServiceGrpcTransport

        # A channel given to the transport carries no credentials: anonymous, plain text, loopback only.
        channel = grpc.insecure_channel(api_endpoint)
        return JobServiceClient(transport=JobServiceGrpcTransport(channel=channel))
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return JobServiceClient(client_options={"api_endpoint": api_endpoint or f"{location}-aiplatform.googleapis.com"})
    except DefaultCredentialsError as e:
        raise HydraException(
            f"no Google Cloud credentials for Vertex AI ({e}); run `gcloud auth application-default login`"
        ) from None


def default_project() -> Optional[str]:
    """GOOGLE_CLOUD_PROJECT, else gcloud's configured project (read from its config file, no subprocess)."""
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        if os.environ.get(var):
            return os.environ[var]
    config_dir = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    try:
        active = (config_dir / "active_config").read_text().strip() or "default"
    except OSError:
        active = "default"
    parser = configparser.ConfigParser()
    parser.read(config_dir / "configurations" / f"config_{active}")
    return parser.get("core", "project", fallback=None) or None


# --- retries -------------------------------------------------------------------------------------------


def _transient_types() -> Tuple[type, ...]:
    from google.api_core import exceptions as ex

    return (ex.ServiceUnavailable, ex.ResourceExhausted, ex.InternalServerError, ex.DeadlineExceeded)


def _ambiguous_types() -> Tuple[type, ...]:
    """Errors after which a create may have committed (RESOURCE_EXHAUSTED is refused before anything)."""
    from google.api_core import exceptions as ex

    return (ex.ServiceUnavailable, ex.InternalServerError, ex.DeadlineExceeded)


def _api_error(what: str, error: BaseException) -> VertexAPIError:
    from google.api_core import exceptions as ex

    if isinstance(error, ex.RetryError) and error.cause is not None:
        return VertexAPIError(f"{what}: gave up retrying: {_describe(error.cause)}")
    return VertexAPIError(f"{what}: {_describe(error)}")


def _describe(error: BaseException) -> str:
    code = getattr(error, "grpc_status_code", None)
    message = getattr(error, "message", None) or str(error)
    return f"{code.name}: {message}" if code is not None else message


class RateLimiter:
    """Token bucket: `per_minute` tokens a minute, a burst of a tenth of that (at least 1)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 10.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, stop: threading.Event) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1.0:
                    self.tokens -= 1.0
                    return
                delay = (1.0 - self.tokens) / self.rate
            if stop.wait(delay):
                raise _Stopped()


# --- job records ---------------------------------------------------------------------------------------


@dataclass
class _Tracked:
    """One CustomJob of this run: what we submitted and what Vertex last said about it."""

    spec: Dict[str, Any]
    uid: str
    name: Optional[str] = None
    state: str = "JOB_STATE_QUEUED"
    error: Optional[str] = None
    stalled_warned: bool = False

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


def _proto_of(cls: Any, rest: Mapping[str, Any]) -> Any:
    """The proto-plus message `cls` parsed from its REST (camelCase JSON) dict."""
    from google.protobuf import json_format

    pb = cls.pb()()
    json_format.ParseDict(rest, pb)
    return cls.wrap(pb)


def _rest_of(message: Any) -> Dict[str, Any]:
    from google.protobuf import json_format

    return dict(json_format.MessageToDict(type(message).pb(message)))


def _trial_rest(trial: Any) -> Dict[str, Any]:
    """A Trial as a REST dict; proto3 JSON drops a metric value of 0.0, which readers of trials expect."""
    rest = _rest_of(trial)
    measurements = rest.get("measurements", []) + ([rest["finalMeasurement"]] if "finalMeasurement" in rest else [])
    for measurement in measurements:
        for metric in measurement.get("metrics", []):
            metric.setdefault("value", 0.0)
    return rest


def _error_message(job: Any) -> Optional[str]:
    error = job.error
    return (error.message or f"error code {error.code}") if (error.code or error.message) else None


class _Progress:
    """Counts by state: a live line on a terminal, a log line per change elsewhere."""

    def __init__(self, title: str) -> None:
        from rich.console import Console

        self.title = title
        self.console = Console(stderr=True)
        self.live: Any = None
        self.last = ""
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def update(self, line: str) -> None:
        text = f"{self.title}: {line}"
        if self.live is not None:
            self.live.update(text)
        elif line != self.last:
            log.info(text)
        self.last = line

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _counts(states: Sequence[str]) -> str:
    order = ("QUEUED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED",
             "EXPIRED", "PARTIALLY_SUCCEEDED", "NOT_CREATED")
    names = [s.replace("JOB_STATE_", "") for s in states]
    return ", ".join(f"{names.count(s)} {s.lower()}" for s in order if s in names)


# --- the backend ---------------------------------------------------------------------------------------


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
        self.client = client
        self.project = project
        self.location = location
        self.staging_dir = staging_dir
        self.sweep_id = sweep_id
        self.staging = _storage.join(staging_dir, sweep_id)
        self.poll_interval_s = poll_interval_s
        self.limiter = RateLimiter(create_rate_per_minute)
        self.retry_initial_s = retry_initial_s
        self.retry_timeout_s = retry_timeout_s
        self.sync_outputs = sync_outputs
        # local sweep dir -> the gs:// URI its jobs write to through FUSE
        self.outputs: Dict[str, str] = {}
        # API calls made by the last poll (pages of one List): what the benchmark reports
        self.calls_last_poll = 0

    @classmethod
    def from_config(cls, conf: VertexBackendConf, key: str, sweep_id: str) -> "VertexBackend":
        """Check every setting the vertex backend needs, naming the key, then connect (nothing is submitted)."""
        project = conf.project or default_project()
        if not project:
            raise JobSpecError(
                f"{key}.project", "no GCP project: set it, or GOOGLE_CLOUD_PROJECT, or `gcloud config set project`"
            )
        if not conf.location:
            raise JobSpecError(f"{key}.location", "a Vertex AI region is required, e.g. us-central1")
        if not _storage.is_gcs(conf.staging_dir) or not _storage.split_gcs(conf.staging_dir)[0]:
            raise JobSpecError(
                f"{key}.staging_dir", f"the vertex backend stages in Cloud Storage: use gs://BUCKET/PATH, not '{conf.staging_dir}'"
            )
        if not conf.job.image_uri:
            raise JobSpecError(
                f"{key}.job.image_uri", "required on the vertex backend: the container image with your code and this package"
            )
        if conf.poll_interval_s <= 0:
            raise JobSpecError(f"{key}.poll_interval_s", "must be positive")
        if conf.create_rate_per_minute <= 0:
            raise JobSpecError(f"{key}.create_rate_per_minute", "must be positive")
        if conf.api_endpoint:
            try:
                parse_endpoint(conf.api_endpoint)
            except ValueError as e:
                raise JobSpecError(f"{key}.api_endpoint", str(e)) from None
        return cls(
            make_client(conf.location, conf.api_endpoint),
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
        return f"projects/{self.project}/locations/{self.location}"

    # --- paths -----------------------------------------------------------------------------------------

    def container_path(self, local_path: str) -> str:
        """`<staging_dir>/hydra/<local path relative to cwd>` in the bucket, seen through the FUSE mount.

        The result is an interpolation of the FUSE root that the container resolves (see `_storage`), so the
        same config works on Vertex (/gcs) and in the emulator (a local stand-in).
        """
        absolute = os.path.abspath(local_path)
        relative = os.path.relpath(absolute)
        if relative == os.curdir or relative.startswith(os.pardir):
            relative = absolute.lstrip(os.sep)  # outside cwd: mirror the absolute path
        uri = _storage.join(self.staging_dir, "hydra", *Path(relative).parts)
        self.outputs[absolute] = uri
        return _storage.fuse_interpolation(uri)

    def console_link(self, name: str) -> str:
        kind, job_id = name.split("/")[-2:]
        page = "training" if kind == "customJobs" else "training/hyperparameter-tuning-jobs"
        return f"{CONSOLE}/vertex-ai/locations/{self.location}/{page}/{job_id}?project={self.project}"

    def logging_filter(self, name: str) -> str:
        return f'resource.type="ml_job" resource.labels.job_id="{name.split("/")[-1]}"'

    def where(self, name: str) -> str:
        return f"{self.console_link(name)}\nCloud Logging filter: {self.logging_filter(name)}"

    # --- retried calls ---------------------------------------------------------------------------------

    def _retry_policy(self, stop: Optional[threading.Event] = None) -> Any:
        from google.api_core.retry import Retry, if_exception_type

        def on_error(error: Exception) -> None:
            if stop is not None and stop.is_set():
                raise _Stopped() from error  # Ctrl-C must not wait out a backoff
            log.debug("Vertex API call failed, retrying: %s", error)

        return Retry(
            predicate=if_exception_type(*_transient_types()),
            initial=self.retry_initial_s,
            maximum=RETRY_MAX_DELAY_S,
            multiplier=2.0,
            timeout=self.retry_timeout_s,
            on_error=on_error,
        )

    def _call(self, what: str, fn: Callable[[], Any], stop: Optional[threading.Event] = None) -> Any:
        """`fn()` with transient errors retried; a permanent error raises VertexAPIError with the server's text."""
        from google.api_core import exceptions as ex

        try:
            return self._retry_policy(stop)(fn)()
        except (ex.GoogleAPICallError, ex.RetryError) as e:
            raise _api_error(what, e) from e

    def _create_once(
        self, what: str, create: Callable[[], Any], find: Callable[[], Optional[Any]], stop: threading.Event
    ) -> Any:
        """Create a resource exactly once: after an ambiguous failure, look it up before trying again."""
        ambiguous = _ambiguous_types()
        committed_maybe = False

        def attempt() -> Any:
            nonlocal committed_maybe
            if stop.is_set():
                raise _Stopped()
            if committed_maybe:
                found = find()
                if found is not None:
                    log.debug("%s: found the job an ambiguous create made", what)
                    return found
            try:
                return create()
            except ambiguous:
                committed_maybe = True
                raise

        return self._call(what, attempt, stop)

    # --- CustomJobs ------------------------------------------------------------------------------------

    def run_jobs(self, jobs: Sequence[Dict[str, Any]]) -> List[JobOutcome]:
        tracked = [_Tracked(dict(job), str(job["labels"]["hydra_uid"])) for job in jobs]
        stop = threading.Event()
        progress = _Progress(f"Vertex AI sweep {self.sweep_id}")
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
        if self.sync_outputs:
            self._sync_outputs()
        return [self._outcome(job) for job in tracked]

    def create_jobs(self, jobs: Sequence[Dict[str, Any]]) -> List[str]:
        """Create every job (concurrent, rate-limited, exactly once) without waiting; their resource names."""
        tracked = [_Tracked(dict(job), str(job["labels"]["hydra_uid"])) for job in jobs]
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=min(CREATE_THREADS, len(jobs)) or 1, thread_name_prefix="vertex-create") as pool:
            list(pool.map(lambda job: self._create_custom_job(job, stop), tracked))
        return [job.name or "" for job in tracked]

    def _create_custom_job(self, job: _Tracked, stop: threading.Event) -> None:
        from google.cloud.aiplatform_v1 import CustomJob

        self.limiter.acquire(stop)
        proto = _proto_of(CustomJob, job.spec)
        created = self._create_once(
            f"creating CustomJob '{job.spec['displayName']}'",
            lambda: self.client.create_custom_job(parent=self.parent, custom_job=proto, timeout=RPC_TIMEOUT_S),
            lambda: self._find_custom_job(job.uid),
            stop,
        )
        job.name, job.state = created.name, created.state.name
        log.info("Created %s: %s", job.spec["displayName"], self.console_link(created.name))

    def _find_custom_job(self, uid: str) -> Optional[Any]:
        found = self.client.list_custom_jobs(
            request={"parent": self.parent, "filter": f'labels.hydra_uid="{uid}"', "read_mask": {"paths": list(LIST_READ_MASK)}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _list_sweep(self) -> Iterator[Any]:
        """Every job of this sweep: one ListCustomJobs call (and its pages), however many jobs there are."""
        pager = self.client.list_custom_jobs(
            request={
                "parent": self.parent,
                "filter": f'labels.hydra_sweep="{self.sweep_id}"',
                "read_mask": {"paths": list(LIST_READ_MASK)},
                "page_size": LIST_PAGE_SIZE,
            },
            retry=self._retry_policy(),
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
            raise _api_error(f"listing the jobs of sweep {self.sweep_id}", e) from e
        for item in listed:
            job = by_uid.get(item.labels.get("hydra_uid", ""))
            if job is None:
                continue  # an earlier batch of the same sweep
            job.name, job.state, job.error = item.name, item.state.name, _error_message(item)
            if job.state == PAUSED and not job.stalled_warned:
                log.warning("%s is PAUSED: stalled until resumed in the console (%s)", job.name, self.console_link(job.name))
                job.stalled_warned = True

    def _wait(self, tracked: List[_Tracked], futures: List["Future[None]"], progress: _Progress) -> None:
        pending = set(futures)
        while True:
            done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()  # a permanent create error ends the sweep (the caller cancels the rest)
            if any(job.name for job in tracked):
                self.poll(tracked)
            states = [job.state if job.name else "NOT_CREATED" for job in tracked]
            progress.update(_counts(states))
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
            lines = "\n".join(f"  {job.spec['displayName']}: {job.name} ({job.state.replace('JOB_STATE_', '')})" for job in targets)
            print(f"Interrupted: cancelled {len(targets)} unfinished Vertex AI job(s):\n{lines}", file=sys.stderr, flush=True)
        else:
            print("Interrupted: no unfinished Vertex AI job to cancel", file=sys.stderr, flush=True)

    def _cancel_one(self, name: str, hpt: bool = False) -> None:
        from google.api_core import exceptions as ex

        cancel = self.client.cancel_hyperparameter_tuning_job if hpt else self.client.cancel_custom_job
        try:
            self._call(f"cancelling {name}", lambda: cancel(name=name, timeout=RPC_TIMEOUT_S))
        except VertexAPIError as e:
            if not isinstance(e.__cause__, (ex.FailedPrecondition, ex.NotFound)):  # not already finished
                log.error("%s", e)

    def _outcome(self, job: _Tracked) -> JobOutcome:
        assert job.name is not None
        error = job.error if job.state != SUCCEEDED else None
        return JobOutcome(job.state, error, self.where(job.name))

    def _sync_outputs(self) -> None:
        """Copy each job's .hydra/ and *.log from the bucket into the local sweep dir, as other launchers leave them."""
        for local_dir, uri in self.outputs.items():
            try:
                objects = _storage.list_gcs(uri.rstrip("/") + "/")
            except Exception as e:  # outputs are a convenience: never fail a finished sweep for them
                log.warning("could not list %s to copy job outputs back: %s", uri, e)
                continue
            wanted = [(o, size) for o, size in objects if size <= SYNC_MAX_BYTES and _is_hydra_output(o)]
            with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
                list(pool.map(lambda item: self._download(item[0], uri, local_dir), wanted))

    @staticmethod
    def _download(obj: str, prefix: str, local_dir: str) -> None:
        relative = obj[len(prefix.rstrip("/")) + 1 :]
        target = Path(local_dir, *relative.split("/"))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_storage.read_bytes(obj))
        except Exception as e:
            log.warning("could not copy %s to %s: %s", obj, target, e)

    # --- HyperparameterTuningJobs ----------------------------------------------------------------------

    def run_tuning_job(self, job: Dict[str, Any]) -> TuningOutcome:
        """Create the HyperparameterTuningJob `job` (REST dict), wait with progress, return how it ended.

        Created exactly once when `job["labels"]` has a `hydra_uid`. Ctrl-C cancels it and re-raises.
        """
        from google.cloud.aiplatform_v1 import HyperparameterTuningJob

        proto = _proto_of(HyperparameterTuningJob, job)
        uid = job.get("labels", {}).get("hydra_uid")
        created = self._create_once(
            f"creating HyperparameterTuningJob '{job.get('displayName', '')}'",
            lambda: self.client.create_hyperparameter_tuning_job(
                parent=self.parent, hyperparameter_tuning_job=proto, timeout=RPC_TIMEOUT_S
            ),
            (lambda: self._find_tuning_job(uid)) if uid else (lambda: None),
            threading.Event(),
        )
        log.info("Created HyperparameterTuningJob %s: %s", created.name, self.console_link(created.name))
        return self.attach_tuning_job(created.name)

    def attach_tuning_job(self, name: str) -> TuningOutcome:
        """Wait for the existing HyperparameterTuningJob `name` (projects/.../hyperparameterTuningJobs/ID)."""
        try:
            final = self._wait_tuning_job(name)
        except KeyboardInterrupt:
            self._cancel_tuning_job(name)
            raise
        if self.sync_outputs:
            self._sync_outputs()
        state = final.state.name
        error = _error_message(final) if state != SUCCEEDED else None
        trials = [_trial_rest(t) for t in final.trials]
        args = final.trial_job_spec.worker_pool_specs[0].container_spec.args
        message = f"{error}\nsee {self.where(name)}" if error else None
        return TuningOutcome(state, trials, message, name, payload_uri=args[0] if args else None)

    def _find_tuning_job(self, uid: str) -> Optional[Any]:
        found = self.client.list_hyperparameter_tuning_jobs(
            request={"parent": self.parent, "filter": f'labels.hydra_uid="{uid}"', "read_mask": {"paths": ["name", "state"]}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _wait_tuning_job(self, name: str) -> Any:
        """One GET per poll (a single job); progress shows trials by state and the best value so far."""
        from .local_study import summarize_trials

        progress = _Progress(f"Vertex AI tuning job {name.split('/')[-1]}")
        try:
            while True:
                current = self._call(f"reading {name}", lambda: self.client.get_hyperparameter_tuning_job(name=name, timeout=RPC_TIMEOUT_S))
                state = current.state.name
                trials = [_trial_rest(t) for t in current.trials]
                goal = current.study_spec.metrics[0].goal.name if current.study_spec.metrics else "MINIMIZE"
                progress.update(f"{state.replace('JOB_STATE_', '').lower()}; {summarize_trials(trials, goal == 'MAXIMIZE')}")
                if state in TERMINAL_STATES:
                    return current
                if state == PAUSED:
                    log.warning("%s is PAUSED: stalled until resumed", name)
                time.sleep(self.poll_interval_s)
        finally:
            progress.close()

    def _cancel_tuning_job(self, name: str) -> None:
        self._cancel_one(name, hpt=True)
        deadline = time.monotonic() + CANCEL_WAIT_S
        state = "?"
        while time.monotonic() < deadline:
            try:
                state = self.client.get_hyperparameter_tuning_job(name=name, timeout=RPC_TIMEOUT_S).state.name
            except Exception:  # the interrupt wins over a flaky read
                break
            if state in TERMINAL_STATES or state == CANCELLING:
                break
            time.sleep(min(self.poll_interval_s, 1.0))
        print(f"Interrupted: cancelled Vertex AI tuning job {name} ({state.replace('JOB_STATE_', '')})", file=sys.stderr, flush=True)


def _is_hydra_output(uri: str) -> bool:
    parts = uri.split("/")
    return ".hydra" in parts[:-1] or parts[-1].endswith(".log")

