"""The vertex backend against the local JobService emulator and a Cloud Storage emulator (no cloud, no network)."""
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List
from unittest import mock

import cloudpickle
import pytest
from conftest import (
    BUCKET,
    EMULATOR_ADDRESS,
    PROBE,
    VERTEX_OVERRIDES,
    SnapshotCwdSuite,
    emulator_backend,
    finish,
    launch_in_process,
    trivial_job,
    wait_for,
)
from hydra.core.utils import JobStatus
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from omegaconf import DictConfig

from hydra_plugins.hydra_vertex_ai._backends.vertex import VertexAPIError, VertexBackend, make_client
from hydra_plugins.hydra_vertex_ai._backends.vertex_outputs import LeftInBucket, OutputFilter, left_in_bucket
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai.config import VertexAILauncherConf

# The jobs import nothing from the tests directory (as in a container): ship this module's tasks by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

VERTEX = ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES]
TRANSIENT_CODES = ("UNAVAILABLE", "INTERNAL", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")


# --- Hydra's own suites ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("vertex_emulator")
@pytest.mark.parametrize("launcher_name, overrides", [("vertex_ai", VERTEX_OVERRIDES)])
class TestVertexLauncherSuite(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    # output_sync_s=0: the suite checks that the job's cwd (chdir=True) is the configured dir on the mount; by
    # default the job runs in a local copy of it (see test_output_sync.py)
    [({}, ["-m", "hydra/launcher=vertex_ai", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled",
           "hydra.launcher.job.output_sync_s=0"] + VERTEX_OVERRIDES)],
    ids=["vertex_emulated"],
)
class TestVertexIntegrationSuite(SnapshotCwdSuite, IntegrationTestSuite):
    @pytest.fixture(autouse=True)
    def _jobs_dir(self, fuse_standin: Path) -> None:
        # Jobs run in the emulator's /gcs stand-in: <staging_dir>/sweeps/<sweep dir relative to the app's cwd>.
        self.app_dir = fuse_standin / "staging" / "sweeps"

    def get_test_app_working_dir(self) -> Path:
        return self.app_dir

    def job_dir(self, tmpdir: Path) -> Path:
        return self.app_dir / "cli_dir"  # the sweep dir's mirror in the bucket, through the FUSE stand-in


# --- tasks shipped to the emulated containers --------------------------------------------------------------


def times_ten(cfg: DictConfig) -> int:
    return int(cfg.tag) * 10


def misbehave(cfg: DictConfig) -> int:
    if cfg.tag == 1:
        print("job 1 crashes", flush=True)
        os._exit(3)  # FAILED, and no result
    if cfg.tag == 2:
        os._exit(0)  # SUCCEEDED, yet no result
    return int(cfg.tag) * 10


def _overrides(tmp_path: Path) -> List[str]:
    return VERTEX + [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}"]



def _sweep_jobs(emulator: Any, display_prefix: str) -> List[Dict[str, Any]]:
    return [j for j in emulator.jobs() if j["displayName"].startswith(display_prefix)]


# --- the launcher end to end -------------------------------------------------------------------------------


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_sweep_under_faults_creates_every_job_exactly_once(vertex_emulator: Any, tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    # 30% of all calls fail: 20% refused with mixed codes, 10% after their work was done (a create committed).
    vertex_emulator.knobs = Knobs(fail_rate=0.2, fail_codes=TRANSIENT_CODES, lose_reply_rate=0.1, seed=7)
    overrides = _overrides(tmp_path) + ["hydra.job.name=faults"]
    rets = launch_in_process(times_ten, [[f"tag={i}"] for i in range(20)], overrides)
    vertex_emulator.knobs = Knobs()

    assert [r.status for r in rets] == [JobStatus.COMPLETED] * 20
    assert [r.return_value for r in rets] == [i * 10 for i in range(20)]
    [sweep] = {j["labels"]["hydra_sweep"] for j in _sweep_jobs(vertex_emulator, "faults-")}
    uids = {f"{sweep}-{i}" for i in range(20)}
    assert {uid: vertex_emulator.creates_by_uid[uid] for uid in uids} == {uid: 1 for uid in uids}
    assert len(_sweep_jobs(vertex_emulator, "faults-")) == 20
    # the faults did happen: more create calls than jobs
    assert vertex_emulator.calls["CreateCustomJob"] > 20


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_a_failed_job_and_a_job_without_result_fail_alone(vertex_emulator: Any, tmp_path: Path) -> None:
    rets = launch_in_process(misbehave, [[f"tag={i}"] for i in range(4)], _overrides(tmp_path) + ["hydra.job.name=mixed"])

    assert [r.status for r in rets] == [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.FAILED, JobStatus.COMPLETED]
    assert [rets[0].return_value, rets[3].return_value] == [0, 30]
    crashed, vanished = str(rets[1]._return_value), str(rets[2]._return_value)
    assert "ended FAILED" in crashed and "exited with code 3" in crashed
    assert "console.cloud.google.com/agent-platform/locations/us-central1/training/" in crashed
    assert 'resource.type="ml_job"' in crashed  # the Cloud Logging filter
    assert "ended SUCCEEDED without a result" in vanished


def test_ctrl_c_cancels_every_unfinished_job(vertex_emulator: Any, tmp_path: Path) -> None:
    args = ["-m", *VERTEX, "mode=sleep", "tag=0,1,2,3", "hydra.job.name=sigint",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    app = subprocess.Popen(
        [sys.executable, str(PROBE), *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        # two run (the emulator's two slots), two are queued
        wait_for(lambda: len(list((tmp_path / "rec").glob("*.json"))) == 2, 120, "two sleeping jobs")
        app.send_signal(signal.SIGINT)
    finally:
        output = finish(app)
    assert app.returncode != 0, output
    assert "cancelled 4 unfinished Vertex AI job(s)" in output
    mine = {j["name"] for j in _sweep_jobs(vertex_emulator, "sigint-")}
    assert len(mine) == 4
    states = lambda: [j["state"] for j in vertex_emulator.jobs() if j["name"] in mine]  # noqa: E731
    wait_for(lambda: states() == ["JOB_STATE_CANCELLED"] * 4, 60, "the jobs to end CANCELLED")


# --- the backend on its own --------------------------------------------------------------------------------


def _backend(sweep_id: str, **kwargs: Any) -> VertexBackend:
    backend: VertexBackend = emulator_backend(sweep_id, **kwargs)
    return backend


def test_waiting_lists_the_sweep_and_never_gets_each_job(vertex_emulator: Any) -> None:
    sweep = "polling-20"
    before = dict(vertex_emulator.calls)
    backend = _backend(sweep)
    outcomes = backend.run_jobs([trivial_job(sweep, i) for i in range(20)])

    assert [o.state for o in outcomes] == ["JOB_STATE_SUCCEEDED"] * 20
    calls = {k: v - before.get(k, 0) for k, v in vertex_emulator.calls.items()}
    assert calls.get("GetCustomJob", 0) == 0
    assert calls["ListCustomJobs"] >= 2  # several polls while 20 jobs ran two at a time
    assert calls["CreateCustomJob"] == 20
    assert backend.calls_last_poll == 1  # 20 jobs fit one page: one call per poll


def test_a_permanent_error_fails_fast_with_the_servers_message(vertex_emulator: Any) -> None:
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    vertex_emulator.knobs = Knobs(fail_rate=1.0, fail_codes=("PERMISSION_DENIED",))
    before = vertex_emulator.calls["CreateCustomJob"]
    with pytest.raises(VertexAPIError, match="PERMISSION_DENIED: emulator: injected failure of CreateCustomJob"):
        _backend("denied").run_jobs([trivial_job("denied", i) for i in range(3)])
    vertex_emulator.knobs = Knobs()
    assert vertex_emulator.calls["CreateCustomJob"] - before <= 3  # never retried


def test_outputs_come_back_but_large_and_excluded_files_stay_in_the_bucket(
    vertex_emulator: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = "sync-outputs"
    # a 1 KB cap: model.bin (2 KB) is "large"; *.ckpt is excluded; everything else of the job's dir comes back
    which = OutputFilter(max_mb=1 / 1024, exclude=["*.ckpt"])
    backend = _backend(sweep, output_filter=which)
    container_dir = backend.container_path(str(tmp_path / "sweep"))
    writer = (
        "import os; from omegaconf import OmegaConf; "
        f"d = str(OmegaConf.create({{'d': '{container_dir}'}}).d) + '/0'; "
        "os.makedirs(d + '/.hydra'); os.makedirs(d + '/csv'); open(d + '/.hydra/config.yaml', 'w').write('a: 1'); "
        "open(d + '/job.log', 'w').write('hello'); open(d + '/csv/metrics.csv', 'w').write('step,loss'); "
        "open(d + '/model.bin', 'w').write('x' * 2048); open(d + '/last.ckpt', 'w').write('small')"
    )
    with caplog.at_level(logging.INFO, logger="hydra_plugins.hydra_vertex_ai._backends.vertex_outputs"):
        [outcome] = backend.run_jobs([trivial_job(sweep, 0, writer)], backend.outputs_of(str(tmp_path / "sweep")))

    assert outcome.state == "JOB_STATE_SUCCEEDED", outcome.error
    # when it was created, started and ended, as Vertex says (the report's durations and timeline)
    assert outcome.created_at and outcome.started_at and outcome.ended_at
    assert outcome.created_at <= outcome.started_at <= outcome.ended_at
    job_dir = tmp_path / "sweep" / "0"
    assert (job_dir / ".hydra" / "config.yaml").read_text() == "a: 1"
    assert (job_dir / "job.log").read_text() == "hello"
    assert (job_dir / "csv" / "metrics.csv").read_text() == "step,loss"  # the job's own files too
    assert not (job_dir / "model.bin").exists() and not (job_dir / "last.ckpt").exists()
    prefix = backend.outputs_of(str(tmp_path / "sweep"))[os.path.abspath(tmp_path / "sweep")] + "/"
    [line] = [r.getMessage() for r in caplog.records if "stayed in the bucket" in r.getMessage()]
    assert line.startswith("2 output file(s), 2.0 KB,") and line.endswith(prefix)
    assert left_in_bucket(str(tmp_path / "sweep")) == LeftInBucket(2, 2048 + 5, [prefix])


def test_include_globs_narrow_what_comes_back() -> None:
    which = OutputFilter(include=["*.log", "*/.hydra/*"])
    assert which.wanted("0/.hydra/config.yaml", 10) and which.wanted("3/train.log", 10)
    assert not which.wanted("0/probe.json", 10)
    assert not OutputFilter(max_mb=1).wanted("0/a.log", 2 * 1024 * 1024)


# --- endpoints and settings (unit level) -------------------------------------------------------------------


def test_a_loopback_endpoint_uses_plain_text_and_no_credentials() -> None:
    with mock.patch("google.auth.default", side_effect=AssertionError("ADC must not be used")), \
         mock.patch("grpc.secure_channel", side_effect=AssertionError("TLS must not be used")):  # fmt: skip
        client = make_client("us-central1", "127.0.0.1:1")
    assert client.transport.kind == "grpc"


@pytest.mark.parametrize("endpoint, target", [
    (None, "us-central1-aiplatform.googleapis.com:443"),
    ("vertex.example.com:443", "vertex.example.com:443"),
    ("10.1.2.3:8443", "10.1.2.3:8443"),
])  # fmt: skip
def test_other_endpoints_keep_tls_and_credentials(endpoint: Any, target: str) -> None:
    import grpc
    from google.auth.credentials import AnonymousCredentials

    secure = mock.MagicMock(wraps=grpc.secure_channel)
    with mock.patch("google.auth.default", return_value=(AnonymousCredentials(), "p")) as adc, \
         mock.patch("grpc.secure_channel", secure), \
         mock.patch("grpc.insecure_channel", side_effect=AssertionError("plain text must not be used")):  # fmt: skip
        make_client("us-central1", endpoint)
    assert adc.called
    assert secure.call_args.args[0] == target


def _conf(**changes: Any) -> VertexAILauncherConf:
    conf = VertexAILauncherConf(backend="vertex", project="p", staging_dir=f"gs://{BUCKET}/s")
    conf.job.image_uri = "img"
    for key, value in changes.items():
        obj = conf
        *path, last = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return conf


@pytest.mark.parametrize("changes, key", [
    ({"project": None}, "hydra.launcher.project"),
    ({"location": ""}, "hydra.launcher.location"),
    ({"staging_dir": "/tmp/staging"}, "hydra.launcher.staging_dir"),
    ({"api_endpoint": "localhost"}, "hydra.launcher.api_endpoint"),
    ({"create_rate_per_minute": 0}, "hydra.launcher.create_rate_per_minute"),
])  # fmt: skip
def test_settings_are_checked_before_anything_is_submitted(
    changes: Dict[str, Any], key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud default project either
    with pytest.raises(ConfigError) as info:
        VertexBackend.from_config(_conf(**changes), "hydra.launcher", "sweep")
    assert info.value.key == key


@pytest.mark.usefixtures("vertex_emulator")  # the backend connects before it is used
def test_project_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-env")
    backend = VertexBackend.from_config(_conf(project=None, api_endpoint=EMULATOR_ADDRESS), "hydra.launcher", "s")
    assert backend.parent == "projects/from-env/locations/us-central1"
    assert backend.staging.root == f"gs://{BUCKET}/s/s"
