"""JobSpecConf -> Vertex CustomJob, in the REST/JSON shape (camelCase). Pure: no I/O, no SDK import.

The dict this module builds is the one thing every backend consumes: `dry_run` prints it, the vertex
backend parses it into the real `aiplatform_v1.CustomJob` proto, and the local backend executes it.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ._errors import ConfigError
from ._vertex_facts import (
    ACCELERATOR_TYPES,
    MAX_DISPLAY_NAME_LENGTH,
    MAX_LABELS,
    MAX_WORKER_POOLS,
    REDUCTION_SERVER_IMAGE,
    SYSTEM_LABELS,
    TENSORBOARD_NEEDS_SERVICE_ACCOUNT,
    boot_disk_problem,
    flex_start_problem,
    label_problem,
    machine_problem,
)
from .config import JobSpecConf, Strategy, WorkerPoolConf

ENTRY_MODULE = "hydra_plugins.hydra_vertex_ai.entry"
# The image's interpreter; the local backend runs the same command with this environment's python.
CONTAINER_PYTHON = "python"


@dataclass(frozen=True)
class PythonPackages:
    """Without an image: the packages a pythonPackageSpec installs, and the prebuilt images it runs on."""

    package_uris: Sequence[str]
    cpu_image: str
    gpu_image: str


@dataclass(frozen=True)
class Container:
    """What runs in every replica of a job: the entry module with its arguments."""

    args: Sequence[str]
    env: Mapping[str, str]
    # set: pools without their own image or command run these packages (pythonPackageSpec)
    packages: Optional[PythonPackages] = None


def validate(spec: JobSpecConf, key: str) -> None:
    """Raise ConfigError for the first setting Vertex would refuse. `key` is the spec's config path."""
    _validate_pool(spec, key, chief=True)
    _validate_pool_layout(spec, key)
    for i, pool in enumerate(spec.worker_pools):
        _validate_pool(pool, f"{key}.worker_pools[{i}]")
    _validate_labels(spec.labels, f"{key}.labels")
    _validate_scheduling(spec, f"{key}.scheduling")
    if spec.tensorboard and not spec.service_account:
        raise ConfigError(f"{key}.service_account", TENSORBOARD_NEEDS_SERVICE_ACCOUNT)
    if spec.output_sync_s < 0:
        raise ConfigError(f"{key}.output_sync_s", "must be 0 (write on the mount directly) or a positive interval")


def _validate_pool_layout(spec: JobSpecConf, key: str) -> None:
    """Vertex's pool positions: 0 the chief (one replica, by construction), 1 workers, 2 parameter or
    reduction servers, 3 evaluators; an empty pool ({}) only holds the place of a later one."""
    if spec.replica_count > 1 and spec.worker_pools:
        raise ConfigError(
            f"{key}.replica_count",
            "replica_count > 1 puts the extra replicas in workerpool1; with explicit worker_pools, "
            "keep replica_count=1 and give workerpool1 its replicas in worker_pools[0]",
        )
    if 1 + len(spec.worker_pools) > MAX_WORKER_POOLS:
        raise ConfigError(
            f"{key}.worker_pools",
            f"{1 + len(spec.worker_pools)} worker pools requested; Vertex allows at most "
            f"{MAX_WORKER_POOLS} (the chief, then workers, parameter servers and evaluators)",
        )
    last = len(spec.worker_pools) - 1
    if last >= 0 and spec.worker_pools[last].replica_count == 0:
        # A trailing {} holds no place: Vertex (and its SDK, which drops them) expects none.
        raise ConfigError(
            f"{key}.worker_pools[{last}].replica_count",
            f"workerpool{last + 1} is empty and no pool follows it; an empty pool is only a placeholder "
            "before a later pool: give it replicas or remove it",
        )


def _validate_pool(pool: WorkerPoolConf, key: str, chief: bool = False) -> None:
    if pool.replica_count < 0 or (pool.replica_count == 0 and chief):  # only a later pool may be an empty placeholder
        raise ConfigError(f"{key}.replica_count", f"must be at least 1, got {pool.replica_count}")
    if pool.replica_count and not (pool.machine_type or "").strip():
        # MachineSpec.machine_type is required for a pool with replicas (machine_resources.proto)
        raise ConfigError(f"{key}.machine_type", "a Compute Engine machine type is required, e.g. n1-standard-4")
    if pool.accelerator_type is not None and pool.accelerator_type not in ACCELERATOR_TYPES:
        raise ConfigError(
            f"{key}.accelerator_type",
            f"unknown accelerator '{pool.accelerator_type}'; expected one of {', '.join(ACCELERATOR_TYPES)}",
        )
    if pool.accelerator_count < 0:
        raise ConfigError(f"{key}.accelerator_count", "must not be negative")
    if pool.accelerator_count > 0 and pool.accelerator_type is None:
        raise ConfigError(
            f"{key}.accelerator_count",
            f"{pool.accelerator_count} accelerators requested without an accelerator_type",
        )
    if pool.accelerator_type is not None and pool.accelerator_count == 0:
        raise ConfigError(
            f"{key}.accelerator_count", f"accelerator_type {pool.accelerator_type} needs accelerator_count >= 1"
        )
    machine = machine_problem(pool.machine_type, pool.accelerator_type or "", pool.accelerator_count)
    if machine and pool.replica_count:
        raise ConfigError(f"{key}.{machine[0]}", machine[1])
    if pool.boot_disk_size_gb <= 0:
        raise ConfigError(f"{key}.boot_disk_size_gb", "must be positive")
    disk = boot_disk_problem(pool.machine_type, pool.boot_disk_type or "")
    if disk:
        raise ConfigError(f"{key}.boot_disk_type", disk)
    _validate_command(pool, key, chief)


def _validate_command(pool: WorkerPoolConf, key: str, chief: bool) -> None:
    """A pool runs our entry unless it names its own command; the chief always runs ours (it writes the result)."""
    if chief and pool.command is not None:
        raise ConfigError(f"{key}.command", "the chief runs the Hydra job itself; only worker_pools take a command")
    if pool.args is not None and pool.command is None:
        raise ConfigError(f"{key}.args", "args replace ours only with a command (command: [] for the image's own)")
    if pool.command is None and (pool.image_uri or "").startswith(REDUCTION_SERVER_IMAGE):
        raise ConfigError(
            f"{key}.command",
            "the Reduction Server image runs its own entrypoint, not our entry: set command: [] for this pool",
        )


def _validate_labels(labels: Mapping[str, str], key: str) -> None:
    if len(labels) + len(SYSTEM_LABELS) > MAX_LABELS:
        raise ConfigError(key, f"at most {MAX_LABELS - len(SYSTEM_LABELS)} user labels")
    for name, value in labels.items():
        if name in SYSTEM_LABELS:
            raise ConfigError(f"{key}.{name}", "is set by the launcher itself")
        problem = label_problem(str(name), str(value))
        if problem:
            raise ConfigError(f"{key}.{name}", problem)


def _validate_scheduling(spec: JobSpecConf, key: str) -> None:
    sched = spec.scheduling
    strategy = _strategy(spec)
    if sched.strategy is not None and strategy is None:
        raise ConfigError(f"{key}.strategy", f"'{sched.strategy}' is not one of {', '.join(s.value for s in Strategy)}")
    if sched.timeout_s is not None and sched.timeout_s <= 0:
        raise ConfigError(f"{key}.timeout_s", "must be positive")
    if sched.max_wait_duration_s is not None and strategy != Strategy.FLEX_START:
        raise ConfigError(f"{key}.max_wait_duration_s", "only applies with strategy=FLEX_START")
    if strategy == Strategy.FLEX_START:
        pools = [spec] + [p for p in spec.worker_pools if p.replica_count > 0]
        machines = [(p.machine_type, p.accelerator_type or "", p.accelerator_count) for p in pools]
        problem = flex_start_problem(machines, sched.timeout_s)
        if problem:
            raise ConfigError(f"{key}.strategy", problem)


def build_custom_job(
    spec: JobSpecConf,
    *,
    display_name: str,
    container: Container,
    labels: Mapping[str, str],
    base_output_dir: Optional[str],
) -> Dict[str, Any]:
    """The CustomJob resource (REST shape) that runs `container` on the machines of `spec`."""
    job_spec: Dict[str, Any] = {"workerPoolSpecs": _worker_pool_specs(spec, container)}
    scheduling = _scheduling(spec)
    if scheduling:
        job_spec["scheduling"] = scheduling
    if spec.service_account:
        job_spec["serviceAccount"] = spec.service_account
    if spec.network:
        job_spec["network"] = spec.network
    if base_output_dir:
        job_spec["baseOutputDirectory"] = {"outputUriPrefix": base_output_dir}
    if spec.tensorboard:
        job_spec["tensorboard"] = spec.tensorboard
    if spec.enable_web_access:
        job_spec["enableWebAccess"] = True
    return {
        "displayName": display_name[:MAX_DISPLAY_NAME_LENGTH],
        "jobSpec": job_spec,
        "labels": {**spec.labels, **labels},
    }


def _worker_pool_specs(spec: JobSpecConf, container: Container) -> List[Dict[str, Any]]:
    chief = _pool_spec(spec, spec.image_uri, container, replicas=1)
    pools = [chief]
    if spec.replica_count > 1:
        pools.append(_pool_spec(spec, spec.image_uri, container, replicas=spec.replica_count - 1))
    for pool in spec.worker_pools:
        pools.append(_pool_spec(pool, pool.image_uri or spec.image_uri, container, pool.replica_count))
    return pools


def _pool_spec(
    pool: WorkerPoolConf, image_uri: Optional[str], container: Container, replicas: int
) -> Dict[str, Any]:
    if replicas == 0:
        return {}  # Vertex's placeholder for an unused pool position
    machine: Dict[str, Any] = {"machineType": pool.machine_type}
    if pool.accelerator_type:
        machine["acceleratorType"] = pool.accelerator_type
        machine["acceleratorCount"] = pool.accelerator_count
    pool_spec: Dict[str, Any] = {
        "machineSpec": machine,
        "replicaCount": str(replicas),  # int64 is a string in proto3 JSON
        "diskSpec": _disk_spec(pool),
    }
    packages = container.packages
    if packages is not None and not image_uri and pool.command is None:
        # custom_job.proto PythonPackageSpec: Vertex installs package_uris on the executor image, then runs
        # `python -m python_module args`
        pool_spec["pythonPackageSpec"] = {
            "executorImageUri": packages.gpu_image if pool.accelerator_type else packages.cpu_image,
            "packageUris": list(packages.package_uris),
            "pythonModule": ENTRY_MODULE,
            "args": list(container.args),
            "env": [{"name": k, "value": str(v)} for k, v in container.env.items()],
        }
        return pool_spec
    container_spec: Dict[str, Any] = {
        "command": [CONTAINER_PYTHON, "-m", ENTRY_MODULE],
        "args": list(container.args),
        "env": [{"name": k, "value": str(v)} for k, v in container.env.items()],
    }
    if pool.command is not None:  # the pool's own program (a sidecar, the Reduction Server), not our entry
        container_spec["command"] = list(pool.command)
        container_spec["args"] = list(pool.args or [])
        for empty in [k for k in ("command", "args") if not container_spec[k]]:
            del container_spec[empty]  # none: the image's own ENTRYPOINT / CMD
    if image_uri:
        container_spec = {"imageUri": image_uri, **container_spec}
    pool_spec["containerSpec"] = container_spec
    return pool_spec


def _disk_spec(pool: WorkerPoolConf) -> Dict[str, Any]:
    """Only a disk type the user chose: unset, Vertex picks the machine's default (hyperdisk-balanced on A3U)."""
    disk: Dict[str, Any] = {"bootDiskSizeGb": pool.boot_disk_size_gb}
    if pool.boot_disk_type:
        disk = {"bootDiskType": pool.boot_disk_type, **disk}
    return disk


def _strategy(spec: JobSpecConf) -> Optional[Strategy]:
    """The provisioning strategy, from the Enum a composed config holds or its name (built in code)."""
    try:
        return None if spec.scheduling.strategy is None else Strategy(spec.scheduling.strategy)
    except ValueError:
        return None


def _scheduling(spec: JobSpecConf) -> Dict[str, Any]:
    sched = spec.scheduling
    out: Dict[str, Any] = {}
    if sched.timeout_s is not None:
        out["timeout"] = f"{sched.timeout_s}s"
    if sched.restart_job_on_worker_restart:
        out["restartJobOnWorkerRestart"] = True
    strategy = _strategy(spec)
    if strategy is not None:
        out["strategy"] = strategy.value
    if sched.max_wait_duration_s is not None:
        out["maxWaitDuration"] = f"{sched.max_wait_duration_s}s"
    if sched.disable_retries:
        out["disableRetries"] = True
    return out


def job_env(spec: JobSpecConf) -> Dict[str, str]:
    """The user's container environment, as strings; with the output sync interval when not the default."""
    from ._output_sync import DEFAULT_INTERVAL_S, SYNC_INTERVAL_ENV

    env = {str(k): str(v) for k, v in spec.env.items()}
    if float(spec.output_sync_s) != DEFAULT_INTERVAL_S:
        env.setdefault(SYNC_INTERVAL_ENV, f"{float(spec.output_sync_s):g}")
    return env
