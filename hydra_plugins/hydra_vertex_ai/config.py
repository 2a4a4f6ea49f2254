"""Structured configs of the `vertex_ai` launcher and the `vertex_vizier` sweeper, and their registration.

Choice fields are Enums: OmegaConf refuses a typo when the config is composed, naming the key. They are `str`
Enums compared by value: Hydra's plugin scan re-executes this module, so a member's class may be a newer copy.
"""
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from . import _inherit, _optuna_port
from ._lazy_store import store_lazily


class BackendKind(str, Enum):
    """Where jobs run."""

    local = "local"
    vertex = "vertex"


class Strategy(str, Enum):
    """Vertex's Scheduling.Strategy: how machines are provisioned."""

    STANDARD = "STANDARD"
    SPOT = "SPOT"
    FLEX_START = "FLEX_START"


class Goal(str, Enum):
    minimize = "minimize"
    maximize = "maximize"


class Algorithm(str, Enum):
    bayesian = "bayesian"
    grid = "grid"
    random = "random"


class MeasurementSelection(str, Enum):
    last = "last"
    best = "best"


class EarlyStopping(str, Enum):
    none = "none"
    median = "median"
    decay_curve = "decay_curve"


@dataclass
class WorkerPoolConf:
    """The machines of one Vertex worker pool."""

    # Compute Engine machine type of every replica, e.g. n1-standard-8, a2-highgpu-1g
    machine_type: str = "n1-standard-4"
    # Vertex AcceleratorType, e.g. NVIDIA_TESLA_T4, NVIDIA_L4; None for a CPU-only pool
    accelerator_type: Optional[str] = None
    # accelerators attached to each replica (needs accelerator_type)
    accelerator_count: int = 0
    # replicas in this pool
    replica_count: int = 1
    # boot disk type: pd-ssd, pd-standard or hyperdisk-balanced; None lets Vertex pick the machine's default
    boot_disk_type: Optional[str] = None
    # boot disk size in GB
    boot_disk_size_gb: int = 100
    # container image of this pool; None uses the job's image_uri
    image_uri: Optional[str] = None
    # worker_pools only: this pool's command instead of our entry; [] runs its image's ENTRYPOINT (Reduction Server)
    command: Optional[List[str]] = None
    # worker_pools only: arguments of that command (needs command); None passes none
    args: Optional[List[str]] = None


@dataclass
class SchedulingConf:
    """When and how Vertex runs the job."""

    # maximum run time in seconds before Vertex cancels the job; None keeps Vertex's 7 days
    timeout_s: Optional[int] = None
    # restart the whole job when a worker restarts, instead of that worker alone
    restart_job_on_worker_restart: bool = False
    # provisioning: on demand (STANDARD), preemptible and cheaper (SPOT) or queued (FLEX_START); None = STANDARD
    strategy: Optional[Strategy] = None
    # FLEX_START only: seconds to wait for resources before giving up
    max_wait_duration_s: Optional[int] = None
    # fail at the first error instead of letting Vertex retry the job
    disable_retries: bool = False


@dataclass
class JobSpecConf(WorkerPoolConf):
    """One Vertex CustomJob: the launcher's jobs and the sweeper's trials are built from it.

    The machine fields inherited from WorkerPoolConf describe the chief pool (workerpool0); with
    replica_count > 1 the extra replicas of the same machine form workerpool1, as in the Vertex SDK.
    """

    # container image every pool runs unless it names its own; None runs a pythonPackageSpec on a prebuilt image
    image_uri: Optional[str] = None
    # without image_uri: the Vertex prebuilt training image the packages run on; None picks one for the app
    executor_image_uri: Optional[str] = None
    # without image_uri: pip requirements, a list or a file's path; None: the snapshot root's requirements.txt/pyproject
    requirements: Optional[Any] = None
    # explicit pools after the chief: workerpool1 (workers), 2 (parameter servers), 3 (evaluators)
    worker_pools: List[WorkerPoolConf] = field(default_factory=list)
    # service account the job runs as; None uses Vertex's default custom-code service agent
    service_account: Optional[str] = None
    # VPC network to peer with, projects/{project_number}/global/networks/{network}
    network: Optional[str] = None
    # environment variables set in every container
    env: Dict[str, str] = field(default_factory=dict)
    # labels added to every job (lowercase letters, digits, _ and -; keys start with a letter)
    labels: Dict[str, str] = field(default_factory=dict)
    # timeout, restarts and provisioning strategy
    scheduling: SchedulingConf = field(default_factory=SchedulingConf)
    # gs:// prefix for AIP_MODEL_DIR & co (<prefix>/<sweep id>/<job or trial>); None puts it under staging_dir
    base_output_dir: Optional[str] = None
    # Vertex TensorBoard resource the job streams to, projects/.../tensorboards/...
    tensorboard: Optional[str] = None
    # interactive shell access to the running containers (Vertex web access)
    enable_web_access: bool = False
    # seconds between copies of the Hydra output dir from local disk to the FUSE mount; 0: write on the mount
    output_sync_s: float = 60.0


@dataclass
class SnapshotConf:
    """The application's own source, shipped to the container (user modules travel by reference)."""

    # ship the source; turn off for images that already contain the code
    enabled: bool = True
    # folder to ship; None = the git work tree holding the app (its git-tracked and unignored files), else its folder
    root: Optional[str] = None
    # glob patterns (relative paths) to ship only; empty ships everything not excluded
    include: List[str] = field(default_factory=list)
    # glob patterns matched against relative paths and each path component; never shipped (config files excepted)
    exclude: List[str] = field(
        default_factory=lambda: [
            ".git", "outputs", "multirun", ".vertex_ai", "lightning_logs", "__pycache__", "*.pyc", ".venv",
            "venv", "*.ckpt", "*.pt", "*.pth", "*.safetensors",
        ]
    )
    # fail before submission when the packed source is larger than this many MB
    max_size_mb: float = 50.0


@dataclass
class VertexBackendConf:
    """Where jobs run and where their files are staged; shared by the launcher and the sweeper."""

    # local: run the job specs as local processes; vertex: submit them to Vertex AI
    backend: BackendKind = BackendKind.local
    # GCP project; None reads GOOGLE_CLOUD_PROJECT or gcloud's default
    project: Optional[str] = None
    # Vertex AI region
    location: str = "us-central1"
    # HOST:PORT of another JobService endpoint (the emulator); loopback hosts use plain-text gRPC
    api_endpoint: Optional[str] = None
    # payloads, results and logs go here: a gs:// URI on vertex, any local directory on local
    staging_dir: str = "${hydra.sweep.dir}/.vertex_ai"
    # print the job specs as JSON and run nothing
    dry_run: bool = False
    # the machines, image and settings of every job
    job: JobSpecConf = field(default_factory=JobSpecConf)
    # the application's source shipped with every job, staged once per content hash
    snapshot: SnapshotConf = field(default_factory=SnapshotConf)
    # jobs of a sweep running at once; None = CPU cores (local), no limit (vertex: the next is created as one ends)
    max_parallel: Optional[int] = None
    # local backend: host variables a job sees besides Vertex's, job.env and the documented few (PATH, HOME, ...)
    local_env_passthrough: List[str] = field(default_factory=list)
    # local backend: jobs forked from a warm parent that imported their packages, trials derive verified configs (false: as on Vertex)
    local_warm_start: bool = True
    # vertex backend: seconds between two status polls of the whole sweep
    poll_interval_s: float = 15.0
    # vertex backend: job creations per minute (Vertex allows about 60 per region)
    create_rate_per_minute: int = 60
    # vertex backend: first backoff of a retried API call, in seconds (doubles with jitter, at most 60 s)
    retry_initial_s: float = 1.0
    # vertex backend: stop retrying one API call (or a Cloud Storage read) after this many seconds; nothing is cancelled
    retry_timeout_s: float = 600.0
    # vertex backend: copy every file of each job's output dir from the bucket into the local sweep dir at the end
    sync_outputs: bool = True
    # vertex backend: files larger than this (MB) stay in the bucket; the end of the sweep says how many and where
    sync_outputs_max_mb: float = 20.0
    # vertex backend: only files matching one of these globs come back (on the path below the sweep dir or the name)
    sync_outputs_include: List[str] = field(default_factory=list)
    # vertex backend: files matching one of these globs stay in the bucket, e.g. ["*.ckpt", "*/wandb/*"]
    sync_outputs_exclude: List[str] = field(default_factory=list)


@dataclass
class VertexAILauncherConf(VertexBackendConf):
    _target_: str = "hydra_plugins.hydra_vertex_ai.vertex_ai_launcher.VertexAILauncher"
    # re-attach to an earlier run of the same command: its sweep id or manifest path; existing jobs are not re-created
    attach: Optional[str] = None
    # false: submit the jobs, print how to follow and collect them, and return without waiting (status UNKNOWN)
    wait: bool = True


# job.env accepts new names: `hydra.launcher.job.env.NAME=value` needs no `+`
store_lazily("hydra/launcher", "vertex_ai", VertexAILauncherConf, open_dicts=["job.env"])


@dataclass
class VertexVizierSweeperConf(VertexBackendConf):
    """One Vertex HyperparameterTuningJob (Vizier) for a whole Hydra sweep; `job` is the trial machine."""

    _target_: str = "hydra_plugins.hydra_vertex_ai.vertex_vizier_sweeper.VertexVizierSweeper"
    # Optuna's sampler group, empty: a ported `override hydra/sweeper/sampler: tpe` composes (see _optuna_port)
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": None}])
    # the name the objective is reported under (cloudml-hypertune tag); a task returning a dict is read at this key
    metric_id: str = "objective"
    # whether a better trial has a lower or a higher metric; unset: from direction
    goal: Goal = Goal.minimize
    # how Vertex picks trials; bayesian is Vertex's default; unset: from sampler
    algorithm: Algorithm = Algorithm.bayesian
    # trials in the whole study; unset: n_trials
    max_trial_count: int = 10
    # trials running at once; unset: n_jobs
    parallel_trial_count: int = 2
    # failed trials that fail the whole study; 0 lets Vertex decide (locally: fail only if every trial fails); unset: from max_failure_rate
    max_failed_trial_count: int = 0
    # which measurement of a trial counts
    measurement_selection: MeasurementSelection = MeasurementSelection.last
    # stop unpromising trials early from intermediate measurements (decay_curve: on Vertex only)
    early_stopping: EarlyStopping = EarlyStopping.none
    # search space as Hydra overrides, e.g. {model.lr: "tag(log, interval(1e-4, 1e-1))"}; the command line wins
    params: Dict[str, str] = field(default_factory=dict)
    # conditional parameters composition cannot see: {swept key: "parent=value" or "parent=choice(v1,v2)"}
    conditions: Dict[str, str] = field(default_factory=dict)
    # an existing tuning job to reattach to and collect instead of starting one: its resource name or the sweep id
    resume: Optional[str] = None
    # Optuna sweeper key of a ported config: becomes goal (unless goal is set); a list of directions is refused
    direction: Optional[Any] = None
    # Optuna sweeper key: becomes max_trial_count (unless that is set)
    n_trials: Optional[int] = None
    # Optuna sweeper key: becomes parallel_trial_count (unless that is set)
    n_jobs: Optional[int] = None
    # Optuna sweeper key: TPE (and none) becomes algorithm bayesian, random random, grid grid; seed seeds the local engine
    sampler: Optional[Dict[str, Any]] = None
    # Optuna sweeper key: not needed (the study lives in Vertex or the sweep dir); noted and ignored
    storage: Optional[Any] = None
    # Optuna sweeper key: not needed, as storage
    study_name: Optional[str] = None
    # Optuna sweeper key: becomes max_failed_trial_count, the first count of failed trials above that share of the study
    max_failure_rate: Optional[float] = None
    # Optuna sweeper key: refused (a Python function has no Vizier equivalent: write the space in params)
    custom_search_space: Optional[str] = None
    # Hydra builds the sweeper without instantiating what its settings name (an Optuna sampler's _target_)
    _recursive_: bool = False


# Unset keys read hydra.launcher's (with hydra/launcher=vertex_ai selected) and the Optuna keys: see the modules.
_inherit.register()
_optuna_port.register()
store_lazily("hydra/sweeper", "vertex_vizier", VertexVizierSweeperConf, open_dicts=["job.env", "conditions"],
             prepare=[_inherit.inherit_from_launcher, _optuna_port.read_optuna_keys])
