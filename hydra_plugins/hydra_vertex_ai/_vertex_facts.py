"""What Vertex AI is, in one place: job states, label rules, machine facts, the container's environment.

The backends, the local backend, the container entry and the emulator all read these facts from here, so a
rule learned about Vertex is taught to every stand-in at once. Standard library only: the container entry
imports it.
"""
import ipaddress
import json
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

# --- job states: google/cloud/aiplatform/v1/job_state.proto -----------------------------------------------
QUEUED = "JOB_STATE_QUEUED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
PAUSED = "JOB_STATE_PAUSED"  # stalled until resumed: not done
EXPIRED = "JOB_STATE_EXPIRED"
PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, PARTIALLY_SUCCEEDED})
# Progress lines list states in the order a job moves through them.
STATE_ORDER = ("QUEUED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED",
               "EXPIRED", "PARTIALLY_SUCCEEDED")


def short_state(state: str) -> str:
    """`JOB_STATE_SUCCEEDED` -> `SUCCEEDED`, as users read it."""
    return state[len("JOB_STATE_"):] if state.startswith("JOB_STATE_") else state


def has_ended(state: str) -> bool:
    """Whether a job in `state` (full or short name) has ended."""
    return "JOB_STATE_" + short_state(state) in TERMINAL_STATES


# --- labels -----------------------------------------------------------------------------------------------
# custom_job.proto `labels`: "Label keys and values can be no longer than 64 characters"; Cloud's resource
# label rules say 63. The stricter reading wins: keys 1-63 characters starting with a lowercase letter,
# values 0-63, both of lowercase letters, digits, '_' and '-'; at most 64 labels.
MAX_LABEL_LENGTH = 63
MAX_LABELS = 64
_LABEL_KEY = re.compile(rf"^[a-z][a-z0-9_-]{{0,{MAX_LABEL_LENGTH - 1}}}$")
_LABEL_VALUE = re.compile(rf"^[a-z0-9_-]{{0,{MAX_LABEL_LENGTH}}}$")
# Labels the plugins set on every job: the sweep, the job's number in it, and a unique id per create.
SYSTEM_LABELS = ("hydra_sweep", "hydra_job", "hydra_uid")


def label_problem(key: str, value: str) -> Optional[str]:
    """Why Vertex would refuse the label `key=value`, or None."""
    if not _LABEL_KEY.match(key):
        return (f"label key '{key}' must be 1-{MAX_LABEL_LENGTH} lowercase letters, digits, '_' or '-', "
                "starting with a letter")
    if not _LABEL_VALUE.match(value):
        return f"label value '{value}' must be at most {MAX_LABEL_LENGTH} lowercase letters, digits, '_' or '-'"
    return None


def sanitize_label(text: str) -> str:
    """Any text as a valid label value (Hydra values never go into labels as they are)."""
    value = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return value[:MAX_LABEL_LENGTH]


# --- studies ----------------------------------------------------------------------------------------------
# StudySpec's automated stopping specs (study.proto `oneof automated_stopping_spec`), as REST field names.
STOPPING_SPECS = ("medianAutomatedStoppingSpec", "decayCurveStoppingSpec", "convexAutomatedStoppingSpec")


def stops_early(study_spec: Mapping[str, Any]) -> bool:
    """Whether a REST StudySpec has an automated stopping rule."""
    return any(k in study_spec for k in STOPPING_SPECS)


# --- machines ---------------------------------------------------------------------------------------------
# aiplatform_v1.AcceleratorType without UNSPECIFIED (a test keeps this list equal to the proto enum).
ACCELERATOR_TYPES = (
    "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
    "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB", "NVIDIA_B200", "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000",
    "TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD",
)  # fmt: skip
# CustomJobSpec.worker_pool_specs: the chief, workers, parameter (or reduction) servers, evaluators.
MAX_WORKER_POOLS = 4

# custom_job.proto CustomJob.display_name (and HyperparameterTuningJob's): "can be up to 128 characters long".
MAX_DISPLAY_NAME_LENGTH = 128
# https://cloud.google.com/vertex-ai/docs/training/distributed-training: "Use your first worker pool to configure
# your primary replica, and set the replica count to 1."
CHIEF_REPLICAS = 1

# DiskSpec.boot_disk_type (machine_resources.proto): "Valid values: pd-ssd, pd-standard or hyperdisk-balanced";
# "for A3U machines, the default value is hyperdisk-balanced", otherwise pd-ssd.
BOOT_DISK_TYPES = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
# Machine families whose boot disk must be hyperdisk-balanced. Settled: the proto's A3U (a3-ultragpu-*) default.
# Not settled publicly: that Vertex *refuses* pd-* there, and A4/A4X at all; Compute Engine documents these
# series as Hyperdisk-only, so the safe choice is taken: pd-* on them is refused, here and in the emulator.
HYPERDISK_ONLY_MACHINES = ("a3-ultragpu-", "a4-highgpu-", "a4x-highgpu-")


def boot_disk_problem(machine_type: str, disk_type: str) -> Optional[str]:
    """Why Vertex would refuse boot disk `disk_type` on `machine_type` (empty: Vertex's default), or None."""
    if not disk_type:
        return None
    if disk_type not in BOOT_DISK_TYPES:
        return f"boot disk type '{disk_type}' is not one of {', '.join(BOOT_DISK_TYPES)}"
    if machine_type.startswith(HYPERDISK_ONLY_MACHINES) and disk_type != "hyperdisk-balanced":
        return (f"machine type {machine_type} boots from hyperdisk-balanced only, not {disk_type} "
                "(leave boot_disk_type unset: Vertex picks the machine's default)")
    return None


# Which GPUs a machine type takes. Accelerator-optimized machine types come with a fixed GPU model and count
# (https://cloud.google.com/compute/docs/accelerator-optimized-machines), and Vertex's table of machine types for
# custom training pairs each with exactly that acceleratorType and acceleratorCount
# (https://cloud.google.com/vertex-ai/docs/training/configure-compute#gpu-compatibility-table). Other machines
# take GPUs only on N1, with the models and counts of https://cloud.google.com/compute/docs/gpus#n1-gpus, each
# count up to a number of vCPUs. TPU machine types and TPU accelerators are not checked here.
# The A-series count is the `-<N>g` suffix of the name (a2-megagpu-16g: 16).
GPU_MACHINE_FAMILIES = {
    "a2-highgpu-": "NVIDIA_TESLA_A100", "a2-megagpu-": "NVIDIA_TESLA_A100", "a2-ultragpu-": "NVIDIA_A100_80GB",
    "a3-highgpu-": "NVIDIA_H100_80GB", "a3-megagpu-": "NVIDIA_H100_MEGA_80GB", "a3-ultragpu-": "NVIDIA_H200_141GB",
    "a4-highgpu-": "NVIDIA_B200", "a4x-highgpu-": "NVIDIA_GB200",
}  # fmt: skip
# G2 and G4 are named by vCPUs: the GPU count per machine type.
GPU_MACHINES = {
    **{f"g2-standard-{cpus}": ("NVIDIA_L4", gpus) for cpus, gpus in
       ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8))},
    **{f"g4-standard-{cpus}": ("NVIDIA_RTX_PRO_6000", gpus) for cpus, gpus in ((48, 1), (96, 2), (192, 4), (384, 8))},
}  # fmt: skip
# N1: GPU model -> {count: the most vCPUs of an N1 machine with that many} (P100 x4: 96 in some zones, and
# Vertex picks the zone, so the larger bound is taken).
N1_GPUS = {
    "NVIDIA_TESLA_T4": {1: 48, 2: 48, 4: 96},
    "NVIDIA_TESLA_V100": {1: 12, 2: 24, 4: 48, 8: 96},
    "NVIDIA_TESLA_P100": {1: 16, 2: 32, 4: 96},
    "NVIDIA_TESLA_P4": {1: 24, 2: 48, 4: 96},
}
_A_SERIES_COUNT = re.compile(r"-(\d+)g$")
_N1_CPUS = re.compile(r"^n1-(?:standard|highmem|highcpu)-(\d+)$")


def gpus_of(machine_type: str) -> Optional[Tuple[str, int]]:
    """The (accelerator type, count) an accelerator-optimized machine type comes with; None for other machines."""
    if machine_type in GPU_MACHINES:
        return GPU_MACHINES[machine_type]
    for prefix, accelerator in GPU_MACHINE_FAMILIES.items():
        count = _A_SERIES_COUNT.search(machine_type)
        if machine_type.startswith(prefix) and count:
            return accelerator, int(count.group(1))
    return None


def _machines_with(accelerator: str) -> List[str]:
    """The machine types (or families, as `a3-highgpu-*`) that come with `accelerator`."""
    families = [f"{prefix}*" for prefix, gpu in GPU_MACHINE_FAMILIES.items() if gpu == accelerator]
    return families + [name for name, (gpu, _) in GPU_MACHINES.items() if gpu == accelerator]


def machine_problem(machine_type: str, accelerator: str, count: int) -> Optional[Tuple[str, str]]:
    """Why Vertex would refuse `count` x `accelerator` ("" for none) on `machine_type`, as (the MachineSpec
    field to change, the reason), or None."""
    if accelerator.startswith("TPU_"):
        return None
    if accelerator == "NVIDIA_TESLA_K80":  # MachineSpec.AcceleratorType: "Deprecated ... reached end of support"
        return "accelerator_type", "NVIDIA_TESLA_K80 has reached end of support on Google Cloud"
    fixed = gpus_of(machine_type)
    if fixed is not None:
        want, n = fixed
        if accelerator != want:
            return "accelerator_type", f"{machine_type} comes with {n} x {want}: set accelerator_type {want} " \
                                       f"and accelerator_count {n}, not {accelerator or 'none'}"
        if count != n:
            return "accelerator_count", f"{machine_type} comes with {n} x {want}: accelerator_count must be {n}, " \
                                        f"got {count}"
        return None
    if not accelerator:
        return None
    limits = N1_GPUS.get(accelerator)
    if limits is None:  # a GPU of the accelerator-optimized machines only
        return "machine_type", (f"{accelerator} comes only with its own machine types "
                                f"({', '.join(_machines_with(accelerator))}), not {machine_type}")
    if not machine_type.startswith("n1-"):
        return "machine_type", f"{accelerator} attaches only to N1 machine types (e.g. n1-standard-8), not {machine_type}"
    if count not in limits:
        return "accelerator_count", f"{accelerator} attaches to N1 in counts of {', '.join(map(str, limits))}, got {count}"
    cpus = _N1_CPUS.match(machine_type)
    if cpus and int(cpus.group(1)) > limits[count]:
        return "machine_type", (f"with {count} x {accelerator} an N1 machine has at most {limits[count]} vCPUs; "
                                f"{machine_type} has {cpus.group(1)}")
    return None


# Scheduling.Strategy FLEX_START (Dynamic Workload Scheduler), per
# https://cloud.google.com/vertex-ai/docs/training/schedule-jobs-dws: "requests L4, A100, H100, H200, or B200
# GPUs", "a maximum timeout of 7 days or less", "the same machine configuration for all worker pools".
# --- a job's running time: custom_job.proto Scheduling.timeout, "The maximum job running time. The default is
# 7 days." A job still running then is stopped and ends FAILED with google.rpc.Code DEADLINE_EXCEEDED (4,
# google/rpc/code.proto: "The deadline expired before the operation could complete").
DEADLINE_EXCEEDED_CODE = 4
TIMEOUT_ERROR_PREFIX = "The job ran longer than its scheduling.timeout"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)s$")


def duration_s(text: str) -> float:
    """Seconds of a google.protobuf.Duration in its JSON form ("7200s", "2.5s")."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a protobuf Duration such as '3600s'")
    return float(match.group(1))


def timeout_s(job_spec: Mapping[str, Any]) -> Optional[float]:
    """A REST CustomJobSpec's scheduling.timeout in seconds, None when unset."""
    timeout = job_spec.get("scheduling", {}).get("timeout")
    return None if timeout is None else duration_s(timeout)


def timeout_error(timeout: float) -> str:
    return f"{TIMEOUT_ERROR_PREFIX} of {timeout:g}s (DEADLINE_EXCEEDED): it was stopped"


FLEX_START_ACCELERATORS = (
    "NVIDIA_L4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB",
    "NVIDIA_H200_141GB", "NVIDIA_B200",
)  # fmt: skip
FLEX_START_MAX_TIMEOUT_S = 7 * 24 * 3600


def flex_start_problem(machines: List[Tuple[str, str, int]], timeout_s: Optional[float]) -> Optional[str]:
    """Why Vertex would refuse FLEX_START for pools of (machine type, accelerator, count), or None."""
    for machine, accelerator, _ in machines:
        if accelerator not in FLEX_START_ACCELERATORS:
            return (f"FLEX_START needs one of {', '.join(FLEX_START_ACCELERATORS)} GPUs in every worker pool; "
                    f"{machine} has {accelerator or 'none'}")
    if len(set(machines)) > 1:
        return ("FLEX_START needs the same machine configuration in every worker pool, got "
                + "; ".join(f"{m} {a} x{c}" for m, a, c in sorted(set(machines))))
    if timeout_s is not None and timeout_s > FLEX_START_MAX_TIMEOUT_S:
        return f"FLEX_START allows a timeout of at most 7 days ({FLEX_START_MAX_TIMEOUT_S}s), got {timeout_s:g}s"
    return None


# https://cloud.google.com/vertex-ai/docs/experiments/tensorboard-setup: "The Vertex AI TensorBoard integration
# with custom training requires attaching a service account" (the SDK's run(): "`service_account` is required
# with provided `tensorboard`").
TENSORBOARD_NEEDS_SERVICE_ACCOUNT = "tensorboard needs a service_account: Vertex streams the logs as that account"

# The Reduction Server image (distributed-training#reduce_training_time_with_reduction_server): its container
# runs the image's own entrypoint (the SDK sets image_uri only), in workerPoolSpecs[2].
REDUCTION_SERVER_IMAGE = "us-docker.pkg.dev/vertex-ai-restricted/training/reductionserver"

# --- the container's environment: https://cloud.google.com/vertex-ai/docs/training/code-requirements -----
JOB_ID_ENV = "CLOUD_ML_JOB_ID"
# (a trial's CLOUD_ML_TRIAL_ID and CLOUD_ML_HP_METRIC_FILE: in _metrics, which plugin discovery imports)
CLUSTER_SPEC_ENV = "CLUSTER_SPEC"
CHIEF_POOL = "workerpool0"


def output_dirs(base_output_dir: str) -> Dict[str, str]:
    """The AIP_* directories Vertex derives from a job's base output directory."""
    base = base_output_dir.rstrip("/")
    return {
        "AIP_MODEL_DIR": f"{base}/model/",
        "AIP_CHECKPOINT_DIR": f"{base}/checkpoints/",
        "AIP_TENSORBOARD_LOG_DIR": f"{base}/logs/",
    }


def expand_env(value: str, defined: Mapping[str, str]) -> str:
    """An EnvVar value as the container sees it (env_var.proto EnvVar.value, Kubernetes' rule): `$(NAME)` becomes
    the value of a variable defined before it, an unresolved reference stays as written, and `$$` is a
    literal `$`, so `$$(NAME)` is never expanded."""
    out: List[str] = []
    i = 0
    while i < len(value):
        char = value[i]
        if char != "$" or i + 1 == len(value):
            out.append(char)
            i += 1
        elif value[i + 1] == "$":
            out.append("$")
            i += 2
        elif value[i + 1] == "(" and ")" in value[i + 2:]:
            end = value.index(")", i + 2)
            name = value[i + 2:end]
            out.append(defined.get(name, f"$({name})"))
            i = end + 1
        else:
            out.append(char)
            i += 1
    return "".join(out)


def cluster_spec_json(cluster: Mapping[str, List[str]], task: Mapping[str, Any], job_spec: Mapping[str, Any]) -> str:
    """CLUSTER_SPEC as Vertex writes it: the whole cluster, this replica's task, and the job spec as JSON."""
    return json.dumps({"cluster": dict(cluster), "environment": "cloud", "task": dict(task), "job": json.dumps(job_spec)})


def cluster_spec(environ: Mapping[str, str]) -> Dict[str, Any]:
    """The parsed CLUSTER_SPEC of this replica; {} outside a Vertex job."""
    text = environ.get(CLUSTER_SPEC_ENV)
    if not text:
        return {}
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{CLUSTER_SPEC_ENV} is not JSON: {e}") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster", {}), dict):
        raise ValueError(f"{CLUSTER_SPEC_ENV} has no 'cluster' mapping: {text[:200]}")
    return spec


def replica_task(environ: Mapping[str, str]) -> Dict[str, Any]:
    """This replica's place in the job (`{"type": "workerpool1", "index": 0}`); a lone container is the chief."""
    task = cluster_spec(environ).get("task")
    return dict(task) if isinstance(task, dict) else {"type": CHIEF_POOL, "index": 0}


def is_chief(environ: Mapping[str, str]) -> bool:
    return replica_task(environ).get("type", CHIEF_POOL) == CHIEF_POOL


def split_address(address: str, what: str = "address") -> Tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port), the port checked to be a TCP port."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} '{address}' is not host:port (with a port from 1 to 65535)")
    return host.strip("[]"), int(port)


# --- endpoints --------------------------------------------------------------------------------------------
CONSOLE = "https://console.cloud.google.com"


def regional_endpoint(location: str) -> str:
    return f"{location}-aiplatform.googleapis.com"


def is_loopback(host: str) -> bool:
    """A loopback host: the only place an emulator (plain text, no credentials) may listen or be dialled."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_link(name: str) -> str:
    """The Cloud Console page of a CustomJob or HyperparameterTuningJob resource name.

    The shape the SDK prints (google/cloud/aiplatform/jobs.py `_Job._dashboard_uri`, 1.165): both kinds have
    `_job_type = "training"` and the console tells them apart by the numeric id."""
    parts = name.split("/")
    project, location, job_id = parts[1], parts[3], parts[-1]
    return f"{CONSOLE}/agent-platform/locations/{location}/training/{job_id}?project={project}"


def storage_browser_link(uri: str) -> str:
    """The Cloud Console's page of a gs:// folder (the Cloud Storage browser)."""
    return f"{CONSOLE}/storage/browser/{uri[len('gs://'):].rstrip('/')}"


def logging_filter(name: str) -> str:
    """The Cloud Logging query of a job's container logs."""
    return f'resource.type="ml_job" resource.labels.job_id="{name.split("/")[-1]}"'


def where(name: str) -> str:
    """Where a user looks at a job: its console page and its Cloud Logging query."""
    return f"{console_link(name)}\nCloud Logging filter: {logging_filter(name)}"


# --- quotas: https://cloud.google.com/vertex-ai/docs/quotas -------------------------------------------------
# Two different RESOURCE_EXHAUSTED (429) answers to a create. A *capacity* quota (accelerators or CPUs in
# use at once) names its metrics after this prefix; it frees up only when a job ends. Everything else (the
# 60-a-minute "Job or LRO submission requests" limit) is a *rate* limit, retried with backoff.
CAPACITY_QUOTA_PREFIX = "The following quota metrics exceed quota limits: "
_CAPACITY_METRIC = re.compile(r"aiplatform\.googleapis\.com/custom_model_training_[a-z0-9_]+")
# The per-minute create limit's metric (unit 1/min/{project}/{region}).
SUBMISSION_RATE_METRIC = "aiplatform.googleapis.com/job_or_lro_submission_requests"


def accelerator_quota_metric(accelerator_type: str) -> str:
    """The quota metric counting `accelerator_type` in use, e.g. NVIDIA_L4 -> ...custom_model_training_nvidia_l4_gpus.

    Seen forms: custom_model_training_nvidia_{l4,t4,v100,k80,a100,a100_80gb,h100,h200}_gpus, ..._tpu_v2."""
    name = accelerator_type.lower().replace("nvidia_tesla_", "nvidia_")
    name = re.sub(r"^(nvidia_h\d00)(_mega)?_\d+gb$", r"\1\2", name)  # H100_80GB, H200_141GB: memory not named
    suffix = "" if name.startswith("tpu") else "_gpus"
    return f"aiplatform.googleapis.com/custom_model_training_{name}{suffix}"


def capacity_quota_metrics(message: str) -> List[str]:
    """The capacity quota metrics a RESOURCE_EXHAUSTED message names; [] for a rate limit."""
    if CAPACITY_QUOTA_PREFIX not in message:
        return []
    return _CAPACITY_METRIC.findall(message.split(CAPACITY_QUOTA_PREFIX, 1)[1])


def quota_console_url(project: str) -> str:
    """Where a user sees and raises the project's quotas."""
    return f"{CONSOLE}/iam-admin/quotas?project={project}"


def cancel_command(name: str) -> str:
    """The gcloud command that cancels the CustomJob or HyperparameterTuningJob `name`."""
    parts = name.split("/")
    group = "custom-jobs" if parts[-2] == "customJobs" else "hp-tuning-jobs"
    return f"gcloud ai {group} cancel {parts[-1]} --region={parts[3]} --project={parts[1]}"


# --- conditional parameters: study.proto StudySpec.ParameterSpec.ConditionalParameterSpec -----------------
# A child is a full ParameterSpec (itself able to hold children: the message is recursive, and neither the proto
# nor the hyperparameter tuning docs set a depth limit) under one of three `parent_value_condition`s, each for
# one kind of parent; "All values must exist in" the parent's value spec, and DISCRETE matching uses "Epsilon
# ... 1e-10". DOUBLE parents have no condition: a DOUBLE cannot be a parent. Two children of one parent with the same
# id "must have disjoint parent_value_condition"; we emit one child per id, listing every activating value.
# REST: https://cloud.google.com/vertex-ai/docs/reference/rest/v1/StudySpec#ConditionalParameterSpec
PARENT_CONDITIONS = {
    "categoricalValueSpec": "parentCategoricalValues",
    "discreteValueSpec": "parentDiscreteValues",
    "integerValueSpec": "parentIntValues",
}
_VALUE_SPECS = ("doubleValueSpec", "integerValueSpec", "discreteValueSpec", "categoricalValueSpec")
DISCRETE_EPSILON = 1e-10


def value_spec_kind(spec: Mapping[str, Any]) -> Optional[str]:
    """Which `parameter_value_spec` a REST ParameterSpec holds (`doubleValueSpec`, ...), if any."""
    return next((kind for kind in _VALUE_SPECS if kind in spec), None)


def all_parameter_specs(specs: Optional[List[Mapping[str, Any]]]) -> List[Mapping[str, Any]]:
    """Every ParameterSpec of a study, children (`conditionalParameterSpecs`) after their parent, flattened."""
    flat: List[Mapping[str, Any]] = []
    for spec in specs or []:
        flat.append(spec)
        flat += all_parameter_specs([c.get("parameterSpec") or {} for c in spec.get("conditionalParameterSpecs") or []])
    return flat


def child_is_active(parent: Mapping[str, Any], conditional: Mapping[str, Any], value: Any) -> bool:
    """Whether a conditional child is active when its parent took `value` (a trial's value, as the API gives it)."""
    kind = value_spec_kind(parent)
    condition = conditional.get(PARENT_CONDITIONS.get(kind or "", ""), {}).get("values") or []
    return kind in PARENT_CONDITIONS and parent_value_matches(kind or "", value, condition)


def parent_value_matches(kind: str, value: Any, values: List[Any]) -> bool:
    """`value` is one of `values` of a parent of this kind (int64 values come as JSON strings)."""
    if kind == "categoricalValueSpec":
        return str(value) in [str(v) for v in values]
    if kind == "discreteValueSpec":
        return any(abs(float(value) - float(v)) <= DISCRETE_EPSILON for v in values)
    return float(value) in [float(int(v)) for v in values]


def conditional_spec_problem(specs: List[Mapping[str, Any]], where: str = "study_spec.parameters") -> Optional[str]:
    """What Vertex would refuse in the conditional specs of `specs` (REST shape), naming the field; None if fine."""
    for i, parent in enumerate(specs):
        children = parent.get("conditionalParameterSpecs") or []
        kind = value_spec_kind(parent)
        for j, conditional in enumerate(children):
            field = f"{where}[{i}].conditional_parameter_specs[{j}]"
            problem = _condition_problem(parent, kind, conditional, field)
            if problem:
                return problem
            child = conditional["parameterSpec"]
            problem = conditional_spec_problem([child], f"{field}.parameter_spec")
            if problem:
                return problem
    return None


def _condition_problem(parent: Mapping[str, Any], kind: Optional[str], conditional: Mapping[str, Any],
                       field: str) -> Optional[str]:
    if kind not in PARENT_CONDITIONS:
        return (f"{field}: parameter '{parent.get('parameterId')}' is not CATEGORICAL, DISCRETE or INTEGER, so it "
                "cannot be a parent")
    if not (conditional.get("parameterSpec") or {}).get("parameterId"):
        return f"{field}.parameter_spec is required"
    given = [name for name in PARENT_CONDITIONS.values() if name in conditional]
    expected = PARENT_CONDITIONS[kind]
    if given != [expected]:
        return f"{field}: a parent of this kind needs exactly {expected}, got {', '.join(given) or 'none'}"
    values = conditional[expected].get("values") or []
    if not values:
        return f"{field}.{expected}.values is required"
    outside = [v for v in values if not in_value_spec(parent, kind, v)]
    if outside:
        return (f"{field}.{expected}: {', '.join(map(str, outside))} not among the values of parent "
                f"'{parent.get('parameterId')}'")
    return None


def in_value_spec(parent: Mapping[str, Any], kind: str, value: Any) -> bool:
    """`value` is one of the values a parameter of this kind (a value spec key) may take."""
    spec = parent[kind]
    if kind != "integerValueSpec":
        return parent_value_matches(kind, value, spec.get("values") or [])
    # proto3 JSON leaves zero bounds out and writes int64 as strings
    return float(int(value)) == float(value) and int(spec.get("minValue", 0)) <= int(value) <= int(spec.get("maxValue", 0))
