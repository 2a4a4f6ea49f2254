"""Shared test helpers and fixtures.

- The probe app and helpers that launch it (local backend): PROBE, VERTEX_LOCAL, run_app, launch_in_process,
  records.
- A local Vertex AI JobService emulator and a Cloud Storage emulator, both on loopback, in the test process
  for the whole session (started on first use). The JobService port is chosen at import time so that test
  classes can put it in their (static) Hydra overrides.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest
from hydra.core.utils import JobReturn

TESTS = Path(__file__).parent
# The per-user sweep index (`hydra-vertex-ai list`) of this test session, never the user's own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="hydra-vertex-ai-state-")
# A Hydra app whose jobs record what they see (<out_dir>/<tag>.json) and misbehave on request (`mode`).
PROBE = TESTS / "apps" / "probe" / "my_app.py"
# `hydra/launcher=vertex_ai` on the local backend, two jobs at a time (the CI machine is small).
VERTEX_LOCAL: List[str] = ["hydra/launcher=vertex_ai", "hydra.launcher.backend=local", "hydra.launcher.max_parallel=2"]


def run_app(
    app: Path, args: Sequence[str], cwd: Path, timeout: float = 300, env: Optional[Dict[str, str]] = None
) -> "subprocess.CompletedProcess[str]":
    """Run a Hydra app in a fresh interpreter (no shell), capturing its output as text; `env` adds variables."""
    return subprocess.run(
        [sys.executable, str(app), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **env} if env else None,
    )


def records(out_dir: Path) -> Dict[int, Dict[str, Any]]:
    """tag -> what the probe job with that tag recorded; half-written records are skipped."""
    found: Dict[int, Dict[str, Any]] = {}
    for path in Path(out_dir).glob("*.json"):
        try:
            found[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
    return found


def launch_in_process(
    task: Callable[[Any], Any],
    job_overrides: Sequence[Sequence[str]],
    overrides: Sequence[str],
    config_dir: Path = PROBE.parent / "conf",
    config_name: str = "config",
) -> List[JobReturn]:
    """Compose `config_name` with `overrides` as a multirun and launch `job_overrides` with its launcher.

    Like Hydra's sweepers, every job also gets the non-hydra overrides of `overrides` before its own.
    """
    from hydra import initialize_config_dir
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext, RunMode

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        config = hydra.compose_config(config_name, list(overrides), run_mode=RunMode.MULTIRUN)
        HydraConfig.instance().set_config(config)
        context = HydraContext(config_loader=hydra.config_loader, callbacks=Callbacks(config))
        launcher = Plugins.instance().instantiate_launcher(hydra_context=context, task_function=task, config=config)
        # As Hydra's sweepers do: each job gets the task overrides of the command line, then its own.
        shared = [o for o in overrides if not _is_hydra_override(o)]
        return list(launcher.launch([shared + list(o) for o in job_overrides], initial_job_idx=0))


def _is_hydra_override(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds (a bounded loop)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def finish(app: "subprocess.Popen[Any]", timeout: float = 90) -> str:
    """Wait for `app` to exit (killed if it outlives `timeout`, so no test leaves it behind); its output as text."""
    try:
        app.wait(timeout=timeout)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    output = app.stdout.read() if app.stdout else ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


BUCKET = "hydra-test"
STAGING = f"gs://{BUCKET}/staging"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


EMULATOR_PORT = _free_port()
EMULATOR_ADDRESS = f"127.0.0.1:{EMULATOR_PORT}"

# `hydra/launcher=vertex_ai` on the vertex backend, against the emulators; fast polls and retries.
VERTEX_OVERRIDES: List[str] = [
    "hydra.launcher.backend=vertex",
    f"hydra.launcher.api_endpoint={EMULATOR_ADDRESS}",
    "hydra.launcher.project=test-project",
    "hydra.launcher.location=us-central1",
    f"hydra.launcher.staging_dir={STAGING}",
    "hydra.launcher.job.image_uri=local/hydra-test:latest",
    "hydra.launcher.poll_interval_s=0.2",
    "hydra.launcher.retry_initial_s=0.05",
    "hydra.launcher.retry_timeout_s=60",
]


def emulator_backend(sweep_id: str, **kwargs: Any) -> Any:
    """A VertexBackend on the session's emulator, with fast polls and retries and no create rate limit."""
    from hydra_plugins.hydra_vertex_ai._backends.vertex import VertexBackend, make_client

    settings: Dict[str, Any] = dict(poll_interval_s=0.2, retry_initial_s=0.05, retry_timeout_s=30,
                                    create_rate_per_minute=6000)
    settings.update(kwargs)
    return VertexBackend(
        make_client("us-central1", EMULATOR_ADDRESS), project="test-project", location="us-central1",
        staging_dir=STAGING, sweep_id=sweep_id, **settings,
    )


def trivial_job(sweep_id: str, num: int, code: str = "import time; time.sleep(0.2)") -> Dict[str, Any]:
    """A one-pool CustomJob of sweep `sweep_id` (labels as the launcher sets them) running `code`."""
    return {
        "displayName": f"{sweep_id}-{num}",
        "labels": {"hydra_sweep": sweep_id, "hydra_job": str(num), "hydra_uid": f"{sweep_id}-{num}"},
        "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
            "containerSpec": {"imageUri": "local/test", "command": ["python", "-c", code]},
        }]},
    }  # fmt: skip


# a trial that reports loss = (x - 2)^2 through cloudml-hypertune
REPORT_LOSS = (
    "import sys, hypertune; x = float(sys.argv[-1].split('=')[1]); "
    "hypertune.HyperTune().report_hyperparameter_tuning_metric(hyperparameter_metric_tag='loss', metric_value=(x - 2) ** 2)"
)


def tuning_job_spec(name: str, code: str = REPORT_LOSS, trials: int = 3) -> Dict[str, Any]:
    """A REST HyperparameterTuningJob of `trials` grid trials over x in 1..3, each running `code` (a trial's
    last argument is --x=VALUE)."""
    return {
        "displayName": name,
        "labels": {"hydra_uid": name},
        "maxTrialCount": trials,
        "parallelTrialCount": 2,
        "studySpec": {
            "metrics": [{"metricId": "loss", "goal": "MINIMIZE"}],
            "parameters": [{"parameterId": "x", "discreteValueSpec": {"values": [1, 2, 3]}}],
            "algorithm": "GRID_SEARCH",
        },
        "trialJobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
            "containerSpec": {"imageUri": "local/test", "command": ["python", "-c", code]},
        }]},
    }  # fmt: skip


@pytest.fixture(autouse=True)
def _hydra_version_base_restored() -> Iterator[None]:
    """Hydra keeps its version base process-wide, and it sets hydra.job.chdir's default: a test that initializes
    Hydra with version_base="1.3" would make Hydra's own launcher suites, later in this process, run their jobs
    in the original directory instead of their output dir."""
    from hydra.version import VersionBase

    base = VersionBase.instance().getbase()
    yield
    VersionBase.instance().version_base = base


@pytest.fixture(scope="session")
def storage_emulator() -> Iterator[str]:
    """gcp-storage-emulator in memory; STORAGE_EMULATOR_HOST points every process of the session at it."""
    from hydra_plugins.hydra_vertex_ai._emulator import StorageEmulator

    server = StorageEmulator()
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.host
    try:
        yield server.host
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        server.stop()
        _reset_storage_clients()


def _reset_storage_clients() -> None:
    from hydra_plugins.hydra_vertex_ai import _storage

    _storage._clients.clear()


@pytest.fixture(scope="session")
def bucket(storage_emulator: str) -> str:
    """The staging bucket, created in the storage emulator."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    if client.lookup_bucket(BUCKET) is None:
        client.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture(scope="session")
def _emulator_session(tmp_path_factory: pytest.TempPathFactory, bucket: str) -> Iterator[object]:
    from hydra_plugins.hydra_vertex_ai import _emulator

    with _emulator.running(tmp_path_factory.mktemp("vertex-emulator"), max_running=2, port=EMULATOR_PORT) as emu:
        yield emu


@pytest.fixture
def vertex_emulator(_emulator_session: object) -> Iterator[object]:
    """The session's JobService emulator (address EMULATOR_ADDRESS) with its knobs reset around each test."""
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    emu = _emulator_session
    emu.knobs = Knobs()  # type: ignore[attr-defined]
    yield emu
    emu.knobs = Knobs()  # type: ignore[attr-defined]


@pytest.fixture
def fuse_standin(vertex_emulator: object) -> Path:
    """Where the emulated containers see gs://BUCKET/...: the stand-in of Vertex's /gcs/BUCKET mount."""
    return Path(vertex_emulator.fuse_root) / BUCKET  # type: ignore[attr-defined]


class SnapshotCwdSuite:
    """Overrides of two tests of Hydra's IntegrationTestSuite, for a launcher whose jobs start in the snapshot's
    copy of the launch dir (README, "Shipping your code"): Hydra's expect get_original_cwd() to name the launch
    dir on this machine, ours names that copy. `job_dir(tmpdir)` is where a job whose sweep dir is
    `tmpdir/cli_dir` writes it (the subclass knows: in place, or in the bucket's FUSE stand-in)."""

    def job_dir(self, tmpdir: Path) -> Path:
        raise NotImplementedError

    def test_get_orig_dir_multirun(self, tmpdir: Path, task_launcher_cfg: Any, extra_flags: List[str]) -> None:
        from hydra.test_utils.test_utils import integration_test
        from omegaconf import OmegaConf

        integration_test(tmpdir=tmpdir, task_config=OmegaConf.create(), overrides=extra_flags,
                         prints="str(hydra.utils.get_original_cwd() == os.getcwd() != " + repr(os.path.realpath(tmpdir)) + ")",
                         expected_outputs="True")

    def test_to_absolute_path_multirun(self, tmpdir: Path, task_launcher_cfg: Any, extra_flags: List[str]) -> None:
        from hydra.test_utils.test_utils import integration_test
        from omegaconf import OmegaConf

        overrides = extra_flags + ["hydra.job.chdir=True", f"hydra.sweep.dir={Path(tmpdir) / 'cli_dir'}",
                                   "hydra.sweep.subdir=cli_dir_${hydra.job.num}"]
        integration_test(tmpdir=tmpdir, task_config=OmegaConf.create(), overrides=overrides,
                         prints=["hydra.utils.to_absolute_path('/foo/bar')",
                                 "str(hydra.utils.to_absolute_path('foo/bar') == "
                                 "os.path.join(hydra.utils.get_original_cwd(), 'foo/bar'))", "os.getcwd()"],
                         expected_outputs=[str(Path("/foo/bar").absolute()), "True",
                                           str(self.job_dir(Path(tmpdir)) / "cli_dir_0")])

