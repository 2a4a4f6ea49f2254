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

One process per replica: every member gets `LOCAL_RANK=0`, which also tells Lightning the processes are
launched externally, so a Trainer must use `devices=1` and `num_nodes=WORLD_SIZE`.

Values already in the environment win: Vertex's prebuilt PyTorch images set `MASTER_ADDR`, `MASTER_PORT`,
`WORLD_SIZE` and `RANK` themselves, and a user may set any of them in the job's `env`.
"""
from typing import Any, Dict, List, Mapping, Optional

from ._vertex_facts import cluster_spec, split_address

# The pools whose replicas join the process group, in rank order.
TRAINING_POOLS = ("workerpool0", "workerpool1")


def torch_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """Variables to add to this replica's environment; empty outside a multi-replica job."""
    spec = cluster_spec(environ)
    members = [addr for pool in TRAINING_POOLS for addr in spec.get("cluster", {}).get(pool, [])]
    if len(members) < 2:
        return {}
    rank = _rank(spec.get("task") or {}, spec["cluster"])
    if rank is None:
        return {}  # a parameter server or evaluator: not part of the process group
    host, port = split_address(members[0], "CLUSTER_SPEC address")
    computed = {
        "MASTER_ADDR": host,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(len(members)),
        "RANK": str(rank),
        # one process per replica: the node rank is the global rank (and follows a RANK Vertex set)
        "NODE_RANK": environ.get("RANK", str(rank)),
        "LOCAL_RANK": "0",
    }
    return {name: value for name, value in computed.items() if name not in environ}


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
