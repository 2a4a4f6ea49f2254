"""No image needed: without `job.image_uri`, jobs run Vertex's pythonPackageSpec on a prebuilt training image,
with a wheel of this package and one of the project's requirements staged once per content hash; the
emulator and the local backend install them into a cached virtual environment, as Vertex does."""
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from conftest import (
    EMULATOR_ADDRESS,
    PROBE,
    STAGING,
    VERTEX_LOCAL,
    VERTEX_OVERRIDES,
    launch_in_process,
    run_app,
)
from test_dry_run import json_documents
from test_example import EXAMPLE, run_example
from test_real_projects import no_credentials_env

from hydra_plugins.hydra_vertex_ai import _packaging, _storage
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai._vertex_images import TRAINING_IMAGES, training_image
from hydra_plugins.hydra_vertex_ai.config import JobSpecConf, WorkerPoolConf

KEY = "hydra.launcher.job"
CPU_24 = "us-docker.pkg.dev/vertex-ai/training/pytorch-cpu.2-4.py310:latest"
GPU_24 = "us-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-4.py310:latest"
# the launcher on the emulators, without an image: the python-package path
NO_IMAGE = [o for o in VERTEX_OVERRIDES if ".image_uri=" not in o]


@pytest.fixture(scope="module", autouse=True)
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of package environments for this module (the emulator runs in this process)."""
    previous = os.environ.get("HYDRA_VERTEX_AI_CACHE")
    cache = tmp_path_factory.mktemp("venv-cache")
    os.environ["HYDRA_VERTEX_AI_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("HYDRA_VERTEX_AI_CACHE", None)
    else:
        os.environ["HYDRA_VERTEX_AI_CACHE"] = previous


def pools_of(job: Dict[str, Any]) -> List[Dict[str, Any]]:
    return list(job["jobSpec"]["workerPoolSpecs"])


# --- the spec, without credentials ---------------------------------------------------------------------


def test_dry_run_without_credentials_prints_a_python_package_spec(tmp_path: Path) -> None:
    args = ["-m", "hydra/launcher=vertex_ai", "hydra.launcher.backend=vertex", "hydra.launcher.dry_run=true",
            "hydra.launcher.project=no-such-project", "hydra.launcher.location=europe-west4",
            "hydra.launcher.staging_dir=gs://no-such-bucket/staging",
            f"{KEY}.worker_pools=[{{machine_type: g2-standard-8, accelerator_type: NVIDIA_L4, accelerator_count: 1, "
            "replica_count: 2}, {image_uri: 'europe-docker.pkg.dev/p/r/sidecar:1', command: [/bin/sidecar]}]",
            f"{KEY}.env.MY_VAR=1", "tag=0,1", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run_app(PROBE, args, tmp_path, env=no_credentials_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]

    jobs = json_documents(proc.stdout)
    assert len(jobs) == 2
    for job in jobs:
        chief, workers, sidecar = pools_of(job)
        for pool, kind in ((chief, "cpu"), (workers, "gpu")):
            spec = pool["pythonPackageSpec"]
            assert "containerSpec" not in pool
            image = training_image(spec["executorImageUri"])
            assert image is not None and image.framework == "pytorch" and image.accelerator == kind
            assert spec["executorImageUri"].startswith("europe-docker.pkg.dev/")  # the region's multi-region
            assert spec["pythonModule"] == "hydra_plugins.hydra_vertex_ai.entry"
            assert spec["args"] == chief["pythonPackageSpec"]["args"] == [
                f"gs://no-such-bucket/staging/{job['labels']['hydra_sweep']}/jobs/{job['labels']['hydra_job']}/payload.pkl"]
            assert {"name": "MY_VAR", "value": "1"} in spec["env"]
            names = [uri.rsplit("/", 1)[1] for uri in spec["packageUris"]]
            assert names == ["hydra_vertex_ai-0.1.0-py3-none-any.whl", "hydra_vertex_ai_requirements-1.0-py3-none-any.whl"]
            assert all(uri.startswith("gs://no-such-bucket/staging/packages/") for uri in spec["packageUris"])
        # a pool with its own image and command keeps its container
        assert sidecar["containerSpec"]["imageUri"] == "europe-docker.pkg.dev/p/r/sidecar:1"
        assert "pythonPackageSpec" not in sidecar
    assert pools_of(jobs[0])[0]["pythonPackageSpec"]["packageUris"] == pools_of(jobs[1])[0]["pythonPackageSpec"]["packageUris"]
    assert not (tmp_path / "rec").exists()


def test_an_image_outside_vertexs_list_is_refused_before_anything_is_staged(tmp_path: Path) -> None:
    args = ["-m", "hydra/launcher=vertex_ai", "hydra.launcher.backend=vertex", "hydra.launcher.dry_run=true",
            "hydra.launcher.project=p", "hydra.launcher.staging_dir=gs://no-such-bucket/staging",
            f"{KEY}.executor_image_uri=us-docker.pkg.dev/me/repo/trainer:1", "tag=0", f"out_dir={tmp_path / 'rec'}"]
    proc = run_app(PROBE, args, tmp_path, env=no_credentials_env(tmp_path))
    assert proc.returncode != 0
    assert f"{KEY}.executor_image_uri: 'us-docker.pkg.dev/me/repo/trainer:1' is not one of Vertex AI's prebuilt" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("job, key, says", [
    (JobSpecConf(image_uri="img:1", executor_image_uri=CPU_24), f"{KEY}.executor_image_uri", "set one of them"),
    (JobSpecConf(executor_image_uri="us-docker.pkg.dev/vertex-ai/training/pytorch-cpu.2-4.py310:v2"),
     f"{KEY}.executor_image_uri", "not one of Vertex AI's prebuilt"),
    (JobSpecConf(requirements={"torch": "2"}), f"{KEY}.requirements", "a list of pip requirements"),
    (JobSpecConf(worker_pools=[WorkerPoolConf(command=["/bin/sidecar"])]), f"{KEY}.worker_pools[0].image_uri",
     "needs its own image_uri"),
])  # fmt: skip
def test_settings_of_the_package_path_name_their_key(job: JobSpecConf, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        _packaging.validate(job, KEY, packages=True)
    assert info.value.key == key and says in str(info.value)


def test_the_image_fits_the_apps_torch_and_the_pools_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaging, "_torch_version", lambda key: "2.3")
    job = JobSpecConf(worker_pools=[WorkerPoolConf(accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1)])
    cpu, gpu = _packaging.choose_images(job, KEY, "asia-northeast1", ["torch==2.3.1"])
    assert (cpu, gpu) == ("asia-docker.pkg.dev/vertex-ai/training/pytorch-cpu.2-3.py310:latest",
                          "asia-docker.pkg.dev/vertex-ai/training/pytorch-gpu.2-3.py310:latest")
    # an explicit executor image wins
    assert _packaging.choose_images(JobSpecConf(executor_image_uri=GPU_24), KEY, "us-central1", ["torch"]) == (GPU_24, GPU_24)


def test_no_fitting_image_names_the_key_and_the_nearest_images(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_packaging, "_torch_version", lambda key: "2.9")
    with pytest.raises(ConfigError) as info:
        _packaging.choose_images(JobSpecConf(), KEY, "us-central1", ["lightning"])
    assert info.value.key == f"{KEY}.executor_image_uri"
    assert "torch 2.9" in str(info.value) and CPU_24 in str(info.value)  # the nearest: 2.4


def test_the_image_table_records_its_facts() -> None:
    for image in TRAINING_IMAGES:
        assert image.framework and image.version and image.python and image.accelerator in ("cpu", "gpu", "tpu")
        assert len(image.end_of_availability) == 10  # an ISO date
        for region in ("us", "europe", "asia"):
            assert training_image(image.uri(region)) == image


# --- requirements --------------------------------------------------------------------------------------


def test_requirements_default_to_the_snapshot_roots_then_a_list_or_a_file(tmp_path: Path) -> None:
    from importlib.metadata import version

    pins = [f"hydra-core=={version('hydra-core')}", f"omegaconf=={version('omegaconf')}"]
    assert _packaging.pinned(_packaging.read_requirements(None, tmp_path, KEY), KEY) == pins
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\ndependencies = ["numpy>=1.26", "hydra-core"]\n')
    assert _packaging.pinned(_packaging.read_requirements(None, tmp_path, KEY), KEY) == pins + ["numpy>=1.26"]
    (tmp_path / "requirements.txt").write_text("# ours\nscikit-learn>=1.3  # a comment\n\nrich\n")
    assert _packaging.read_requirements(None, tmp_path, KEY) == ["scikit-learn>=1.3", "rich"]  # wins over pyproject
    other = tmp_path / "gpu.txt"
    other.write_text("lightning>=2.4\n")
    assert _packaging.read_requirements(str(other), tmp_path, KEY) == ["lightning>=2.4"]
    assert _packaging.read_requirements(["pandas"], tmp_path, KEY) == ["pandas"]


@pytest.mark.parametrize("requirements, says", [
    (["hydra-core==1.2.0"], "excludes hydra-core"),
    (["not a requirement!"], "is not a pip requirement"),
    ("missing.txt", "no requirements file"),
])  # fmt: skip
def test_bad_requirements_name_the_key(requirements: Any, says: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _packaging.pinned(_packaging.read_requirements(requirements, tmp_path, f"{KEY}.requirements"), f"{KEY}.requirements")
    assert info.value.key == f"{KEY}.requirements" and says in str(info.value)


def test_pip_options_cannot_travel_as_dependencies(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("--index-url https://example.com/simple\ntorch\n")
    with pytest.raises(ConfigError, match="no pip options"):
        _packaging.read_requirements(None, tmp_path, f"{KEY}.requirements")


def test_the_wheel_of_this_package_is_built_from_its_files_and_is_deterministic() -> None:
    import io

    name, data = _packaging.own_wheel()
    assert _packaging.own_wheel() == (name, data)  # equal bytes: one staged copy
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = wheel.namelist()
        meta = wheel.read("hydra_vertex_ai-0.1.0.dist-info/METADATA").decode()
    here = Path(_packaging.__file__).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        assert wheel.read("hydra_plugins/hydra_vertex_ai/_packaging.py") == here  # this checkout's code, as it is
    assert "hydra_plugins/hydra_vertex_ai/entry.py" in names and "hydra_plugins/hydra_vertex_ai/_backends/processes.py" in names
    assert not any("__pycache__" in n for n in names)
    assert "Requires-Dist: hydra-core" in meta and "google-cloud-aiplatform" not in meta  # host-only: not installed


# --- staged once, run in a cached environment ----------------------------------------------------------


def task(cfg: Any) -> int:
    return int(cfg.tag) * 10


def _package_uploads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    uploads: List[str] = []
    write = _storage.write_bytes

    def counting(uri: str, data: bytes) -> None:
        if "/packages/" in uri:
            uploads.append(uri)
        write(uri, data)

    monkeypatch.setattr(_storage, "write_bytes", counting)
    return uploads


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_packages_are_staged_once_for_all_jobs_and_again_only_when_they_change(
    vertex_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads = _package_uploads(monkeypatch)
    base = ["hydra/launcher=vertex_ai", *NO_IMAGE, f"{KEY}.executor_image_uri={CPU_24}", f"out_dir={tmp_path / 'rec'}"]

    def launch(name: str, *extra: str) -> None:
        overrides = [*base, *extra, f"hydra.job.name={name}", f"hydra.sweep.dir={tmp_path / name}"]
        rets = launch_in_process(task, [[f"tag={i}"] for i in range(3)], overrides)
        assert [r.return_value for r in rets] == [0, 10, 20]

    launch("pkg-first", f"{KEY}.requirements=[numpy]")
    assert len(uploads) == 2, uploads  # this package and the requirements, once for three jobs
    jobs = [j for j in vertex_emulator.jobs() if j["displayName"].startswith("pkg-first-")]
    assert len(jobs) == 3 and all("pythonPackageSpec" in pools_of(j)[0] for j in jobs)

    launch("pkg-again", f"{KEY}.requirements=[numpy]")
    assert len(uploads) == 2, "unchanged code and requirements were uploaded again"

    launch("pkg-changed", f"{KEY}.requirements=[numpy,pyyaml]")
    assert len(uploads) == 3 and uploads[-1].endswith("hydra_vertex_ai_requirements-1.0-py3-none-any.whl")


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_the_local_backend_runs_the_packages_in_a_cached_environment(
    tmp_path: Path, venv_cache: Path
) -> None:
    overrides = [*VERTEX_LOCAL, f"{KEY}.executor_image_uri={CPU_24}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                 f"out_dir={tmp_path / 'rec'}"]
    rets = launch_in_process(task, [["tag=1"], ["tag=2"]], overrides)
    assert [r.return_value for r in rets] == [10, 20]
    logs = sorted((tmp_path / "sweep" / ".vertex_ai").glob("*/jobs/*/workerpool0-0.log"))
    assert len(logs) == 2
    envs = set()
    for log in logs:
        lines = log.read_text().splitlines()
        assert lines[0].startswith(f"[hydra-vertex-ai] python packages: environment {venv_cache / 'venvs'}")
        assert lines[-1].startswith("[hydra-vertex-ai] ran for ")  # install and run timed apart
        envs.add(Path(lines[0].split()[4]))
    [env] = envs  # one environment for both jobs, with this package installed in it
    assert list(env.glob("lib/python*/site-packages/hydra_plugins/hydra_vertex_ai/entry.py"))


# --- the emulator refuses what Vertex refuses ----------------------------------------------------------


def _package_job(**spec: Any) -> Dict[str, Any]:
    package = {"executorImageUri": CPU_24, "packageUris": [f"{STAGING}/packages/x/app-1.0-py3-none-any.whl"],
               "pythonModule": "app.main", **spec}
    return {"displayName": "refused", "jobSpec": {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1", "pythonPackageSpec": package}]}}


@pytest.mark.parametrize("spec, says", [
    ({"executorImageUri": "us-docker.pkg.dev/me/repo/trainer:1"}, "executor_image_uri: 'us-docker.pkg.dev/me/repo"),
    ({"packageUris": ["/tmp/app-1.0-py3-none-any.whl"]}, "is not a Cloud Storage URI"),
    ({"packageUris": [f"gs://b/p{i}.whl" for i in range(101)]}, "at most 100 packages"),
    ({"pythonModule": ""}, "python_package_spec.python_module; Message: Required field is not set"),
])  # fmt: skip
def test_the_emulator_refuses_package_specs_vertex_refuses(vertex_emulator: Any, spec: Dict[str, Any], says: str) -> None:
    import grpc
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1

    from hydra_plugins.hydra_vertex_ai._backends.vertex_client import proto_of

    channel = grpc.insecure_channel(EMULATOR_ADDRESS)
    transport = aiplatform_v1.services.job_service.transports.JobServiceGrpcTransport(channel=channel)
    client = aiplatform_v1.JobServiceClient(transport=transport)
    with pytest.raises(exceptions.InvalidArgument, match=says.replace("(", r"\(").replace(".", r"\.")):
        client.create_custom_job(parent="projects/p/locations/us-central1",
                                 custom_job=proto_of(aiplatform_v1.CustomJob, _package_job(**spec)))


def test_a_pool_with_both_a_container_and_a_package_cannot_be_sent() -> None:
    from google.cloud import aiplatform_v1
    from google.protobuf.json_format import ParseError

    from hydra_plugins.hydra_vertex_ai._backends.vertex_client import proto_of

    job = _package_job()
    job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"] = {"imageUri": "img:1"}
    with pytest.raises(ParseError, match="multiple \"task\" oneof fields"):  # WorkerPoolSpec's one-of `task`
        proto_of(aiplatform_v1.CustomJob, job)


# --- the Lightning example, without an image -----------------------------------------------------------


def test_the_lightning_sweep_runs_through_the_emulator_without_an_image(vertex_emulator: Any, tmp_path: Path) -> None:
    sweeper = [o.replace("hydra.launcher.", "hydra.sweeper.") for o in NO_IMAGE]
    sweep_dir = tmp_path / "sweep"
    proc = run_example(["-m", "hydra/sweeper=vertex_vizier", *sweeper,
                        # torch here has no prebuilt image of its version: name the nearest; requirements pin ours
                        f"hydra.sweeper.job.executor_image_uri={CPU_24}",
                        f"hydra.sweeper.job.requirements={EXAMPLE / 'requirements.txt'}",
                        "hydra.sweeper.goal=maximize", "hydra.sweeper.metric_id=val_acc",
                        "hydra.sweeper.max_trial_count=2", "hydra.sweeper.parallel_trial_count=2",
                        "hydra.sweeper.algorithm=grid", "optimizer=adam,sgd", "trainer.max_epochs=1",
                        f"hydra.sweep.dir={sweep_dir}"])
    import yaml

    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert [t["state"] for t in results["trials"]] == ["SUCCEEDED"] * 2
    [study] = [j for j in vertex_emulator.jobs("hyperparameterTuningJobs") if j["name"] == results["tuning_job"]]
    [pool] = study["trialJobSpec"]["workerPoolSpecs"]
    assert pool["pythonPackageSpec"]["executorImageUri"] == CPU_24 and "containerSpec" not in pool
    assert "7 requirement(s)" in proc.stdout + proc.stderr


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_a_requirement_missing_here_fails_the_job_and_is_never_downloaded(tmp_path: Path) -> None:
    from hydra.core.utils import JobStatus

    overrides = [*VERTEX_LOCAL, f"{KEY}.executor_image_uri={CPU_24}", f"{KEY}.requirements=[no-such-package-hydra-i19]",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}"]
    [ret] = launch_in_process(task, [["tag=1"]], overrides)
    assert ret.status == JobStatus.FAILED
    message = str(ret._return_value)
    assert "python packages could not be installed" in message and "no-such-package-hydra-i19" in message
