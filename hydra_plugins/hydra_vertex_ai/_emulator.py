"""A local Vertex AI JobService (google.cloud.aiplatform.v1) over gRPC, for tests and offline tries.

It speaks the real protocol with the real proto messages, so the real `JobServiceClient` talks to it
unchanged. CustomJobs run through the local backend (`_backends.local.run_custom_job`), tuning jobs
through the local study engine. Knobs inject what the real service does on a bad day: latency, failed
calls, calls that commit and then lose their reply, a create rate quota and an accelerator quota. Create
refuses what Vertex refuses (INVALID_ARGUMENT: labels, boot disk pairs, TensorBoard without a service account,
FLEX_START limits, a study without parameters, an imageless container, a display name over 128 characters, a
chief pool of more than one replica, more than 4 pools, a non-gs:// base output dir, and any field it does not
model: `JOB_SPEC_FIELDS`), from the same `_vertex_facts` rules as our client checks; no knob turns that off.
Jobs look as Vertex's do: QUEUED -> PENDING (waiting for a slot) -> RUNNING -> terminal, named with the
project's number and a numeric id; trials name their CustomJob; Delete answers a google.longrunning Operation,
which the Operations service serves; List filters take OR and create_time.

FUSE: on Vertex, /gcs/<bucket> is the bucket. Here every job process gets
HYDRA_VERTEX_AI_GCS_FUSE_ROOT=<workdir>/gcs, a plain directory standing in for the mount (its Hydra output
dir lands there), while its gs:// reads and writes go to the storage client (STORAGE_EMULATOR_HOST); see
`_storage`. The stand-in copies a file to the bucket when it is closed, as Cloud Storage FUSE uploads on
close (gcsfuse docs/semantics.md: "Data is guaranteed to be on GCS only after the file is closed"): while
jobs run it looks every `_FUSE_POLL_S` for files no process holds open (Linux /proc/<pid>/fd), and when a job
ends it copies the rest. A file still open in a replica that a signal ends (SIGKILL after the grace period,
SIGTERM's default action, out of memory) is never copied: its clean close never happened, and on Vertex the
mount goes down with the container. Without /proc every file counts as closed.
"""
import collections
import contextlib
import fnmatch
import itertools
import logging
import os
import random
import re
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Callable, Counter, Deque, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import grpc
from google.protobuf import json_format
from google.protobuf.field_mask_pb2 import FieldMask

from . import _storage
from ._pids import proc_stat
from ._vertex_facts import (
    CANCELLED,
    CAPACITY_QUOTA_PREFIX,
    CHIEF_REPLICAS,
    DEADLINE_EXCEEDED_CODE,
    FAILED,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_LABELS,
    MAX_WORKER_POOLS,
    SUBMISSION_RATE_METRIC,
    TENSORBOARD_NEEDS_SERVICE_ACCOUNT,
    TERMINAL_STATES,
    TIMEOUT_ERROR_PREFIX,
    accelerator_quota_metric,
    boot_disk_problem,
    conditional_spec_problem,
    env_problem,
    flex_start_problem,
    label_problem,
    machine_problem,
)
from ._vertex_images import MAX_PACKAGE_URIS, not_prebuilt_message, training_image

log = logging.getLogger(__name__)

SERVICE = "google.cloud.aiplatform.v1.JobService"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PARENT = re.compile(r"^projects/[^/]+/locations/[^/]+$")
_FILTER_TERM = re.compile(r'^(NOT\s+)?([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|<|>|:)\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))$')
OPERATIONS_SERVICE = "google.longrunning.Operations"


@dataclass
class Knobs:
    """Faults and limits; change them on a running emulator (the handle's `knobs`)."""

    # seconds added to every call
    latency_s: float = 0.0
    # fraction of calls refused before they do anything, with a code drawn from fail_codes
    fail_rate: float = 0.0
    fail_codes: Sequence[str] = ("UNAVAILABLE",)
    # fraction of calls that do their work (a create commits) and then answer with a code from lose_reply_codes
    lose_reply_rate: float = 0.0
    lose_reply_codes: Sequence[str] = ("DEADLINE_EXCEEDED", "UNAVAILABLE")
    # the methods (e.g. "CreateCustomJob") latency, fail_rate and lose_reply_rate apply to; None = every method
    fault_methods: Optional[Sequence[str]] = None
    # creates accepted per rolling minute; more answer RESOURCE_EXHAUSTED (a rate limit); None = no quota
    quota_creates_per_minute: Optional[int] = None
    # AcceleratorType -> accelerators usable at once by unfinished jobs; a create beyond answers Vertex's
    # capacity RESOURCE_EXHAUSTED naming the quota metric (e.g. {"NVIDIA_L4": 1})
    accelerator_quota: Dict[str, int] = field(default_factory=dict)
    # the random draws of fail_rate and lose_reply_rate
    seed: Optional[int] = None


def _pb(proto_plus_cls: Any) -> Any:
    return proto_plus_cls.pb()


def _messages() -> Dict[str, Any]:
    """Raw protobuf classes of the messages this service uses (the SDK ships them as proto-plus types)."""
    from google.cloud.aiplatform_v1 import types

    return {name: _pb(getattr(types, name)) for name in (
        "CustomJob", "HyperparameterTuningJob", "Trial", "JobState",
        "CreateCustomJobRequest", "GetCustomJobRequest", "ListCustomJobsRequest", "ListCustomJobsResponse",
        "CancelCustomJobRequest", "CreateHyperparameterTuningJobRequest", "GetHyperparameterTuningJobRequest",
        "ListHyperparameterTuningJobsRequest", "ListHyperparameterTuningJobsResponse",
        "CancelHyperparameterTuningJobRequest", "DeleteCustomJobRequest", "DeleteHyperparameterTuningJobRequest",
        "DeleteOperationMetadata",
    ) if name != "JobState"}


@dataclass
class _Record:
    kind: str  # "customJobs" or "hyperparameterTuningJobs"
    job: Any  # the stored proto; mutated under the emulator's lock
    cancel: threading.Event = field(default_factory=threading.Event)
    states: List[str] = field(default_factory=list)  # every state it has been in, in order (for tests)


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class JobServiceEmulator:
    """The service: state, execution and knobs. `start()` serves it; `address` is HOST:PORT."""

    def __init__(self, workdir: Path, knobs: Optional[Knobs] = None, max_running: Optional[int] = None) -> None:
        self.workdir = Path(workdir)
        self.fuse_root = self.workdir / "gcs"
        self.fuse_root.mkdir(parents=True, exist_ok=True)
        self.knobs = knobs or Knobs()
        self.msg = _messages()
        # calls received, by method name (CreateCustomJob, ListCustomJobs, ...), faulty ones included
        self.calls: Counter[str] = collections.Counter()
        # jobs committed per hydra_uid label: exactly-once means every value is 1
        self.creates_by_uid: Counter[str] = collections.Counter()
        self._records: Dict[str, _Record] = {}
        self._operations: Dict[str, Any] = {}  # google.longrunning Operations by name
        self._trial_jobs: Dict[Tuple[str, str], str] = {}  # (tuning job, trial id) -> its CustomJob's name
        self._order: List[str] = []
        self._lock = threading.RLock()
        self._ids = itertools.count(int(time.time() * 1000) * 1000)
        self._creates: Deque[float] = collections.deque()
        self._rng = random.Random(self.knobs.seed)
        self._slots = threading.Semaphore(max_running or os.cpu_count() or 1)
        self._fuse = _FuseStandin(self.fuse_root)
        self._active = 0  # jobs running: the stand-in looks for closed files only then
        self._stopped = threading.Event()
        self._threads: List[threading.Thread] = []
        self._server: Any = None
        self.address = ""

    # --- serving ---------------------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> str:
        self._server = grpc.server(ThreadPoolExecutor(max_workers=32, thread_name_prefix="emulator-rpc"))
        self._server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(SERVICE, self._handlers()),
            grpc.method_handlers_generic_handler(OPERATIONS_SERVICE, self._operation_handlers()),
        ))
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"cannot listen on {host}:{port}")
        self._server.start()
        self.address = f"{host}:{bound}"
        threading.Thread(target=self._publish_closed_files, name="emulator-fuse", daemon=True).start()
        log.debug("Vertex AI JobService emulator on %s, workdir %s", self.address, self.workdir)
        return self.address

    def _publish_closed_files(self) -> None:
        while not self._stopped.wait(_FUSE_POLL_S):
            if self._active:
                self._fuse.publish(poll=True)

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop serving and cancel what is still running (its processes are stopped)."""
        self._stopped.set()
        if self._server is not None:
            self._server.stop(grace=0)
        with self._lock:
            for record in self._records.values():
                record.cancel.set()
        for thread in self._threads:
            thread.join(timeout=grace_s)

    def _handlers(self) -> Dict[str, grpc.RpcMethodHandler]:
        from google.longrunning.operations_pb2 import Operation

        m = self.msg
        table: Dict[str, Tuple[Callable[[Any], Any], Any, Any]] = {
            "CreateCustomJob": (self._create_custom, m["CreateCustomJobRequest"], m["CustomJob"]),
            "GetCustomJob": (lambda r: self._get(r.name, "customJobs"), m["GetCustomJobRequest"], m["CustomJob"]),
            "ListCustomJobs": (self._list_custom, m["ListCustomJobsRequest"], m["ListCustomJobsResponse"]),
            "CancelCustomJob": (lambda r: self._cancel(r.name, "customJobs"), m["CancelCustomJobRequest"], None),
            "CreateHyperparameterTuningJob": (
                self._create_tuning, m["CreateHyperparameterTuningJobRequest"], m["HyperparameterTuningJob"]),
            "GetHyperparameterTuningJob": (
                lambda r: self._get(r.name, "hyperparameterTuningJobs"),
                m["GetHyperparameterTuningJobRequest"], m["HyperparameterTuningJob"]),
            "ListHyperparameterTuningJobs": (
                self._list_tuning, m["ListHyperparameterTuningJobsRequest"], m["ListHyperparameterTuningJobsResponse"]),
            "CancelHyperparameterTuningJob": (
                lambda r: self._cancel(r.name, "hyperparameterTuningJobs"),
                m["CancelHyperparameterTuningJobRequest"], None),
            # job_service.proto DeleteCustomJob / DeleteHyperparameterTuningJob: a long-running Operation
            "DeleteCustomJob": (lambda r: self._delete(r.name, "customJobs"), m["DeleteCustomJobRequest"], Operation),
            "DeleteHyperparameterTuningJob": (
                lambda r: self._delete(r.name, "hyperparameterTuningJobs"),
                m["DeleteHyperparameterTuningJobRequest"], Operation),
        }
        return self._method_handlers(table)

    def _operation_handlers(self) -> Dict[str, grpc.RpcMethodHandler]:
        """google.longrunning.Operations (google/longrunning/operations.proto), which the SDK polls an
        Operation with (`.result()`); every Operation here is done when it is returned."""
        from google.longrunning import operations_pb2 as ops

        return self._method_handlers({
            "GetOperation": (lambda r: self._operation(r.name), ops.GetOperationRequest, ops.Operation),
            "WaitOperation": (lambda r: self._operation(r.name), ops.WaitOperationRequest, ops.Operation),
        })

    def _method_handlers(self, table: Dict[str, Tuple[Callable[[Any], Any], Any, Any]]) -> Dict[str, grpc.RpcMethodHandler]:
        from google.protobuf.empty_pb2 import Empty

        return {
            name: grpc.unary_unary_rpc_method_handler(
                self._faulty(name, fn),
                request_deserializer=request.FromString,
                response_serializer=(response or Empty).SerializeToString,
            )
            for name, (fn, request, response) in table.items()
        }

    def _faulty(self, method: str, fn: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        """The handler with the knobs applied: latency, refusals, quota, and replies lost after the work."""

        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            knobs = self.knobs
            with self._lock:
                self.calls[method] += 1
                draw = self._rng.random()
                code_draw = self._rng.random()
            faulty = knobs.fault_methods is None or method in knobs.fault_methods
            if knobs.latency_s and faulty:
                time.sleep(knobs.latency_s)
            try:
                if faulty and draw < knobs.fail_rate:
                    raise _Abort(_code(knobs.fail_codes, code_draw), f"emulator: injected failure of {method}")
                # a create's quota checks and its commit are one step: two creates must not share a GPU
                with self._lock if method.startswith("Create") else contextlib.nullcontext():
                    if method.startswith("Create"):
                        self._take_quota()
                    if method == "CreateCustomJob":
                        self._check_accelerators(request.custom_job)
                    response = fn(request)
                if faulty and draw < knobs.fail_rate + knobs.lose_reply_rate:
                    raise _Abort(_code(knobs.lose_reply_codes, code_draw), f"emulator: {method} done, reply lost")
                return response if response is not None else _empty()
            except _Abort as e:
                context.abort(e.code, e.message)

        return handle

    def _take_quota(self) -> None:
        limit = self.knobs.quota_creates_per_minute
        if limit is None:
            return
        with self._lock:
            now = time.monotonic()
            while self._creates and now - self._creates[0] > 60.0:
                self._creates.popleft()
            if len(self._creates) >= limit:
                # The generic Google API form of a rate limit (the "Job or LRO submission requests" quota,
                # https://cloud.google.com/vertex-ai/docs/quotas); not a capacity quota (see _vertex_facts).
                raise _Abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"Quota exceeded for quota metric '{SUBMISSION_RATE_METRIC}' and limit 'Job or LRO submission "
                    f"requests per minute per region' ({limit}) of service 'aiplatform.googleapis.com' for consumer "
                    "'project_number:0'.",
                )
            self._creates.append(now)

    def _check_accelerators(self, job: Any) -> None:
        """Vertex answers a create beyond the concurrent accelerator quota with RESOURCE_EXHAUSTED naming the
        metric (e.g. github.com/GoogleCloudPlatform/stable-diffusion-on-gcp/issues/12); called under the lock."""
        quota = self.knobs.accelerator_quota
        if not quota:
            return
        for accelerator, limit in quota.items():
            wanted = _accelerators(job, accelerator)
            if not wanted:
                continue
            in_use = sum(
                _accelerators(r.job, accelerator) for r in self._records.values()
                if r.kind == "customJobs" and self._state_name(r.job.state) not in TERMINAL_STATES
            )
            if in_use + wanted > limit:
                raise _Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{CAPACITY_QUOTA_PREFIX}{accelerator_quota_metric(accelerator)}")

    # --- resources -------------------------------------------------------------------------------------

    def _new_name(self, parent: str, kind: str) -> str:
        """projects/{project number}/locations/{location}/{kind}/{numeric id}, as Vertex names a new job."""
        if not _PARENT.match(parent):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"parent '{parent}' is not projects/*/locations/*")
        return f"{by_number(parent)}/{kind}/{next(self._ids)}"

    def _record(self, name: str, kind: str) -> _Record:
        if f"/{kind}/" not in name:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{name}' is not a {kind} resource name")
        record = self._records.get(by_number(name))  # Vertex takes the project's id or number
        if record is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return record

    def _commit(self, record: _Record, parent: str) -> Any:
        now = time.time()
        with self._lock:
            record.job.name = self._new_name(parent, record.kind)
            record.job.state = self._state("JOB_STATE_QUEUED")
            record.states.append("JOB_STATE_QUEUED")
            record.job.create_time.FromNanoseconds(int(now * 1e9))
            record.job.update_time.FromNanoseconds(int(now * 1e9))
            self._records[record.job.name] = record
            self._order.append(record.job.name)
            uid = record.job.labels.get("hydra_uid")
            if uid is not None:
                self.creates_by_uid[uid] += 1
            reply = _copy(record.job)
        thread = threading.Thread(target=self._execute, args=(record,), name=f"emulator-{record.job.name[-8:]}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return reply

    def _create_custom(self, request: Any) -> Any:
        job = request.custom_job
        _check_modeled(job, CUSTOM_JOB_FIELDS, "custom_job")
        _check_display_name(job.display_name, "CustomJob")
        if not any(pool.replica_count for pool in job.job_spec.worker_pool_specs):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "CustomJob.job_spec.worker_pool_specs needs a replica")
        for i, pool in enumerate(job.job_spec.worker_pool_specs):
            if pool.replica_count and not pool.machine_spec.machine_type:  # machine_resources.proto: required
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"worker_pool_specs[{i}].machine_spec.machine_type is required")
        _check_labels(job.labels)
        _check_job_spec(job.job_spec, "custom_job.job_spec")
        return self._commit(_Record("customJobs", _copy(job)), request.parent)

    def _create_tuning(self, request: Any) -> Any:
        job = request.hyperparameter_tuning_job
        _check_modeled(job, TUNING_JOB_FIELDS, "hyperparameter_tuning_job")
        _check_display_name(job.display_name, "HyperparameterTuningJob")
        for required in ("metrics", "parameters"):  # study.proto: both REQUIRED (AIP-203: at least one)
            if not getattr(job.study_spec, required):
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, _required(f"hyperparameter_tuning_job.study_spec.{required}"))
        if job.max_trial_count <= 0 or job.parallel_trial_count <= 0:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "max_trial_count and parallel_trial_count must be positive")
        if job.parallel_trial_count > job.max_trial_count:  # stricter than documented: never more at once than in all
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "parallel_trial_count exceeds max_trial_count")
        if not job.trial_job_spec.worker_pool_specs:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "trial_job_spec.worker_pool_specs is required")
        # study.proto ConditionalParameterSpec: a parent is CATEGORICAL, DISCRETE or INTEGER, its condition is the
        # one for its kind, and "All values must exist in" the parent's value spec
        study = json_format.MessageToDict(job.study_spec)
        problem = conditional_spec_problem(study.get("parameters") or [], "hyperparameter_tuning_job.study_spec.parameters")
        if problem:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        _check_labels(job.labels)
        _check_job_spec(job.trial_job_spec, "hyperparameter_tuning_job.trial_job_spec")
        return self._commit(_Record("hyperparameterTuningJobs", _copy(job)), request.parent)

    def _get(self, name: str, kind: str) -> Any:
        with self._lock:
            return _copy(self._record(name, kind).job)

    def _cancel(self, name: str, kind: str) -> None:
        with self._lock:
            record = self._record(name, kind)
            state = self._state_name(record.job.state)
            if state in TERMINAL_STATES:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} is already {state}; cannot cancel")
            if state != "JOB_STATE_CANCELLING":
                self._set_state(record, "JOB_STATE_CANCELLING")
            record.cancel.set()

    def _delete(self, name: str, kind: str) -> Any:
        """Remove an ended job; answer a done Operation (DeleteOperationMetadata). A job that still runs is
        refused (FAILED_PRECONDITION): cancel it first, so a delete never hides machines still billed."""
        from google.longrunning.operations_pb2 import Operation
        from google.protobuf.empty_pb2 import Empty

        with self._lock:
            record = self._record(name, kind)
            state = self._state_name(record.job.state)
            if state not in TERMINAL_STATES:
                raise _Abort(grpc.StatusCode.FAILED_PRECONDITION, f"{name} is {state}; cancel it before deleting it")
            del self._records[record.job.name]
            self._order.remove(record.job.name)
            operation = Operation(name=f"{record.job.name}/operations/{next(self._ids)}", done=True)
            metadata = self.msg["DeleteOperationMetadata"]()
            metadata.generic_metadata.create_time.GetCurrentTime()
            metadata.generic_metadata.update_time.GetCurrentTime()
            operation.metadata.Pack(metadata)
            operation.response.Pack(Empty())
            self._operations[operation.name] = operation
            return _copy(operation)

    def _operation(self, name: str) -> Any:
        with self._lock:
            operation = self._operations.get(by_number(name))
            if operation is None:
                raise _Abort(grpc.StatusCode.NOT_FOUND, f"operation {name} not found")
            return _copy(operation)

    def _list_custom(self, request: Any) -> Any:
        jobs, token = self._list(request, "customJobs", self.msg["CustomJob"])
        return self.msg["ListCustomJobsResponse"](custom_jobs=jobs, next_page_token=token)

    def _list_tuning(self, request: Any) -> Any:
        jobs, token = self._list(request, "hyperparameterTuningJobs", self.msg["HyperparameterTuningJob"])
        return self.msg["ListHyperparameterTuningJobsResponse"](hyperparameter_tuning_jobs=jobs, next_page_token=token)

    def _list(self, request: Any, kind: str, cls: Any) -> Tuple[List[Any], str]:
        """Filtered, masked, paged; in creation order, so page tokens (offsets) stay valid as jobs are added."""
        if not _PARENT.match(request.parent):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"parent '{request.parent}' is not projects/*/locations/*")
        terms = _parse_filter(request.filter)
        mask = request.read_mask if request.HasField("read_mask") and request.read_mask.paths else None
        if mask is not None and not mask.IsValidForDescriptor(cls.DESCRIPTOR):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"read_mask {list(mask.paths)} names unknown fields")
        try:
            start = int(request.page_token or 0)
        except ValueError:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid page_token") from None
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        prefix = f"{by_number(request.parent)}/{kind}/"
        with self._lock:
            matches = [
                self._records[n].job for n in self._order
                if n.startswith(prefix)
                and all(any(self._matches(self._records[n].job, t) for t in either) for either in terms)
            ]
            page = [_masked(job, mask, cls) for job in matches[start : start + size]]
        token = str(start + size) if start + size < len(matches) else ""
        return page, token

    def _matches(self, job: Any, term: Tuple[bool, str, str, str]) -> bool:
        negate, key, op, value = term
        if key.startswith("labels."):
            actual: Optional[str] = job.labels.get(key[len("labels."):])
        elif key == "state":
            actual = self._state_name(job.state)
        elif key == "display_name":
            actual = job.display_name
        elif key == "create_time":
            return _compare_time(job.create_time.ToNanoseconds(), op, value) != negate
        else:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"filter on '{key}' is not supported by the emulator")
        if op not in ("=", "!=", ":"):  # job_service.proto ListCustomJobsRequest.filter: ordering on create_time only
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{key}' supports =, != and :, not {op}")
        if op == ":":
            hit = actual is not None and fnmatch.fnmatchcase(actual, value if "*" in value else f"*{value}*")
        else:
            hit = (actual == value) == (op == "=")
        return hit != negate

    # --- state -----------------------------------------------------------------------------------------

    def _state(self, name: str) -> int:
        from google.cloud.aiplatform_v1.types import JobState

        return int(getattr(JobState, name))

    @staticmethod
    def _state_name(value: int) -> str:
        from google.cloud.aiplatform_v1.types import JobState

        return JobState(value).name

    def _set_state(self, record: _Record, state: str, error: Optional[str] = None) -> None:
        with self._lock:
            job = record.job
            current = self._state_name(job.state)
            if current in TERMINAL_STATES or (current == "JOB_STATE_CANCELLING" and state not in TERMINAL_STATES):
                return  # a cancelled job only ends
            job.state = self._state(state)
            record.states.append(state)
            now = int(time.time() * 1e9)
            job.update_time.FromNanoseconds(now)
            if state == "JOB_STATE_RUNNING" and not job.HasField("start_time"):
                job.start_time.FromNanoseconds(now)
            if state in TERMINAL_STATES:
                job.end_time.FromNanoseconds(now)
            if error is not None:
                job.error.code = _error_code(state, error)
                job.error.message = error

    # --- execution -------------------------------------------------------------------------------------

    def _execute(self, record: _Record) -> None:
        """QUEUED as created ("just created ... processing has not yet begun"), PENDING while it waits for a slot
        ("The service is preparing to run the job": Vertex provisioning machines), RUNNING once its replicas
        run ("in progress"), then terminal, or CANCELLING -> CANCELLED (job_state.proto)."""
        self._set_state(record, "JOB_STATE_PENDING")
        while not self._slots.acquire(timeout=0.1):
            if record.cancel.is_set():
                self._set_state(record, CANCELLED, "CANCELED")
                return
        try:
            if record.cancel.is_set():
                self._set_state(record, CANCELLED, "CANCELED")
                return
            self._set_state(record, "JOB_STATE_RUNNING")
            with self._lock:
                self._active += 1
            try:
                if record.kind == "customJobs":
                    state, error = self._run_custom(record)
                else:
                    state, error = self._run_tuning(record)
            finally:
                with self._lock:
                    self._active -= 1
            self._flush_fuse()  # its processes have ended: what they closed is in the bucket
            self._set_state(record, state, error)
        except Exception as e:  # the emulator's own bug must not leave a job RUNNING forever
            log.exception("emulator: job %s crashed", record.job.name)
            self._set_state(record, FAILED, f"emulator error: {e}")
        finally:
            self._slots.release()

    def _job_id(self, record: _Record) -> str:
        return str(record.job.name.rsplit("/", 1)[-1])

    def _run_custom(self, record: _Record) -> Tuple[str, Optional[str]]:
        from ._backends.processes import run_custom_job

        with self._lock:
            rest = json_format.MessageToDict(record.job)
        _set_fuse_env(rest["jobSpec"]["workerPoolSpecs"], str(self.fuse_root))
        job_id = self._job_id(record)
        outcome = run_custom_job(rest, job_id=job_id, workdir=self.workdir / "customJobs" / job_id, cancel=record.cancel,
                                 on_kill=self._fuse.killed)
        if outcome.state == CANCELLED:
            return CANCELLED, "CANCELED"
        return outcome.state, outcome.error

    def _run_tuning(self, record: _Record) -> Tuple[str, Optional[str]]:
        try:
            from ._backends.local_study import run_tuning_job
        except ImportError as e:
            return FAILED, f"the emulator runs tuning jobs with the local study engine, which is missing: {e}"
        with self._lock:
            rest = json_format.MessageToDict(record.job)
        _set_fuse_env(rest["trialJobSpec"]["workerPoolSpecs"], str(self.fuse_root))
        job_id = self._job_id(record)

        def on_update(trials: List[Dict[str, Any]]) -> None:
            self._set_trials(record, trials)

        outcome = run_tuning_job(
            rest, job_id=job_id, workdir=self.workdir / "hyperparameterTuningJobs" / job_id,
            cancel=record.cancel, on_update=on_update, on_kill=self._fuse.killed,
        )
        self._set_trials(record, outcome.trials)
        if outcome.state == CANCELLED:
            return CANCELLED, "CANCELED"
        return outcome.state, outcome.error

    def _set_trials(self, record: _Record, trials: List[Dict[str, Any]]) -> None:
        parsed = []
        for trial in trials:
            trial = {**trial, "customJob": self._trial_job(record, str(trial.get("id", "")))}
            message = self.msg["Trial"]()
            json_format.ParseDict(trial, message, ignore_unknown_fields=True)
            parsed.append(message)
        with self._lock:
            del record.job.trials[:]
            record.job.trials.extend(parsed)
            record.job.update_time.FromNanoseconds(int(time.time() * 1e9))

    def _trial_job(self, record: _Record, trial_id: str) -> str:
        """Trial.custom_job (study.proto: "The CustomJob name linked to the Trial"): a numeric CustomJob name in
        the tuning job's project and location. Not listed among the CustomJobs here: the emulator does not
        serve a trial's job on its own."""
        key = (record.job.name, trial_id)
        with self._lock:
            if key not in self._trial_jobs:
                parent = record.job.name.split("/hyperparameterTuningJobs/")[0]
                self._trial_jobs[key] = f"{parent}/customJobs/{next(self._ids)}"
            return self._trial_jobs[key]

    def transitions(self, name: str) -> List[str]:
        """Every state the job `name` has been in, in order (for tests)."""
        with self._lock:
            return list(self._records[by_number(name)].states)

    def _flush_fuse(self) -> None:
        """Copy the closed files jobs wrote under the FUSE stand-in to their bucket, as the real mount would."""
        self._fuse.publish(poll=False)

    # --- for tests -------------------------------------------------------------------------------------

    def jobs(self, kind: str = "customJobs") -> List[Dict[str, Any]]:
        """Every job of `kind`, as REST dicts, in creation order."""
        with self._lock:
            return [json_format.MessageToDict(self._records[n].job) for n in self._order if f"/{kind}/" in n]

    def states(self, label: Optional[Tuple[str, str]] = None) -> Dict[str, str]:
        """hydra_uid (or name) -> state name of every CustomJob, optionally only those with label (key, value)."""
        out = {}
        for job in self.jobs():
            labels = job.get("labels", {})
            if label is None or labels.get(label[0]) == label[1]:
                out[labels.get("hydra_uid", job["name"])] = job["state"]
        return out


def _accelerators(job: Any, accelerator: str) -> int:
    """Accelerators of type `accelerator` a CustomJob uses: every replica of every pool."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    wanted = int(getattr(AcceleratorType, accelerator))
    return sum(pool.machine_spec.accelerator_count * pool.replica_count
               for pool in job.job_spec.worker_pool_specs if pool.machine_spec.accelerator_type == wanted)


def _code(names: Sequence[str], draw: float) -> grpc.StatusCode:
    return grpc.StatusCode[names[min(int(draw * len(names)), len(names) - 1)]]


def _copy(message: Any) -> Any:
    out = type(message)()
    out.CopyFrom(message)
    return out


def _empty() -> Any:
    from google.protobuf.empty_pb2 import Empty

    return Empty()


def _masked(job: Any, mask: Optional[FieldMask], cls: Any) -> Any:
    if mask is None:
        return _copy(job)
    out = cls()
    mask.MergeMessage(job, out)
    return out


def _check_labels(labels: Any) -> None:
    """The label rules of `_vertex_facts`, as the service applies them."""
    if len(labels) > MAX_LABELS:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_LABELS} labels, got {len(labels)}")
    for key, value in labels.items():
        problem = label_problem(key, value)
        if problem:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid label {key}={value}: {problem}")


def _required(field: str) -> str:
    """Vertex's wording for a REQUIRED field left empty."""
    return f"List of found errors:\t1.Field: {field}; Message: Required field is not set.\t"


def _check_job_spec(spec: Any, where: str) -> None:
    """The CustomJobSpec rules of `_vertex_facts` (boot disks, TensorBoard, FLEX_START), as the service applies
    them on create; always on, so a spec that skipped our client checks still fails here as on Vertex."""
    _check_pools(spec, where)
    pools = [(i, pool) for i, pool in enumerate(spec.worker_pool_specs) if pool.replica_count]
    for i, pool in pools:
        machine = pool.machine_spec
        wrong = machine_problem(machine.machine_type, _accelerator(machine), machine.accelerator_count)
        if wrong:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.worker_pool_specs[{i}].machine_spec.{wrong[0]}: {wrong[1]}")
        # EnvVar.name (env_var.proto) "Must be a valid C identifier"; ContainerSpec.env "Maximum limit is 100"
        env = env_problem([var.name for var in pool.container_spec.env])
        if env:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.worker_pool_specs[{i}].container_spec.env: {env[1]}")
        problem = boot_disk_problem(machine.machine_type, pool.disk_spec.boot_disk_type)
        if problem:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"{where}.worker_pool_specs[{i}].disk_spec.boot_disk_type: {problem}")
    for i, pool in pools:
        if pool.HasField("python_package_spec"):
            _check_python_package(pool.python_package_spec, f"{where}.worker_pool_specs[{i}].python_package_spec")
    if spec.tensorboard and not spec.service_account:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.service_account: {TENSORBOARD_NEEDS_SERVICE_ACCOUNT}")
    strategy = spec.scheduling.DESCRIPTOR.fields_by_name["strategy"].enum_type.values_by_number.get(
        spec.scheduling.strategy)
    if strategy is not None and strategy.name == "FLEX_START":
        machines = [(p.machine_spec.machine_type, _accelerator(p.machine_spec), p.machine_spec.accelerator_count)
                    for _, p in pools]
        timeout = spec.scheduling.timeout.ToTimedelta().total_seconds() if spec.scheduling.HasField("timeout") else None
        problem = flex_start_problem(machines, timeout)
        if problem:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.scheduling.strategy: {problem}")


# custom_job.proto PythonPackageSpec: executor_image_uri, package_uris and python_module are REQUIRED; "You
# must use an image from this list" (the prebuilt training images); packages are Cloud Storage URIs, "at most
# 100". A pool with both container_spec and python_package_spec cannot reach here: they are the one-of `task`
# of WorkerPoolSpec, which the client's JSON parser refuses and the wire format cannot hold at once.


def _check_python_package(spec: Any, where: str) -> None:
    for required in ("executor_image_uri", "package_uris", "python_module"):
        if not getattr(spec, required):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, _required(f"{where}.{required}"))
    if training_image(spec.executor_image_uri) is None:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.executor_image_uri: {not_prebuilt_message(spec.executor_image_uri)}")
    if len(spec.package_uris) > MAX_PACKAGE_URIS:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                     f"{where}.package_uris: at most {MAX_PACKAGE_URIS} packages, got {len(spec.package_uris)}")
    for uri in spec.package_uris:
        if not _storage.is_gcs(uri) or not _storage.split_gcs(uri)[0] or not _storage.split_gcs(uri)[1]:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.package_uris: '{uri}' is not a Cloud Storage "
                                                           "URI (gs://BUCKET/PATH)")


def _error_code(state: str, error: str) -> int:
    """google.rpc.Code of a job's error: CANCELLED (1) for a cancel, DEADLINE_EXCEEDED (4) past its
    scheduling.timeout, else INVALID_ARGUMENT (3)."""
    if state == CANCELLED:
        return 1
    return DEADLINE_EXCEEDED_CODE if error.startswith(TIMEOUT_ERROR_PREFIX) else 3


def _check_display_name(name: str, kind: str) -> None:
    """custom_job.proto / hyperparameter_tuning_job.proto display_name: required, up to 128 characters."""
    if not name:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{kind}.display_name is required")
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                     f"{kind}.display_name can be up to {MAX_DISPLAY_NAME_LENGTH} characters long, got {len(name)}")


def _check_pools(spec: Any, where: str) -> None:
    """The worker pools' shape: at most 4 pools, a chief pool of one replica, an image for every container, a
    Cloud Storage base output directory."""
    pools = spec.worker_pool_specs
    if len(pools) > MAX_WORKER_POOLS:  # custom_job.proto worker_pool_specs: chief, workers, servers, evaluators
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                     f"{where}.worker_pool_specs: at most {MAX_WORKER_POOLS} worker pools, got {len(pools)}")
    if pools and pools[0].replica_count != CHIEF_REPLICAS:  # distributed-training: "set the replica count to 1"
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{where}.worker_pool_specs[0].replica_count: the first "
                     f"worker pool is the primary replica and must have {CHIEF_REPLICAS}, got {pools[0].replica_count}")
    for i, pool in enumerate(pools):
        # custom_job.proto ContainerSpec.image_uri: "Required. The URI of a container image"
        if pool.replica_count and pool.WhichOneof("task") in ("container_spec", None) and not pool.container_spec.image_uri:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, _required(f"{where}.worker_pool_specs[{i}].container_spec.image_uri"))
    prefix = spec.base_output_directory.output_uri_prefix
    if spec.HasField("base_output_directory") and not _storage.is_gcs(prefix):
        # io.proto GcsDestination.output_uri_prefix: "Google Cloud Storage URI to output directory"
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                     f"{where}.base_output_directory.output_uri_prefix must be a gs:// URI, got '{prefix}'")


# The input fields the emulator models, by path from the job (a repeated or map field's path names its items).
# A field outside them is refused on Create rather than silently ignored: a spec relying on a field the
# stand-in does not honour would pass here and differ on Vertex. To model a new field, add its path here (a
# path accepts the whole message under it). Some fields are accepted because they mean nothing locally
# (marked "no local effect"): a service account, a VPC, web access, retries and restarts of machines.
JOB_SPEC_FIELDS = frozenset({
    "worker_pool_specs.machine_spec.machine_type", "worker_pool_specs.machine_spec.accelerator_type",
    "worker_pool_specs.machine_spec.accelerator_count", "worker_pool_specs.replica_count",
    "worker_pool_specs.container_spec.image_uri", "worker_pool_specs.container_spec.command",
    "worker_pool_specs.container_spec.args", "worker_pool_specs.container_spec.env",
    "worker_pool_specs.disk_spec.boot_disk_type", "worker_pool_specs.disk_spec.boot_disk_size_gb",
    # run as a Python package on a prebuilt image (issue 19's pythonPackageSpec)
    "worker_pool_specs.python_package_spec",
    "scheduling.timeout", "scheduling.strategy", "base_output_directory.output_uri_prefix",
    # no local effect
    "scheduling.restart_job_on_worker_restart", "scheduling.max_wait_duration", "scheduling.disable_retries",
    "service_account", "network", "tensorboard", "enable_web_access",
})  # fmt: skip
CUSTOM_JOB_FIELDS = frozenset({"display_name", "labels", *(f"job_spec.{p}" for p in JOB_SPEC_FIELDS)})
TUNING_JOB_FIELDS = frozenset({
    "display_name", "labels", "study_spec", "max_trial_count", "parallel_trial_count", "max_failed_trial_count",
    *(f"trial_job_spec.{p}" for p in JOB_SPEC_FIELDS),
})  # fmt: skip


def _check_modeled(message: Any, modeled: AbstractSet[str], where: str, prefix: str = "") -> None:
    """Refuse (INVALID_ARGUMENT) a set field whose path is not in `modeled` and under no modeled path."""
    for descriptor, value in message.ListFields():
        path = f"{prefix}{descriptor.name}"
        if path in modeled:
            continue
        nested = descriptor.message_type is not None and not descriptor.message_type.GetOptions().map_entry
        if not nested or not any(m.startswith(f"{path}.") for m in modeled):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"emulator: {where}.{path} is not modeled here; it would be ignored, unlike on Vertex")
        items = value if repeated(descriptor) else [value]
        for item in items:
            _check_modeled(item, modeled, where, f"{path}.")


def repeated(descriptor: Any) -> bool:
    """Whether a protobuf field is repeated: protobuf 7 has only `is_repeated`, releases before 5.29 only `label`."""
    flag = getattr(descriptor, "is_repeated", None)
    return bool(flag) if flag is not None else bool(descriptor.label == descriptor.LABEL_REPEATED)


def _accelerator(machine_spec: Any) -> str:
    """A MachineSpec's accelerator_type by name, "" for none."""
    if not machine_spec.accelerator_type:
        return ""
    return str(machine_spec.DESCRIPTOR.fields_by_name["accelerator_type"].enum_type.values_by_number[
        machine_spec.accelerator_type].name)


_Term = Tuple[bool, str, str, str]


def _parse_filter(text: str) -> List[List[_Term]]:
    """The filter of ListCustomJobsRequest (job_service.proto; AIP-160): terms `[NOT] field op value` on labels.*,
    state, display_name and create_time (RFC 3339, with < <= > >= too), joined by AND and OR; as AIP-160 says,
    OR binds tighter than AND. Returns the AND of ORs. Parentheses are not supported: refused, not misread."""
    if not text.strip():
        return []
    conjunction = []
    for clause in re.split(r"\s+AND\s+", text.strip()):
        either = []
        for part in re.split(r"\s+OR\s+", clause.strip()):
            match = _FILTER_TERM.match(part.strip())
            if match is None:
                raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"emulator: unsupported filter term '{part}' in '{text}'")
            negate, key, op, quoted, bare = match.groups()
            value = quoted.replace('\\"', '"') if quoted is not None else bare
            either.append((bool(negate), key, op, value))
        conjunction.append(either)
    return conjunction


def _compare_time(actual_ns: int, op: str, value: str) -> bool:
    """create_time `op` an RFC 3339 timestamp (job_service.proto: "create_time must be in RFC 3339 format")."""
    from google.protobuf.timestamp_pb2 import Timestamp

    wanted = Timestamp()
    try:
        wanted.FromJsonString(value)
    except ValueError:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"create_time '{value}' is not an RFC 3339 timestamp") from None
    if op == ":":
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "create_time supports = != < <= > >=, not ':'")
    other = wanted.ToNanoseconds()
    return {"=": actual_ns == other, "!=": actual_ns != other, "<": actual_ns < other, "<=": actual_ns <= other,
            ">": actual_ns > other, ">=": actual_ns >= other}[op]


def project_number(project: str) -> str:
    """The number in the resource names Vertex returns for `project` (they name a project by its number, e.g.
    "name": "projects/PROJECT_NUMBER/locations/LOCATION/customJobs/CUSTOM_JOB_ID" in
    https://cloud.google.com/vertex-ai/docs/training/create-custom-job): a number stays, an id gets a stable
    12-digit number of its own, as a real project has one fixed number."""
    if project.isdigit():
        return project
    return str(10**11 + zlib.crc32(project.encode()) % (9 * 10**11))


def by_number(name: str) -> str:
    """`name` (projects/{id or number}/...) with the project's number."""
    parts = name.split("/")
    if len(parts) > 1 and parts[0] == "projects":
        parts[1] = project_number(parts[1])
    return "/".join(parts)


_FUSE_POLL_S = 0.25


class _FuseStandin:
    """Cloud Storage FUSE's close-to-publish rule over the plain directory that stands in for /gcs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()  # as /proc/<pid>/fd names the files
        self._published: Dict[Path, Tuple[int, int]] = {}
        self._lost: Dict[Path, Tuple[int, int]] = {}  # the version a killed process left open: never uploaded
        self._holders: Dict[Path, Set[int]] = {}  # open file -> session ids holding it, at the last look
        self._lock = threading.RLock()
        self._broken = False

    def publish(self, poll: bool) -> None:
        """Upload every file that changed and that no process holds open; `poll` remembers who holds what."""
        with self._lock:
            if self._broken:
                return
            holders, exited = _open_files(self.root)
            # A holder that has exited but is not reaped yet may have been killed: until its supervisor has said
            # so (`killed`, called before it reaps), what it held counts as still open, never as closed.
            for path, sessions in self._holders.items():
                if path not in holders and sessions & exited:
                    holders[path] = sessions & exited
            if poll:
                self._holders = holders
            for path in sorted(p for p in self.root.rglob("*") if p.is_file() and p not in holders):
                key = _version(path)
                if key is None or self._published.get(path) == key or self._lost.get(path) == key:
                    continue
                bucket, *parts = path.relative_to(self.root).parts
                try:
                    _storage.write_bytes(f"gs://{bucket}/{'/'.join(parts)}", path.read_bytes())
                except Exception as e:
                    log.warning("emulator: cannot copy the FUSE stand-in to gs://%s (%s); outputs stay in %s",
                                bucket, e, self.root)
                    self._broken = True
                    return
                self._published[path] = key

    def killed(self, session: int) -> None:
        """A signal ends the replica whose session is `session`: the files it holds open are lost."""
        with self._lock:
            now, _ = _open_files(self.root)
            for path in set(self._holders) | set(now):
                key = _version(path)
                if key is not None and session in self._holders.get(path, set()) | now.get(path, set()):
                    log.debug("emulator: %s was open when its process was killed: not uploaded", path)
                    self._lost[path] = key


def _version(path: Path) -> Optional[Tuple[int, int]]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _open_files(root: Path) -> Tuple[Dict[Path, Set[int]], Set[int]]:
    """Files under `root` that a process holds open -> the session ids of those processes, and the sessions of
    processes that have exited but are not reaped yet (Linux /proc)."""
    prefix = str(root) + os.sep
    found: Dict[Path, Set[int]] = {}
    exited: Set[int] = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found, exited
    for pid in pids:
        state, session = _stat(pid)
        if state == "Z":  # a zombie holds no files; its session may have lost some
            exited.add(session)
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.setdefault(Path(target), set()).add(session)
    return found, exited


def _stat(pid: str) -> Tuple[str, int]:
    """A process's state letter and session id; ("", -1) when it cannot be read."""
    fields = proc_stat(pid)
    return (fields[0], int(fields[3])) if fields else ("", -1)


def _set_fuse_env(pools: List[Dict[str, Any]], root: str) -> None:
    """Point each replica's FUSE root at the stand-in: outputs land there, gs:// I/O goes to the client (the
    Cloud Storage emulator's host, passed explicitly: jobs do not inherit the host's environment)."""
    storage_host = os.environ.get("STORAGE_EMULATOR_HOST")
    for pool in pools:
        if pool:
            program = pool["pythonPackageSpec"] if "pythonPackageSpec" in pool else pool.setdefault("containerSpec", {})
            env = program.setdefault("env", [])
            env.append({"name": _storage.FUSE_ROOT_ENV, "value": root})
            if storage_host:
                env.append({"name": "STORAGE_EMULATOR_HOST", "value": storage_host})


@contextlib.contextmanager
def running(
    workdir: Path, knobs: Optional[Knobs] = None, max_running: Optional[int] = None, port: int = 0
) -> Iterator[JobServiceEmulator]:
    """An emulator serving on loopback for the duration of the block; `.address` is its HOST:PORT."""
    emulator = JobServiceEmulator(workdir, knobs, max_running)
    emulator.start(port)
    try:
        yield emulator
    finally:
        emulator.stop()


class StorageEmulator:
    """gcp-storage-emulator in this process, in memory, on a loopback port; `host` is for STORAGE_EMULATOR_HOST."""

    def __init__(self, port: int = 0, buckets: Sequence[str] = ()) -> None:
        from gcp_storage_emulator.server import create_server

        self._server = create_server("127.0.0.1", port, in_memory=True)
        self._server.start()
        bound = self._server._api._httpd.server_address[1]  # the library does not expose the bound port
        self.host = f"http://127.0.0.1:{bound}"
        for bucket in buckets:
            self.create_bucket(bucket)

    def create_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers import buckets

        buckets.create_bucket(name, self._server._storage)

    def stop(self) -> None:
        self._server.stop()
