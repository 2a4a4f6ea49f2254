"""Talking to Vertex AI's JobService: the client and its credentials, retries, exactly-once creates, the rate limit.

Vertex facts that shape this module:
- the JobService methods have no default retry: transient errors are retried here with backoff that a
  stop (Ctrl-C) ends at once;
- RESOURCE_EXHAUSTED is either the per-minute rate limit (retried) or a capacity quota such as GPUs in use
  (`_vertex_facts.capacity_quota_metrics`), which only a job's end frees: that one is not retried here;
- creates have no request id, so a create that failed ambiguously is looked up by its `hydra_uid` label
  before it is retried: every job is created exactly once;
- submissions are limited to about 60 per minute per region: creates go through a token bucket.
"""
import configparser
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Type

from .._errors import ConfigError, CredentialsError, VertexAPIError
from .._signals import atomic
from .._vertex_facts import capacity_quota_metrics, is_loopback, regional_endpoint, split_address

log = logging.getLogger(__name__)

# One RPC's deadline; a longer one would only delay the retry of a lost request.
RPC_TIMEOUT_S = 60.0
RETRY_MAX_DELAY_S = 60.0
# How long the endpoint has to accept a connection before anything is staged.
CONNECT_TIMEOUT_S = 10.0
# After Ctrl-C: how long to keep trying to cancel (and to wait for creates on the wire to end).
CANCEL_WAIT_S = 30.0


class Stopped(Exception):
    """Creation was stopped (Ctrl-C or another job's permanent error) before this job was created."""


class Unreachable(VertexAPIError):
    """Transient errors for longer than retry_timeout_s: an outage, or an endpoint where nothing answers."""


class QuotaExceeded(VertexAPIError):
    """A capacity quota (accelerators or CPUs in use at once) is used up; `metrics` names it."""

    def __init__(self, message: str, metrics: List[str]) -> None:
        super().__init__(message)
        self.metrics = metrics


def parse_endpoint(endpoint: str) -> Tuple[str, int]:
    """HOST:PORT (or [IPv6]:PORT) -> (host, port)."""
    return split_address(endpoint, "endpoint")


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
        return JobServiceClient(client_options={"api_endpoint": api_endpoint or regional_endpoint(location)})
    except DefaultCredentialsError as e:
        raise CredentialsError("Vertex AI", e) from None


def check_connects(client: Any, endpoint: str, key: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail before anything is staged when nothing answers at `endpoint` (else every call would be retried
    for retry_timeout_s, twice). Opens the client's channel, which needs no credentials and no API call."""
    import grpc

    channel = getattr(getattr(client, "transport", None), "grpc_channel", None)
    if channel is None:  # another transport (REST): its first call tells
        return
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise ConfigError(
            f"{key}.api_endpoint", f"the Vertex AI endpoint {endpoint} did not answer within {timeout_s:g} s"
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


# --- errors --------------------------------------------------------------------------------------------


def transient_types() -> Tuple[Type[Exception], ...]:
    from google.api_core import exceptions as ex

    return (ex.ServiceUnavailable, ex.ResourceExhausted, ex.InternalServerError, ex.DeadlineExceeded)


def ambiguous_types() -> Tuple[Type[Exception], ...]:
    """Errors after which a create may have committed (RESOURCE_EXHAUSTED is refused before anything)."""
    from google.api_core import exceptions as ex

    return (ex.ServiceUnavailable, ex.InternalServerError, ex.DeadlineExceeded)


def api_error(what: str, error: BaseException) -> VertexAPIError:
    return VertexAPIError(f"{what}: {describe(error)}")


def quota_metrics(error: BaseException) -> List[str]:
    """The capacity quota metrics a RESOURCE_EXHAUSTED names; [] for a rate limit or another error."""
    from google.api_core import exceptions as ex

    if not isinstance(error, ex.ResourceExhausted):
        return []
    return capacity_quota_metrics(str(getattr(error, "message", None) or error))


def describe(error: BaseException) -> str:
    code = getattr(error, "grpc_status_code", None)
    message = getattr(error, "message", None) or str(error)
    return f"{code.name}: {message}" if code is not None else message


def error_message(job: Any) -> Optional[str]:
    """A job's `error` status as text, or None."""
    error = job.error
    return (error.message or f"error code {error.code}") if (error.code or error.message) else None


# --- REST dicts <-> protos -------------------------------------------------------------------------------


def proto_of(cls: Any, rest: Mapping[str, Any]) -> Any:
    """The proto-plus message `cls` parsed from its REST (camelCase JSON) dict."""
    from google.protobuf import json_format

    pb = cls.pb()()
    json_format.ParseDict(rest, pb)
    return cls.wrap(pb)


def rest_of(message: Any) -> Dict[str, Any]:
    from google.protobuf import json_format

    return dict(json_format.MessageToDict(type(message).pb(message)))


def trial_rest(trial: Any) -> Dict[str, Any]:
    """A Trial as a REST dict; proto3 JSON drops a metric value of 0.0, which readers of trials expect."""
    rest = rest_of(trial)
    measurements = rest.get("measurements", []) + ([rest["finalMeasurement"]] if "finalMeasurement" in rest else [])
    for measurement in measurements:
        for metric in measurement.get("metrics", []):
            metric.setdefault("value", 0.0)
    return rest


# --- rate limit and retried calls ----------------------------------------------------------------------


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
                raise Stopped()


class VertexClient:
    """The JobService client of one project and region, with retries and exactly-once creates."""

    def __init__(
        self, client: Any, *, project: str, location: str, retry_initial_s: float = 1.0,
        retry_timeout_s: float = 600.0, create_rate_per_minute: float = 60.0,
    ) -> None:
        self.client = client
        self.parent = f"projects/{project}/locations/{location}"
        self.retry_initial_s = retry_initial_s
        self.retry_timeout_s = retry_timeout_s
        self.limiter = RateLimiter(create_rate_per_minute)

    def cancel(self, name: str, fn: Callable[[], Any], budget_s: float) -> Optional[str]:
        """Cancel the job `name` through `fn()`; None when Vertex took it (or the job had already ended), else why not."""
        from google.api_core import exceptions as ex

        try:
            self.call(f"cancelling {name}", fn, budget_s=budget_s)
        except VertexAPIError as e:
            if not isinstance(e.__cause__, (ex.FailedPrecondition, ex.NotFound)):  # not already finished
                return str(e)
        return None

    def call(
        self, what: str, fn: Callable[[], Any], stop: Optional[threading.Event] = None,
        budget_s: Optional[float] = None,
    ) -> Any:
        """`fn()` with transient errors retried for `budget_s` (default retry_timeout_s).

        A permanent error raises VertexAPIError with the server's text; a capacity quota raises QuotaExceeded
        at once (it frees up only when a job ends); an exhausted budget raises Unreachable. `stop` ends a
        backoff at once (Ctrl-C must not wait it out)."""
        from google.api_core import exceptions as ex

        budget = self.retry_timeout_s if budget_s is None else budget_s
        deadline = time.monotonic() + budget
        delay = self.retry_initial_s
        while True:
            if stop is not None and stop.is_set():
                raise Stopped()
            try:
                # A Ctrl-C raised inside gRPC's channel code can leave the channel's lock held, and every later
                # call on it (the cancels that Ctrl-C sends) would hang: it acts when the attempt returns (at most
                # RPC_TIMEOUT_S).
                with atomic():
                    return fn()
            except ex.GoogleAPICallError as e:
                if quota_metrics(e):
                    raise QuotaExceeded(f"{what}: {describe(e)}", quota_metrics(e)) from e
                if not isinstance(e, transient_types()):
                    raise api_error(what, e) from e
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unreachable(f"{what}: still failing after {budget:g} s of retries (retry_timeout_s): {describe(e)}") from e
                # the last attempt comes at the deadline, not a whole backoff before it
                pause = min(min(delay, RETRY_MAX_DELAY_S) * random.uniform(0.5, 1.0), remaining)
                log.debug("Vertex API call failed, retrying in %.1f s: %s", pause, e)
            if stop is not None:
                if stop.wait(pause):
                    raise Stopped()
            else:
                time.sleep(pause)
            delay *= 2.0

    def create_once(
        self, what: str, create: Callable[[], Any], find: Callable[[], Optional[Any]], stop: threading.Event
    ) -> Any:
        """Create a resource exactly once: after an ambiguous failure, look it up before trying again."""
        ambiguous = ambiguous_types()
        committed_maybe = False

        def attempt() -> Any:
            nonlocal committed_maybe
            if stop.is_set():
                raise Stopped()
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

        return self.call(what, attempt, stop)
