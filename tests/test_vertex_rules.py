"""Specs Vertex would refuse: our client checks name the key before anything is staged, and the emulator refuses
the same specs on Create (INVALID_ARGUMENT) when a client check was bypassed. Sources are cited in _vertex_facts."""
import dataclasses
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import EMULATOR_ADDRESS, wait_for
from google.api_core import exceptions as ex
from google.cloud import aiplatform_v1

from hydra_plugins.hydra_vertex_ai import _jobspec, _vertex_facts
from hydra_plugins.hydra_vertex_ai._backends.processes import run_custom_job
from hydra_plugins.hydra_vertex_ai._backends.vertex import make_client
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai.config import JobSpecConf, SchedulingConf, WorkerPoolConf

PARENT = "projects/emu-test/locations/us-central1"
CONTAINER = _jobspec.Container(args=["gs://b/payload.pkl"], env={})
SA = "trainer@p.iam.gserviceaccount.com"
H100 = dict(machine_type="a3-highgpu-8g", accelerator_type="NVIDIA_H100_80GB", accelerator_count=8)
B200 = dict(machine_type="a4-highgpu-8g", accelerator_type="NVIDIA_B200", accelerator_count=8)
REDUCTION_SERVER = "us-docker.pkg.dev/vertex-ai-restricted/training/reductionserver:latest"
QUADRATIC = Path(__file__).parent / "apps" / "quadratic" / "app.py"


def rest_job(spec: JobSpecConf, **labels: str) -> Dict[str, Any]:
    """The CustomJob our builder makes, without our client checks: what a bypassing client would send (with an
    image, which the vertex backend requires and Vertex too)."""
    spec = dataclasses.replace(spec, image_uri=spec.image_uri or "img/app:1")
    return _jobspec.build_custom_job(spec, display_name="rules", container=CONTAINER, labels=labels, base_output_dir=None)


def custom_job(rest: Dict[str, Any]) -> Any:
    from google.protobuf import json_format

    return aiplatform_v1.CustomJob.wrap(json_format.ParseDict(rest, aiplatform_v1.CustomJob.pb()()))


def tuning_job(trial_spec: Dict[str, Any], parameters: List[Dict[str, Any]]) -> Any:
    from google.protobuf import json_format

    rest = {
        "displayName": "rules-study", "maxTrialCount": 1, "parallelTrialCount": 1,
        "studySpec": {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"}], "parameters": parameters},
        "trialJobSpec": trial_spec,
    }  # fmt: skip
    pb = aiplatform_v1.HyperparameterTuningJob.pb()()
    return aiplatform_v1.HyperparameterTuningJob.wrap(json_format.ParseDict(rest, pb))


@pytest.fixture
def client(vertex_emulator: Any) -> Any:
    return make_client("us-central1", EMULATOR_ADDRESS)


# --- the specs, each refused by our check (naming the key) and by the emulator -------------------------------

REFUSED = {
    # id: (spec, the key our check names, words of the emulator's message)
    "disk_type_unknown": (JobSpecConf(boot_disk_type="pd-balanced"), "job.boot_disk_type", "not one of"),
    "a3_ultra_pd_ssd": (JobSpecConf(machine_type="a3-ultragpu-8g", accelerator_type="NVIDIA_H200_141GB",
                                    accelerator_count=8, boot_disk_type="pd-ssd"),
                        "job.boot_disk_type", "hyperdisk-balanced only"),
    "a4_pool_pd_standard": (JobSpecConf(worker_pools=[WorkerPoolConf(**B200, boot_disk_type="pd-standard")]),
                            "job.worker_pools[0].boot_disk_type", "hyperdisk-balanced only"),
    "a4x_pd_ssd": (JobSpecConf(machine_type="a4x-highgpu-4g", accelerator_type="NVIDIA_GB200", accelerator_count=4,
                               boot_disk_type="pd-ssd"),
                   "job.boot_disk_type", "hyperdisk-balanced only"),
    # the GPUs a machine type takes
    "gpu_machine_without_its_gpus": (JobSpecConf(machine_type="a3-highgpu-8g"), "job.accelerator_type",
                                     "comes with 8 x NVIDIA_H100_80GB"),
    "gpu_machine_other_gpu": (JobSpecConf(machine_type="g2-standard-8", accelerator_type="NVIDIA_TESLA_T4",
                                          accelerator_count=1), "job.accelerator_type", "comes with 1 x NVIDIA_L4"),
    "gpu_machine_other_count": (JobSpecConf(machine_type="a2-highgpu-2g", accelerator_type="NVIDIA_TESLA_A100",
                                            accelerator_count=1), "job.accelerator_count", "must be 2, got 1"),
    "g2_by_vcpus": (JobSpecConf(worker_pools=[WorkerPoolConf(machine_type="g2-standard-8", accelerator_type="NVIDIA_L4",
                                                             accelerator_count=2)]),
                    "job.worker_pools[0].accelerator_count", "must be 1, got 2"),
    "h200_on_n1": (JobSpecConf(machine_type="n1-standard-8", accelerator_type="NVIDIA_H200_141GB", accelerator_count=1),
                   "job.machine_type", "comes only with its own machine types .a3-ultragpu-"),
    "t4_on_n2": (JobSpecConf(machine_type="n2-standard-8", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1),
                 "job.machine_type", "attaches only to N1"),
    "t4_three": (JobSpecConf(machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=3),
                 "job.accelerator_count", "counts of 1, 2, 4"),
    "v100_on_too_many_vcpus": (JobSpecConf(machine_type="n1-standard-16", accelerator_type="NVIDIA_TESLA_V100",
                                           accelerator_count=1), "job.machine_type", "at most 12 vCPUs"),
    "k80": (JobSpecConf(machine_type="n1-standard-4", accelerator_type="NVIDIA_TESLA_K80", accelerator_count=1),
            "job.accelerator_type", "end of support"),
    "tensorboard_without_sa": (JobSpecConf(tensorboard="projects/p/locations/us-central1/tensorboards/1"),
                               "job.service_account", "service_account"),
    "flex_start_t4": (JobSpecConf(machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1,
                                  scheduling=SchedulingConf(strategy="FLEX_START")),
                      "job.scheduling.strategy", "FLEX_START needs one of"),
    "flex_start_cpu_pool": (JobSpecConf(**H100, scheduling=SchedulingConf(strategy="FLEX_START"),
                                        worker_pools=[WorkerPoolConf(machine_type="n1-standard-4")]),
                            "job.scheduling.strategy", "FLEX_START needs one of"),
    "flex_start_two_machines": (JobSpecConf(**H100, scheduling=SchedulingConf(strategy="FLEX_START"),
                                            worker_pools=[WorkerPoolConf(**B200)]),
                                "job.scheduling.strategy", "same machine configuration"),
    "flex_start_8_days": (JobSpecConf(**H100, scheduling=SchedulingConf(strategy="FLEX_START", timeout_s=8 * 86400)),
                          "job.scheduling.strategy", "at most 7 days"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
def test_our_check_names_the_key(case: str) -> None:
    spec, key, _ = REFUSED[case]
    with pytest.raises(ConfigError) as caught:
        _jobspec.validate(spec, "job")
    assert caught.value.key == key


@pytest.mark.parametrize("case", REFUSED)
def test_the_emulator_refuses_the_same_spec_on_create(client: Any, vertex_emulator: Any, case: str) -> None:
    spec, _, words = REFUSED[case]
    creates = vertex_emulator.creates_by_uid[case]
    with pytest.raises(ex.InvalidArgument, match=words):
        client.create_custom_job(parent=PARENT, custom_job=custom_job(rest_job(spec, hydra_uid=case)))
    with pytest.raises(ex.InvalidArgument, match=words):  # a tuning job's trials are held to the same rules
        trial_spec = rest_job(spec)["jobSpec"]
        client.create_hyperparameter_tuning_job(
            parent=PARENT,
            hyperparameter_tuning_job=tuning_job(trial_spec, [{"parameterId": "x", "doubleValueSpec": {"minValue": 0, "maxValue": 1}}]),
        )
    assert vertex_emulator.creates_by_uid[case] == creates  # nothing was committed


ACCEPTED = {
    "a3_ultra_default_disk": JobSpecConf(machine_type="a3-ultragpu-8g", accelerator_type="NVIDIA_H200_141GB",
                                         accelerator_count=8),
    "a3_ultra_hyperdisk": JobSpecConf(machine_type="a3-ultragpu-8g", accelerator_type="NVIDIA_H200_141GB",
                                      accelerator_count=8, boot_disk_type="hyperdisk-balanced"),
    "a2_mega": JobSpecConf(machine_type="a2-megagpu-16g", accelerator_type="NVIDIA_TESLA_A100", accelerator_count=16),
    "g2_two_l4": JobSpecConf(machine_type="g2-standard-24", accelerator_type="NVIDIA_L4", accelerator_count=2),
    "g4": JobSpecConf(machine_type="g4-standard-48", accelerator_type="NVIDIA_RTX_PRO_6000", accelerator_count=1),
    "t4_on_n1": JobSpecConf(machine_type="n1-standard-8", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1),
    "v100_x8_n1_96": JobSpecConf(machine_type="n1-highmem-96", accelerator_type="NVIDIA_TESLA_V100", accelerator_count=8),
    "cpu_only": JobSpecConf(machine_type="e2-standard-4", worker_pools=[WorkerPoolConf(machine_type="c2-standard-8")]),
    "tensorboard_with_sa": JobSpecConf(tensorboard="projects/p/locations/us-central1/tensorboards/1", service_account=SA),
    "flex_start_h100_7_days": JobSpecConf(**H100, replica_count=2,
                                          scheduling=SchedulingConf(strategy="FLEX_START", timeout_s=7 * 86400)),
}  # fmt: skip


@pytest.mark.parametrize("case", ACCEPTED)
def test_settings_vertex_takes_pass_our_check(case: str) -> None:
    _jobspec.validate(ACCEPTED[case], "job")


def test_the_disk_type_is_sent_only_when_set() -> None:
    unset = rest_job(ACCEPTED["a3_ultra_default_disk"])["jobSpec"]["workerPoolSpecs"][0]["diskSpec"]
    assert unset == {"bootDiskSizeGb": 100}  # Vertex picks the machine's default (hyperdisk-balanced on A3 Ultra)
    chosen = rest_job(JobSpecConf(boot_disk_type="pd-standard"))["jobSpec"]["workerPoolSpecs"][0]["diskSpec"]
    assert chosen == {"bootDiskType": "pd-standard", "bootDiskSizeGb": 100}


def test_a_study_without_parameters_is_refused_by_the_emulator(client: Any) -> None:
    spec = rest_job(JobSpecConf())["jobSpec"]
    with pytest.raises(ex.InvalidArgument, match=r"study_spec\.parameters; Message: Required field is not set"):
        client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=tuning_job(spec, []))


# --- labels: _vertex_facts.label_problem is the one rule; client and emulator agree ---------------------------
# custom_job.proto `labels` allows 64 characters, Cloud's label requirements
# (https://cloud.google.com/resource-manager/docs/creating-managing-labels#requirements) 63: both take the 63.


@pytest.mark.parametrize("length, ok", [(63, True), (64, False)])
def test_label_length_is_the_same_rule_in_our_check_and_the_emulator(client: Any, length: int, ok: bool) -> None:
    spec = JobSpecConf(labels={"team": "v" * length})
    if ok:
        _jobspec.validate(spec, "job")
        created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest_job(spec)))
        client.cancel_custom_job(name=created.name)
        return
    with pytest.raises(ConfigError) as caught:
        _jobspec.validate(spec, "job")
    assert caught.value.key == "job.labels.team"
    with pytest.raises(ex.InvalidArgument, match="label value"):
        client.create_custom_job(parent=PARENT, custom_job=custom_job(rest_job(spec)))


# --- pools with their own command (sidecars, the Reduction Server) -------------------------------------------


def test_a_pool_command_replaces_our_entry_and_the_reduction_server_keeps_its_image_entrypoint() -> None:
    spec = JobSpecConf(
        image_uri="img/app:1",
        worker_pools=[
            WorkerPoolConf(replica_count=1, image_uri="img/sidecar:1", command=["/bin/sidecar"], args=["--port", "9"]),
            WorkerPoolConf(machine_type="n1-highcpu-16", replica_count=2, image_uri=REDUCTION_SERVER, command=[]),
        ],
    )
    _jobspec.validate(spec, "job")
    chief, sidecar, reducer = rest_job(spec)["jobSpec"]["workerPoolSpecs"]
    assert chief["containerSpec"]["command"] == ["python", "-m", _jobspec.ENTRY_MODULE]
    assert (sidecar["containerSpec"]["command"], sidecar["containerSpec"]["args"]) == (["/bin/sidecar"], ["--port", "9"])
    assert "command" not in reducer["containerSpec"] and "args" not in reducer["containerSpec"]
    assert reducer["containerSpec"]["imageUri"] == REDUCTION_SERVER
    custom_job(rest_job(spec))  # a valid proto


@pytest.mark.parametrize(
    "pool, key",
    [
        (WorkerPoolConf(image_uri=REDUCTION_SERVER), "job.worker_pools[0].command"),
        (WorkerPoolConf(args=["--x"]), "job.worker_pools[0].args"),
    ],
)
def test_command_mistakes_name_the_key(pool: WorkerPoolConf, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _jobspec.validate(JobSpecConf(worker_pools=[pool]), "job")
    assert caught.value.key == key
    with pytest.raises(ConfigError, match="only worker_pools take a command"):
        _jobspec.validate(JobSpecConf(command=["python"]), "job")


def test_the_emulator_runs_a_pool_with_its_own_command(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "sidecar.txt"
    spec = JobSpecConf(worker_pools=[WorkerPoolConf(
        image_uri="img/sidecar:1", command=["python", "-c"],
        args=["import os, sys; open(sys.argv[1], 'w').write(os.environ['CLUSTER_SPEC'])", str(marker)],
    )])  # fmt: skip
    rest = rest_job(spec)
    rest["jobSpec"]["workerPoolSpecs"][0]["containerSpec"].update(command=["python", "-c", "pass"], args=[])
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest))
    wait_for(lambda: client.get_custom_job(name=created.name).state.name == "JOB_STATE_SUCCEEDED", 60, "the job")
    assert '"workerpool1"' in marker.read_text()  # it ran as a replica of workerpool1


def test_an_image_entrypoint_pool_fails_clearly_locally_and_in_the_emulator(client: Any, tmp_path: Path) -> None:
    import threading

    spec = JobSpecConf(worker_pools=[WorkerPoolConf(), WorkerPoolConf(image_uri=REDUCTION_SERVER, command=[])])
    rest = rest_job(spec)
    rest["jobSpec"]["workerPoolSpecs"][0]["containerSpec"].update(command=["python", "-c", "pass"], args=[])
    outcome = run_custom_job(rest, job_id="rs", workdir=tmp_path / "rs", cancel=threading.Event())
    assert outcome.state == "JOB_STATE_FAILED"
    assert f"workerpool2 runs the entrypoint of {REDUCTION_SERVER}" in str(outcome.error)
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest))  # Vertex would take it
    wait_for(lambda: client.get_custom_job(name=created.name).state.name == "JOB_STATE_FAILED", 60, "the job")
    assert "runs the entrypoint of" in client.get_custom_job(name=created.name).error.message


# --- a sweep with nothing to tune ------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_sweep_without_a_swept_parameter_is_refused_before_staging(tmp_path: Path, dry_run: bool) -> None:
    staging = tmp_path / "staging"
    cmd = [sys.executable, str(QUADRATIC), "-m", "hydra/sweeper=vertex_vizier", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           f"hydra.sweeper.staging_dir={staging}", f"hydra.sweeper.dry_run={str(dry_run).lower()}", "x=1", "opt=b"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "hydra.sweeper.params: no swept parameter" in proc.stderr and "hydra/launcher=vertex_ai" in proc.stderr
    assert '"parameters": []' not in proc.stdout
    assert not staging.exists() and not (tmp_path / "sweep").exists()


# --- console links: the shape the SDK itself prints -------------------------------------------------------


@pytest.mark.parametrize("kind, sdk_class", [("customJobs", "CustomJob"), ("hyperparameterTuningJobs", "HyperparameterTuningJob")])
def test_console_links_are_the_sdks_dashboard_uri(kind: str, sdk_class: str) -> None:
    from google.cloud.aiplatform import jobs

    cls = getattr(jobs, sdk_class)
    name = f"projects/my-proj/locations/europe-west4/{kind}/1234567890"
    # The SDK's own _dashboard_uri, on an object carrying only what it reads.
    job = types.SimpleNamespace(resource_name=name, _parse_resource_name=cls._parse_resource_name, _job_type=cls._job_type)
    assert _vertex_facts.console_link(name) == jobs._Job._dashboard_uri(job)
    assert _vertex_facts.console_link(name) == (
        "https://console.cloud.google.com/agent-platform/locations/europe-west4/training/1234567890?project=my-proj"
    )


# --- trial flags: an argument that is not a declared parameter fails the trial, saying which ------------------


def test_an_unexpected_trial_argument_fails_with_exit_2_naming_it_and_the_parameters(tmp_path: Path) -> None:
    import os

    staging = tmp_path / "staging"
    sweep = [sys.executable, str(QUADRATIC), "-m", "hydra/sweeper=vertex_vizier", "hydra.sweeper.algorithm=grid",
             "hydra.sweeper.max_trial_count=1", "hydra.sweeper.parallel_trial_count=1",
             f"hydra.sweeper.staging_dir={staging}",
             f"hydra.sweep.dir={tmp_path / 'sweep'}", "x=choice(0,2)", "opt=a,b"]
    subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    payload = next(staging.glob("*/study/payload.pkl"))
    env = {**os.environ, "CLOUD_ML_TRIAL_ID": "9", "CLOUD_ML_HP_METRIC_FILE": str(tmp_path / "m.metrics")}
    proc = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.entry", str(payload), "--x=2",
                           "--opt=b", "--learning_rate=0.1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "'--learning_rate=0.1': unexpected argument" in proc.stderr
    assert "declared parameters: --x --opt" in proc.stderr
