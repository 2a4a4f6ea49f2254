"""Multi-node jobs: CLUSTER_SPEC -> torch.distributed variables, pool-layout validation, and a real 2-replica
Lightning DDP job (gloo, CPU) on the local backend."""
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai import _jobspec, _payload
from hydra_plugins.hydra_vertex_ai._backends import processes as local
from hydra_plugins.hydra_vertex_ai._distributed import torch_env
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai.config import JobSpecConf, WorkerPoolConf

REPO = Path(__file__).resolve().parents[1]
DDP_APP = REPO / "tests" / "apps" / "ddp_app" / "ddp_app.py"
KEY = "hydra.launcher.job"

# A full Vertex-shaped cluster: chief, two workers, a parameter server, an evaluator.
CLUSTER = {
    "workerpool0": ["cmle-training-workerpool0-ab-0:2222"],
    "workerpool1": ["cmle-training-workerpool1-ab-0:2222", "cmle-training-workerpool1-ab-1:2222"],
    "workerpool2": ["cmle-training-workerpool2-ab-0:2222"],
    "workerpool3": ["cmle-training-workerpool3-ab-0:2222"],
}
CHIEF = "cmle-training-workerpool0-ab-0"


def environ(task_type: str, index: int, cluster: Dict[str, List[str]] = CLUSTER, **preset: str) -> Dict[str, str]:
    task: Dict[str, Any] = {"type": task_type, "index": index}
    spec = {"cluster": cluster, "environment": "cloud", "task": task, "job": "{}"}
    return {"CLUSTER_SPEC": json.dumps(spec), **preset}


def member(rank: int, world: int = 3, addr: str = CHIEF, port: str = "2222") -> Dict[str, str]:
    return {
        "MASTER_ADDR": addr,
        "MASTER_PORT": port,
        "WORLD_SIZE": str(world),
        "RANK": str(rank),
        "NODE_RANK": str(rank),
        "LOCAL_RANK": "0",
    }


@pytest.mark.parametrize(
    "env, expected",
    [
        pytest.param(environ("workerpool0", 0), member(0), id="chief"),
        pytest.param(environ("workerpool1", 0), member(1), id="worker-0"),
        pytest.param(environ("workerpool1", 1), member(2), id="worker-1"),
        pytest.param(environ("workerpool2", 0), {}, id="parameter-server"),
        pytest.param(environ("workerpool3", 0), {}, id="evaluator"),
        pytest.param({}, {}, id="no-cluster-spec"),
        pytest.param(environ("workerpool0", 0, {"workerpool0": ["c:2222"]}), {}, id="single-replica"),
        pytest.param(
            environ("workerpool0", 0, {"workerpool0": ["c:2222"], "workerpool3": ["e:2222"]}),
            {},
            id="chief-and-evaluator-only",
        ),
        pytest.param(
            environ("workerpool0", 0, {"workerpool0": ["c:2222"], "workerpool2": ["ps:2222"]}),
            {},
            id="chief-and-placeholder-then-ps",
        ),
        pytest.param(
            environ("workerpool1", 0, {"workerpool0": ["[fd00::1]:2222"], "workerpool1": ["[fd00::2]:2222"]}),
            member(1, world=2, addr="fd00::1"),
            id="ipv6",
        ),
    ],
)
def test_cluster_spec_mapping(env: Dict[str, str], expected: Dict[str, str]) -> None:
    assert torch_env(env) == expected


def test_trial_task_maps_like_a_job() -> None:
    env = environ("workerpool1", 1)
    spec = json.loads(env["CLUSTER_SPEC"])
    spec["task"]["trial"] = "7"
    assert torch_env({"CLUSTER_SPEC": json.dumps(spec)}) == member(2)


@pytest.mark.parametrize(
    "preset, expected",
    [
        pytest.param(
            # What Vertex's prebuilt PyTorch images set: only NODE_RANK (from RANK) and LOCAL_RANK are added.
            {"MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "3333", "WORLD_SIZE": "3", "RANK": "2"},
            {"NODE_RANK": "2", "LOCAL_RANK": "0"},
            id="vertex-pytorch-image",
        ),
        pytest.param(
            {"MASTER_PORT": "29500", "LOCAL_RANK": "0"},
            {k: v for k, v in member(2).items() if k not in ("MASTER_PORT", "LOCAL_RANK")},
            id="user-port",
        ),
        pytest.param(
            {"NODE_RANK": "5"},
            {k: v for k, v in member(2).items() if k != "NODE_RANK"},
            id="user-node-rank",
        ),
    ],
)
def test_preset_values_are_not_overwritten(preset: Dict[str, str], expected: Dict[str, str]) -> None:
    assert torch_env(environ("workerpool1", 1, **preset)) == expected


@pytest.mark.parametrize(
    "env, message",
    [
        pytest.param({"CLUSTER_SPEC": "{not json"}, "not JSON", id="bad-json"),
        pytest.param(environ("workerpool1", 2), "workerpool1[2] is not in its cluster", id="index-out-of-range"),
        pytest.param({"CLUSTER_SPEC": json.dumps({"cluster": CLUSTER})}, "no task.type", id="no-task"),
        pytest.param(
            environ("workerpool0", 0, {"workerpool0": ["chief"], "workerpool1": ["w:1"]}),
            "'chief' is not host:port",
            id="no-port",
        ),
    ],
)
def test_malformed_cluster_spec_fails_loudly(env: Dict[str, str], message: str) -> None:
    # A replica that silently stayed out of the group would leave the others waiting until a timeout.
    with pytest.raises(ValueError, match=re.escape(message)):
        torch_env(env)


def test_local_backend_cluster_gives_every_replica_one_rank() -> None:
    """The CLUSTER_SPEC the local backend really builds (from a real CustomJob) maps to ranks 0..n-1."""
    spec = JobSpecConf(worker_pools=[WorkerPoolConf(replica_count=2), WorkerPoolConf(replica_count=1)])
    job = _jobspec.build_custom_job(
        spec, display_name="j", container=_jobspec.Container(args=["p"], env={}), labels={}, base_output_dir=None
    )
    cluster = local.cluster_of(job)
    replicas = [local.Replica(0, 0), local.Replica(1, 0), local.Replica(1, 1), local.Replica(2, 0)]
    envs = [
        torch_env({"CLUSTER_SPEC": local.container_env(job, r, "job-1", cluster)["CLUSTER_SPEC"]})
        for r in replicas
    ]
    host, port = cluster["workerpool0"][0].split(":")
    assert [e.get("RANK") for e in envs] == ["0", "1", "2", None]
    assert {(e["MASTER_ADDR"], e["MASTER_PORT"], e["WORLD_SIZE"]) for e in envs[:3]} == {(host, port, "3")}


def test_mapping_does_not_import_torch() -> None:
    code = (
        "import sys, json\n"
        "from hydra_plugins.hydra_vertex_ai._distributed import torch_env\n"
        f"torch_env({environ('workerpool1', 0)!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- pool layouts -------------------------------------------------------------------------------------------


def pools(*replicas: int) -> List[WorkerPoolConf]:
    return [WorkerPoolConf(replica_count=n) for n in replicas]


@pytest.mark.parametrize(
    "spec, key, message",
    [
        pytest.param(JobSpecConf(worker_pools=pools(1, 1, 1, 1)), f"{KEY}.worker_pools", "at most 4", id="five-pools"),
        pytest.param(
            JobSpecConf(replica_count=3, worker_pools=pools(2)),
            f"{KEY}.replica_count",
            "worker_pools[0]",
            id="replica-count-and-explicit-pools",
        ),
        pytest.param(
            JobSpecConf(worker_pools=pools(2, 0)),
            f"{KEY}.worker_pools[1].replica_count",
            "workerpool2 is empty and no pool follows it",
            id="trailing-placeholder",
        ),
        pytest.param(
            JobSpecConf(worker_pools=pools(0)),
            f"{KEY}.worker_pools[0].replica_count",
            "only a placeholder",
            id="only-placeholder",
        ),
        pytest.param(JobSpecConf(replica_count=0), f"{KEY}.replica_count", "at least 1", id="no-chief"),
        pytest.param(
            JobSpecConf(worker_pools=pools(-1, 1)),
            f"{KEY}.worker_pools[0].replica_count",
            "at least 1",
            id="negative-pool",
        ),
    ],
)
def test_impossible_pool_layouts(spec: JobSpecConf, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _jobspec.validate(spec, KEY)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "spec, layout",
    [
        pytest.param(JobSpecConf(replica_count=4), [1, 3], id="replica-count"),
        pytest.param(JobSpecConf(worker_pools=pools(2, 1, 1)), [1, 2, 1, 1], id="four-pools"),
        pytest.param(JobSpecConf(worker_pools=pools(0, 1)), [1, None, 1], id="placeholder-then-ps"),
        pytest.param(JobSpecConf(worker_pools=pools(2, 0, 1)), [1, 2, None, 1], id="placeholder-then-evaluator"),
    ],
)
def test_possible_pool_layouts(spec: JobSpecConf, layout: List[Optional[int]]) -> None:
    _jobspec.validate(spec, KEY)
    job = _jobspec.build_custom_job(
        spec, display_name="j", container=_jobspec.Container(args=[], env={}), labels={}, base_output_dir=None
    )
    built = [int(p["replicaCount"]) if p else None for p in job["jobSpec"]["workerPoolSpecs"]]
    assert built == layout


# --- a real 2-replica Lightning DDP job on the local backend ----------------------------------------------


def run_ddp_app(sweep: Path, *overrides: str) -> "subprocess.CompletedProcess[str]":
    """The DDP app as a 2-replica job on the local backend."""
    return subprocess.run(
        [
            sys.executable,
            str(DDP_APP),
            "-m",
            "hydra/launcher=vertex_ai",
            "hydra.launcher.backend=local",
            "hydra.launcher.job.replica_count=2",
            f"hydra.sweep.dir={sweep}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_two_replica_lightning_ddp_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_ddp_app(sweep)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # One job, one result: the chief's.
    results = sorted(sweep.glob(".vertex_ai/*/jobs/*/result.pkl"))
    assert len(results) == 1
    ret = _payload.load_result(results[0].read_bytes())
    assert ret.status.name == "COMPLETED"
    value = ret.return_value
    assert value["global_rank"] == 0 and value["world_size"] == 2
    assert value["rank_sum"] == 1 + 2  # all_reduce over both replicas: they share one process group
    assert value["weight_spread"] == 0.0  # DDP kept the replicas' weights equal
    assert value["env"]["WORLD_SIZE"] == "2" and value["env"]["RANK"] == "0"
    assert value["env"]["MASTER_ADDR"] == "127.0.0.1"

    # Both replicas really ran the task, each as its own process with its own rank.
    logs = {p.name: p.read_text(errors="replace") for p in results[0].parent.glob("workerpool*.log")}
    assert set(logs) == {"workerpool0-0.log", "workerpool1-0.log"}
    assert "ddp_app: rank 0 of 2 done" in logs["workerpool0-0.log"]
    assert "ddp_app: rank 1 of 2 done" in logs["workerpool1-0.log"]

    # The replicas shared the job's Hydra output dir harmlessly: one job dir, an intact config.
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()) == ["0"]
    saved = OmegaConf.load(sweep / "0" / ".hydra" / "config.yaml")
    assert saved.trainer.strategy == "ddp" and saved.samples == 64


def test_failing_worker_fails_the_job_although_the_chief_completed(tmp_path: Path) -> None:
    # Rank 1 waits until the chief has written its (COMPLETED) result, then raises.
    sweep = tmp_path / "sweep"
    proc = run_ddp_app(sweep, "fail_rank=1")
    assert len(list(sweep.glob(".vertex_ai/*/jobs/*/result.pkl"))) == 1  # the chief did complete
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "replica workerpool1[0] exited with code 1" in proc.stderr
