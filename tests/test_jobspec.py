"""JobSpecConf -> CustomJob: every field lands in the real proto, and bad settings fail before anything runs."""
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from conftest import PROBE, VERTEX_LOCAL, run_app
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from hydra_plugins.hydra_vertex_ai import _jobspec
from hydra_plugins.hydra_vertex_ai.config import JobSpecConf, SchedulingConf, WorkerPoolConf

CONTAINER = _jobspec.Container(args=["gs://bucket/staging/jobs/0/payload.pkl"], env={"A": "1", "B": "two"})
SYSTEM = {"hydra_sweep": "app-20250101-000000-abcdef", "hydra_job": "0", "hydra_uid": "app-20250101-000000-abcdef-0"}


def to_proto(spec: JobSpecConf, base_output_dir: str = "gs://bucket/out/0") -> Any:
    """Build the REST dict and parse it strictly (an unknown or misspelled field fails) into the real proto."""
    job = _jobspec.build_custom_job(
        spec, display_name="app-0", container=CONTAINER, labels=SYSTEM, base_output_dir=base_output_dir
    )
    return json_format.ParseDict(job, aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob()))


def test_accelerator_types_match_the_api() -> None:
    names = [t.name for t in aiplatform_v1.AcceleratorType if t.name != "ACCELERATOR_TYPE_UNSPECIFIED"]
    assert sorted(_jobspec.ACCELERATOR_TYPES) == sorted(names)


def test_every_field_lands_in_the_custom_job() -> None:
    spec = JobSpecConf(
        machine_type="a2-highgpu-1g",
        accelerator_type="NVIDIA_TESLA_A100",
        accelerator_count=1,
        boot_disk_type="pd-standard",
        boot_disk_size_gb=250,
        image_uri="us-docker.pkg.dev/p/r/trainer:1",
        service_account="trainer@p.iam.gserviceaccount.com",
        network="projects/123/global/networks/vpc",
        env={"A": "1", "B": "two"},
        labels={"team": "vision"},
        scheduling=SchedulingConf(
            timeout_s=3600,
            restart_job_on_worker_restart=True,
            strategy="FLEX_START",
            max_wait_duration_s=1800,
            disable_retries=True,
        ),
        tensorboard="projects/p/locations/us-central1/tensorboards/7",
        enable_web_access=True,
    )
    job = to_proto(spec)

    assert job.display_name == "app-0"
    assert dict(job.labels) == {"team": "vision", **SYSTEM}
    [chief] = job.job_spec.worker_pool_specs
    assert chief.machine_spec.machine_type == "a2-highgpu-1g"
    assert chief.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_A100
    assert chief.machine_spec.accelerator_count == 1
    assert chief.replica_count == 1
    assert (chief.disk_spec.boot_disk_type, chief.disk_spec.boot_disk_size_gb) == ("pd-standard", 250)
    container = chief.container_spec
    assert container.image_uri == "us-docker.pkg.dev/p/r/trainer:1"
    assert list(container.command) == ["python", "-m", "hydra_plugins.hydra_vertex_ai.entry"]
    assert list(container.args) == list(CONTAINER.args)
    assert {e.name: e.value for e in container.env} == {"A": "1", "B": "two"}
    js = job.job_spec
    assert js.service_account == "trainer@p.iam.gserviceaccount.com"
    assert js.network == "projects/123/global/networks/vpc"
    assert js.base_output_directory.output_uri_prefix == "gs://bucket/out/0"
    assert js.tensorboard == "projects/p/locations/us-central1/tensorboards/7"
    assert js.enable_web_access
    sched = js.scheduling
    assert sched.timeout.seconds == 3600 and sched.max_wait_duration.seconds == 1800
    assert sched.restart_job_on_worker_restart and sched.disable_retries
    assert sched.strategy == aiplatform_v1.Scheduling.Strategy.FLEX_START


def test_defaults_leave_optional_fields_unset() -> None:
    job = to_proto(JobSpecConf())
    js = job.job_spec
    assert [f.name for f, _ in js.ListFields()] == ["worker_pool_specs", "base_output_directory"]
    assert not js.worker_pool_specs[0].machine_spec.accelerator_type
    assert dict(job.labels) == SYSTEM


@pytest.mark.parametrize("strategy", ["STANDARD", "SPOT"])
def test_strategy(strategy: str) -> None:
    job = to_proto(JobSpecConf(scheduling=SchedulingConf(strategy=strategy)))
    assert job.job_spec.scheduling.strategy == aiplatform_v1.Scheduling.Strategy[strategy]


def test_replica_count_puts_extra_replicas_in_workerpool1() -> None:
    spec = JobSpecConf(machine_type="g2-standard-24", accelerator_type="NVIDIA_L4", accelerator_count=2, replica_count=4)
    chief, workers = to_proto(spec).job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 3)
    for pool in (chief, workers):
        assert pool.machine_spec.machine_type == "g2-standard-24"
        assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_L4
        assert pool.machine_spec.accelerator_count == 2
        assert list(pool.container_spec.args) == list(CONTAINER.args)


def test_explicit_worker_pools_with_their_own_images() -> None:
    spec = JobSpecConf(
        image_uri="img/chief:1",
        worker_pools=[
            WorkerPoolConf(machine_type="n1-standard-16", replica_count=2, accelerator_type="NVIDIA_TESLA_T4",
                           accelerator_count=1),
            WorkerPoolConf(replica_count=0),  # no parameter servers: Vertex wants an empty placeholder
            WorkerPoolConf(machine_type="e2-standard-4", image_uri="img/eval:2", boot_disk_size_gb=50),
        ],
    )  # fmt: skip
    chief, workers, servers, evaluator = to_proto(spec).job_spec.worker_pool_specs
    assert chief.container_spec.image_uri == "img/chief:1"
    assert (workers.replica_count, workers.machine_spec.machine_type) == (2, "n1-standard-16")
    assert workers.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_TESLA_T4
    assert workers.container_spec.image_uri == "img/chief:1"  # inherits the job's image
    assert servers.ByteSize() == 0
    assert evaluator.container_spec.image_uri == "img/eval:2"
    assert (evaluator.machine_spec.machine_type, evaluator.disk_spec.boot_disk_size_gb) == ("e2-standard-4", 50)


# --- the bad-config catalogue, through a real `python my_app.py -m hydra/launcher=vertex_ai ...` -----------

JOB = "hydra.launcher.job"
# The vertex backend in a dry run: its settings are checked, nothing connects.
VERTEX_DRY = ["hydra.launcher.backend=vertex", "hydra.launcher.dry_run=true", "hydra.launcher.project=p",
              "hydra.launcher.staging_dir=gs://bucket/staging", "hydra.launcher.job.image_uri=img"]
BAD_CONFIGS: Dict[str, List[str]] = {
    # id: [overrides..., the config key the error must name]
    "unknown_accelerator": [f"{JOB}.accelerator_type=NVIDIA_TESLA_Z9", f"{JOB}.accelerator_count=1",
                            f"{JOB}.accelerator_type"],
    "count_without_type": [f"{JOB}.accelerator_count=2", f"{JOB}.accelerator_count"],
    "negative_replicas": [f"{JOB}.replica_count=-1", f"{JOB}.replica_count"],
    "too_many_pools": [f"{JOB}.worker_pools=[{{}},{{}},{{}},{{}}]", f"{JOB}.worker_pools"],
    "pool_unknown_accelerator": [f"{JOB}.worker_pools=[{{accelerator_type:TPU_V9,accelerator_count:1}}]",
                                 f"{JOB}.worker_pools[0].accelerator_type"],
    "pool_zero_disk": [f"{JOB}.worker_pools=[{{boot_disk_size_gb:0}}]", f"{JOB}.worker_pools[0].boot_disk_size_gb"],
    "label_bad_key": [f"+{JOB}.labels.Team=vision", f"{JOB}.labels.Team"],
    "label_bad_value": [f"+{JOB}.labels.team=Vision", f"{JOB}.labels.team"],
    "label_reserved": [f"+{JOB}.labels.hydra_sweep=mine", f"{JOB}.labels.hydra_sweep"],
    "bad_strategy": [f"{JOB}.scheduling.strategy=CHEAP", f"{JOB}.scheduling.strategy"],
    "bad_backend": ["hydra.launcher.backend=kubernetes", "hydra.launcher.backend"],
    "gs_staging_on_local": ["hydra.launcher.staging_dir=gs://bucket/staging", "hydra.launcher.staging_dir"],
    "zero_max_parallel": ["hydra.launcher.max_parallel=0", "hydra.launcher.max_parallel"],
    "a3_ultra_pd_ssd": [f"{JOB}.machine_type=a3-ultragpu-8g", f"{JOB}.accelerator_type=NVIDIA_H200_141GB",
                        f"{JOB}.accelerator_count=8", f"{JOB}.boot_disk_type=pd-ssd", f"{JOB}.boot_disk_type"],
    "l4_count_of_g2": [f"{JOB}.machine_type=g2-standard-8", f"{JOB}.accelerator_type=NVIDIA_L4",
                       f"{JOB}.accelerator_count=2", f"{JOB}.accelerator_count"],
    "tensorboard_without_sa": [f"{JOB}.tensorboard=projects/p/locations/l/tensorboards/1", f"{JOB}.service_account"],
    "flex_start_cpu": [f"{JOB}.scheduling.strategy=FLEX_START", f"{JOB}.scheduling.strategy"],
    "reduction_server_no_command": [
        f"{JOB}.worker_pools=[{{replica_count:0}},{{image_uri:'us-docker.pkg.dev/vertex-ai-restricted/training/"
        "reductionserver:latest'}]", f"{JOB}.worker_pools[1].command"],
    # the local backend runs commands, not images: a pool on its image's entrypoint cannot run here
    "image_entrypoint_on_local": [f"{JOB}.worker_pools=[{{image_uri:img/rs,command:[]}}]", f"{JOB}.worker_pools[0].command"],
    "empty_machine_type": [f"{JOB}.machine_type=''", f"{JOB}.machine_type"],
    # vertex-only settings, checked in a dry run (no client, no network)
    "negative_retry_timeout": [*VERTEX_DRY, "hydra.launcher.retry_timeout_s=-1", "hydra.launcher.retry_timeout_s"],
    "zero_retry_initial": [*VERTEX_DRY, "hydra.launcher.retry_initial_s=0", "hydra.launcher.retry_initial_s"],
    "endpoint_port_out_of_range": [*VERTEX_DRY, "hydra.launcher.api_endpoint=127.0.0.1:99999",
                                   "hydra.launcher.api_endpoint"],
    "endpoint_with_scheme": [*VERTEX_DRY, "hydra.launcher.api_endpoint='http://127.0.0.1:8470'",
                             "hydra.launcher.api_endpoint"],
    "zero_max_parallel_on_vertex": [*VERTEX_DRY, "hydra.launcher.max_parallel=0", "hydra.launcher.max_parallel"],
}  # fmt: skip


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Tuple[Path, "subprocess.CompletedProcess[str]"]]:
    """Every case of the catalogue as a real app run; a few at a time, since each is mostly Python start-up."""

    # mktemp is not thread-safe (it prunes old numbered dirs): make every folder before the runs start.
    tmps = {case_id: tmp_path_factory.mktemp(case_id) for case_id in BAD_CONFIGS}

    def run(case_id: str) -> Tuple[Path, "subprocess.CompletedProcess[str]"]:
        *overrides, _ = BAD_CONFIGS[case_id]
        tmp = tmps[case_id]
        sweep = f"hydra.sweep.dir={tmp / 'sweep'}"
        args = ["-m", *VERTEX_LOCAL, *overrides, "tag=0,1", f"out_dir={tmp / 'rec'}", sweep]
        return tmp, run_app(PROBE, args, tmp)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(BAD_CONFIGS, pool.map(run, BAD_CONFIGS)))


@pytest.mark.parametrize("case_id", BAD_CONFIGS)
def test_bad_config_fails_before_anything_runs(
    bad_runs: Dict[str, Tuple[Path, "subprocess.CompletedProcess[str]"]], case_id: str
) -> None:
    key = BAD_CONFIGS[case_id][-1]
    tmp, proc = bad_runs[case_id]

    assert proc.returncode != 0
    # Our checks name the key first; a typed field (an Enum) is refused by OmegaConf while composing.
    assert f"{key}:" in proc.stderr or f"full_key: {key}\n" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, "a config mistake deserves one message, not our stack"
    assert not (tmp / "rec").exists(), "a job ran"
    staged = sorted(p.name for p in (tmp / "sweep").iterdir()) if (tmp / "sweep").exists() else []
    assert staged in ([], ["multirun.yaml"]), "something was staged"
