"""Vertex's CLUSTER_SPEC -> the environment torch.distributed and PyTorch Lightning read (no torch import).

Vertex tells every replica the whole cluster and its own place in it:
`{"cluster": {"workerpool0": ["host:port"], "workerpool1": [...], ...}, "task": {"type": "workerpool1",
"index": 0}, ...}`. PyTorch wants `MASTER_ADDR`/`MASTER_PORT` (where rank 0 listens), `WORLD_SIZE` and
`RANK`; Lightning's default `LightningEnvironment` reads `MASTER_ADDR`, `MASTER_PORT`, `NODE_RANK` and
`LOCAL_RANK` and derives world size and rank from the Trainer's `num_nodes` and `devices`.

The process group is the chief (workerpool0) followed by the workers (workerpool1), in index order: the
same world Vertex's prebuilt PyTorch images describe (rank 0 = the chief, then the workers). workerpool2
holds parameter servers or Vertex's Reduction Server, and workerpool3 evaluators: neither runs a DDP
training loop (the Reduction Server is a separate image that all-reduces over NCCL for the workers), so
their replicas get nothing here and a task there runs as a single process.

How many processes a replica runs depends on its machine, which CLUSTER_SPEC's `job` (the job spec, as
JSON) tells: `machineSpec.acceleratorCount` of the replica's pool.

- At most one accelerator per replica (CPU or one GPU): one process per replica. Every member gets its
  global `RANK`, `WORLD_SIZE` = the number of replicas and `LOCAL_RANK=0`, which tells Lightning the
  processes are launched externally: a Trainer uses `devices=1`, `num_nodes=<replicas>`.
- More than one accelerator on a training replica: one process per device, started by the framework the
  way `torchrun` and Lightning's own launcher do. The replica gets only node-level values: `MASTER_ADDR`,
  `MASTER_PORT`, `NODE_RANK` and `WORLD_SIZE` = the processes of all replicas. `LOCAL_RANK` and `RANK` stay
  unset: Lightning's `LightningEnvironment` treats a set `LOCAL_RANK` as "launched externally" and would run
  one process on an 8-GPU machine, and `TORCHELASTIC_RUN_ID` would select its TorchElasticEnvironment,
  which expects every rank variable. With `Trainer(num_nodes=<replicas>, devices=<per replica>)`,
  Lightning spawns the replica's other processes and derives each one's rank (node rank x devices + local).

In both cases `GROUP_WORLD_SIZE` (nodes) and `LOCAL_WORLD_SIZE` (processes on this replica) are set, with
torchrun's meaning, so one Trainer config fits both: `num_nodes=GROUP_WORLD_SIZE, devices=LOCAL_WORLD_SIZE`.

Values already in the environment win: Vertex's prebuilt PyTorch images set `MASTER_ADDR`, `MASTER_PORT`,
`WORLD_SIZE` and `RANK` themselves, and a user may set any of them in the job's `env`.
"""
import json
from typing import Any, Dict, List, Mapping, Optional

from ._vertex_facts import cluster_spec, split_address

# The pools whose replicas join the process group, in rank order.
TRAINING_POOLS = ("workerpool0", "workerpool1")


def torch_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """Variables to add to this replica's environment; empty outside a multi-replica job."""
    spec = cluster_spec(environ)
    cluster = spec.get("cluster", {})
    members = [addr for pool in TRAINING_POOLS for addr in cluster.get(pool, [])]
    if len(members) < 2:
        return {}
    task = spec.get("task") or {}
    rank = _rank(task, cluster)
    if rank is None:
        return {}  # a parameter server or evaluator: not part of the process group
    host, port = split_address(members[0], "CLUSTER_SPEC address")
    processes = processes_per_replica(spec)
    local = processes[str(task.get("type"))]
    computed = {
        "MASTER_ADDR": host,
        "MASTER_PORT": str(port),
        # the node rank follows a RANK Vertex set (its PyTorch images set one per replica)
        "NODE_RANK": environ.get("RANK", str(rank)),
        "WORLD_SIZE": str(sum(processes[pool] * len(cluster.get(pool, [])) for pool in TRAINING_POOLS)),
        "GROUP_WORLD_SIZE": str(len(members)),
        "LOCAL_WORLD_SIZE": str(local),
    }
    if max(processes.values()) == 1:  # one process per replica: it is the whole node, launched by Vertex
        computed.update(RANK=str(rank), LOCAL_RANK="0")
    return {name: value for name, value in computed.items() if name not in environ}


def processes_per_replica(spec: Mapping[str, Any]) -> Dict[str, int]:
    """Training pool -> processes each of its replicas runs: one per accelerator, at least one.

    CLUSTER_SPEC's `job` is the job spec as a JSON string (a trial's job spec in a tuning trial), its
    worker pools in pool order; both REST (camelCase) and proto (snake_case) field names are read, since
    Vertex's documentation shows neither. No job spec (older or hand-made) means one process per replica.
    """
    pools = _field(_job_spec(spec), "workerPoolSpecs", "worker_pool_specs") or []
    counts = {}
    for i, name in enumerate(TRAINING_POOLS):
        machine = _field(pools[i], "machineSpec", "machine_spec") if i < len(pools) and pools[i] else None
        count = _field(machine, "acceleratorCount", "accelerator_count") if machine else None
        counts[name] = max(1, int(count or 0))
    return counts


def _job_spec(spec: Mapping[str, Any]) -> Any:
    job = spec.get("job") or {}
    if isinstance(job, str):
        try:
            return json.loads(job)
        except json.JSONDecodeError as e:
            raise ValueError(f"CLUSTER_SPEC's job is not JSON: {e}") from e
    return job


def _field(message: Any, camel: str, snake: str) -> Any:
    return message.get(camel, message.get(snake)) if isinstance(message, dict) else None


def _rank(task: Mapping[str, Any], cluster: Mapping[str, List[str]]) -> Optional[int]:
    """This replica's rank in the process group; None for a replica of another pool."""
    pool, index = task.get("type"), task.get("index", 0)
    if pool not in TRAINING_POOLS:
        if pool is None:
            # A member that cannot find itself would leave the others waiting for it until timeout.
            raise ValueError("CLUSTER_SPEC has a cluster but no task.type: cannot tell this replica's rank")
        return None
    index = int(index)
    if not 0 <= index < len(cluster.get(pool, [])):
        raise ValueError(f"CLUSTER_SPEC task {pool}[{index}] is not in its cluster")
    before = sum(len(cluster.get(p, [])) for p in TRAINING_POOLS[: TRAINING_POOLS.index(pool)])
    return before + index
