"""Nothing left running, nothing lost: signals, outages, quotas and bad input on the vertex backend (emulated).

Each test drives the real launcher, sweeper or backend against the JobService emulator, with its fault knobs
standing in for a bad day at Vertex; those that start billed jobs end with none of them unfinished.
"""
import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import cloudpickle
import pytest
from conftest import (
    BUCKET,
    PROBE,
    STAGING,
    VERTEX_OVERRIDES,
    emulator_backend,
    finish,
    launch_in_process,
    tuning_job_spec,
    wait_for,
)
from hydra.core.utils import JobStatus
from omegaconf import DictConfig

from hydra_plugins.hydra_vertex_ai._backends.vertex import VertexAPIError, VertexBackend, make_client
from hydra_plugins.hydra_vertex_ai._emulator import Knobs
from hydra_plugins.hydra_vertex_ai._signals import Terminated, deferred

# The jobs import nothing from the tests directory (as in a container): ship this module's tasks by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

VERTEX = ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES]
QUADRATIC = Path(__file__).parent / "apps" / "quadratic" / "app.py"
SWEEPER = [o.replace("hydra.launcher.", "hydra.sweeper.") for o in VERTEX_OVERRIDES]
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
L4_QUOTA = "aiplatform.googleapis.com/custom_model_training_nvidia_l4_gpus"


# --- helpers -----------------------------------------------------------------------------------------------


def _jobs(emulator: Any, sweep_prefix: str, kind: str = "customJobs") -> List[Dict[str, Any]]:
    return [j for j in emulator.jobs(kind) if j["displayName"].startswith(sweep_prefix)]


def _unfinished(emulator: Any, prefix: str, kind: str = "customJobs") -> List[str]:
    return [j["name"] for j in _jobs(emulator, prefix, kind) if j["state"] not in TERMINAL]


def _cancel_leftovers(emulator: Any, prefix: str, kind: str = "customJobs") -> None:
    """A failing test must not leave emulated jobs (and their processes) running."""
    emulator.knobs = Knobs()
    for name in _unfinished(emulator, prefix, kind):
        try:
            emulator._cancel(name, kind)
        except Exception:
            pass


def _launch(tmp_path: Path, name: str, *overrides: str) -> "subprocess.Popen[str]":
    args = ["-m", *VERTEX, f"hydra.job.name={name}", f"out_dir={tmp_path / 'rec'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]  # fmt: skip
    return subprocess.Popen([sys.executable, str(PROBE), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _sweep(tmp_path: Path, *overrides: str) -> "subprocess.Popen[str]":
    cmd = [sys.executable, str(QUADRATIC), "-m", "hydra/sweeper=vertex_vizier", *SWEEPER,
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.parallel_trial_count=2", *overrides]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _recorded(tmp_path: Path) -> int:
    return len(list((tmp_path / "rec").glob("*.json")))


def _backend(sweep_id: str, **kwargs: Any) -> VertexBackend:
    backend: VertexBackend = emulator_backend(sweep_id, **kwargs)
    return backend


def _job(sweep_id: str, num: int, code: str = "import time; time.sleep(0.2)", gpus: int = 0) -> Dict[str, Any]:
    machine: Dict[str, Any] = {"machineType": "n1-standard-4"}
    if gpus:  # g2-standard-4 comes with 1 L4 (_vertex_facts.GPU_MACHINES)
        machine = {"machineType": "g2-standard-4", "acceleratorType": "NVIDIA_L4", "acceleratorCount": gpus}
    return {
        "displayName": f"{sweep_id}-{num}",
        "labels": {"hydra_sweep": sweep_id, "hydra_job": str(num), "hydra_uid": f"{sweep_id}-{num}"},
        "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": machine, "replicaCount": "1",
            "containerSpec": {"imageUri": "local/test", "command": ["python", "-c", code]},
        }]},
    }  # fmt: skip


@pytest.fixture
def sleepers(vertex_emulator: Any) -> Iterator[List[str]]:
    """Display-name prefixes of the test's jobs; whatever is left of them is cancelled afterwards."""
    prefixes: List[str] = []
    yield prefixes
    for prefix in prefixes:
        _cancel_leftovers(vertex_emulator, prefix)
        _cancel_leftovers(vertex_emulator, prefix, "hyperparameterTuningJobs")


# --- 1. SIGTERM and SIGHUP act as Ctrl-C ---------------------------------------------------------------------


@pytest.mark.parametrize("sig, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
                         ids=["sigint", "sigterm"])
def test_an_interrupt_in_a_deferred_block_acts_when_the_block_ends(sig: signal.Signals, raised: type) -> None:
    # e.g. a create handed to a thread and recorded as in flight: torn apart, the job would escape the cancel
    before = signal.getsignal(sig)
    done: List[str] = []
    with pytest.raises(raised):
        with deferred():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler has run by now
            done.append("the block's end")
    assert done == ["the block's end"]
    assert signal.getsignal(sig) is before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_sigterm_and_sighup_cancel_every_vertex_job(
    vertex_emulator: Any, sleepers: List[str], tmp_path: Path, sig: signal.Signals
) -> None:
    name = f"term{sig.value}"
    sleepers.append(f"{name}-")
    app = _launch(tmp_path, name, "mode=sleep", "tag=0,1,2")
    wait_for(lambda: _recorded(tmp_path) == 2, 120, "two sleeping jobs")
    app.send_signal(sig)
    output = finish(app)

    assert app.returncode != 0, output
    assert f"Interrupted (received {sig.name}): cancelled 3 unfinished Vertex AI job(s)" in output, output
    wait_for(lambda: not _unfinished(vertex_emulator, f"{name}-"), 30, "no unfinished job")
    assert len(_jobs(vertex_emulator, f"{name}-")) == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_cancel_the_tuning_job(
    vertex_emulator: Any, sleepers: List[str], tmp_path: Path, sig: signal.Signals
) -> None:
    sleepers.append("app-")
    before = {j["name"] for j in vertex_emulator.jobs("hyperparameterTuningJobs")}
    app = _sweep(tmp_path, "sleep_s=60", "x=interval(0,4)", "hydra.sweeper.max_trial_count=4")
    new = lambda: [j for j in vertex_emulator.jobs("hyperparameterTuningJobs") if j["name"] not in before]  # noqa: E731
    wait_for(lambda: any(j["state"] == "JOB_STATE_RUNNING" for j in new()), 120, "the tuning job to run")
    app.send_signal(sig)
    output = finish(app)

    assert app.returncode != 0
    assert "Interrupted: cancelled Vertex AI tuning job" in output, output
    wait_for(lambda: [j["state"] for j in new()] == ["JOB_STATE_CANCELLED"], 60, "the tuning job to end CANCELLED")


# --- 2. a second Ctrl-C does not abort the cancellation --------------------------------------------------------


def test_a_second_ctrl_c_does_not_stop_the_cancellation(vertex_emulator: Any, sleepers: List[str], tmp_path: Path) -> None:
    sleepers.append("twice-")
    app = _launch(tmp_path, "twice", "mode=sleep", "tag=0,1,2,3")
    wait_for(lambda: _recorded(tmp_path) == 2, 120, "two sleeping jobs")
    vertex_emulator.knobs = Knobs(latency_s=0.4)  # the API at 400 ms a call: the cancellation takes a while
    app.send_signal(signal.SIGINT)
    time.sleep(0.3)  # not a timing assertion: the impatient user's second and third Ctrl-C
    app.send_signal(signal.SIGINT)
    time.sleep(0.3)
    app.send_signal(signal.SIGINT)
    output = finish(app)
    vertex_emulator.knobs = Knobs()

    assert "Cancellation in progress, please wait" in output, output
    assert "cancelled 4 unfinished Vertex AI job(s)" in output, output
    assert not _unfinished(vertex_emulator, "twice-")
    assert len(_jobs(vertex_emulator, "twice-")) == 4


# --- 3. Ctrl-C during create backoff acts at once; a create that committed is found and cancelled ----------


def test_ctrl_c_during_create_backoff_cancels_at_once(vertex_emulator: Any, sleepers: List[str], tmp_path: Path) -> None:
    sleepers.append("backoff-")
    # Every create commits and loses its reply (then backs off 60 s before looking it up); past two creates a
    # minute, the rate quota refuses them (backoff too). Nothing but the label lookup knows the jobs exist.
    vertex_emulator.knobs = Knobs(lose_reply_rate=1.0, lose_reply_codes=("UNAVAILABLE",),
                                  fault_methods=("CreateCustomJob",), quota_creates_per_minute=2)
    app = _launch(tmp_path, "backoff", "mode=sleep", "tag=0,1,2,3", "hydra.launcher.retry_initial_s=60")
    try:
        wait_for(lambda: _recorded(tmp_path) == 2 and vertex_emulator.calls["CreateCustomJob"] >= 4, 120,
                 "two running jobs and two refused creates")
        app.send_signal(signal.SIGINT)
        output = finish(app, timeout=30)  # well under the 60 s backoff
    finally:
        vertex_emulator.knobs = Knobs()

    assert "Interrupted" in output and "cancelled 2 unfinished Vertex AI job(s)" in output, output
    assert not _unfinished(vertex_emulator, "backoff-")
    assert len(_jobs(vertex_emulator, "backoff-")) == 2  # the refused ones were never created


# --- 4. Ctrl-C while the sweeper creates its tuning job --------------------------------------------------------


def test_ctrl_c_during_the_tuning_job_create_cancels_it(vertex_emulator: Any, sleepers: List[str], tmp_path: Path) -> None:
    sleepers.append("app-")
    before = {j["name"] for j in vertex_emulator.jobs("hyperparameterTuningJobs")}
    calls = vertex_emulator.calls["CreateHyperparameterTuningJob"]
    # the create is on the wire for 3 s and commits at its end
    vertex_emulator.knobs = Knobs(latency_s=3.0, fault_methods=("CreateHyperparameterTuningJob",))
    app = _sweep(tmp_path, "sleep_s=60", "x=interval(0,4)", "hydra.sweeper.max_trial_count=4")
    try:
        wait_for(lambda: vertex_emulator.calls["CreateHyperparameterTuningJob"] > calls, 120, "the create call")
        app.send_signal(signal.SIGINT)
        output = finish(app)
    finally:
        vertex_emulator.knobs = Knobs()
    new = [j for j in vertex_emulator.jobs("hyperparameterTuningJobs") if j["name"] not in before]

    assert app.returncode != 0
    assert len(new) == 1
    assert f"hydra.sweeper.resume={new[0]['name']}" in output, output  # its name, for resume=
    assert f"cancelled Vertex AI tuning job {new[0]['name']}" in output, output
    wait_for(lambda: not _unfinished(vertex_emulator, "app-", "hyperparameterTuningJobs"), 30, "the job to end")


def test_ctrl_c_while_the_tuning_job_is_being_recorded_cancels_it(
    vertex_emulator: Any, sleepers: List[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The job exists and the sweeper is writing its name to the manifest (Cloud Storage I/O) when Ctrl-C lands.
    sleepers.append("recording-")
    backend = _backend("recording")

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt

    backend.on_tuning_created = interrupted
    with pytest.raises(KeyboardInterrupt):
        backend.run_tuning_job(tuning_job_spec("recording-1", "import time; time.sleep(120)", trials=2))
    [job] = _jobs(vertex_emulator, "recording-", "hyperparameterTuningJobs")

    assert f"Interrupted: cancelled Vertex AI tuning job {job['name']}" in capsys.readouterr().err
    assert backend.partial_tuning is not None and backend.partial_tuning.name == job["name"]
    wait_for(lambda: not _unfinished(vertex_emulator, "recording-", "hyperparameterTuningJobs"), 30, "the job to end")


def test_a_manifest_that_cannot_be_written_does_not_stop_the_study(
    vertex_emulator: Any, sleepers: List[str], caplog: pytest.LogCaptureFixture
) -> None:
    sleepers.append("unrecorded-")
    backend = _backend("unrecorded")

    def bucket_down(name: str) -> None:
        raise OSError("503 Service Unavailable")

    backend.on_tuning_created = bucket_down
    outcome = backend.run_tuning_job(tuning_job_spec("unrecorded-1"))

    assert outcome.state == "JOB_STATE_SUCCEEDED" and len(outcome.trials) == 3
    assert f"could not record tuning job {outcome.name}" in caplog.text and "503" in caplog.text


# --- 5. an outage longer than the retry budget ---------------------------------------------------------------


def test_an_outage_longer_than_the_retry_budget_cancels_nothing(vertex_emulator: Any, sleepers: List[str]) -> None:
    sweep = "outage"
    sleepers.append(f"{sweep}-")
    backend = _backend(sweep, retry_timeout_s=1.0)
    errors: List[BaseException] = []

    def run() -> None:
        try:
            backend.run_jobs([_job(sweep, i, "import time; time.sleep(300)") for i in range(2)])
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: [j["state"] for j in _jobs(vertex_emulator, f"{sweep}-")] == ["JOB_STATE_RUNNING"] * 2, 60,
             "both jobs running")
    vertex_emulator.knobs = Knobs(fail_rate=1.0, fail_codes=("UNAVAILABLE",))  # the service is gone
    thread.join(timeout=30)
    vertex_emulator.knobs = Knobs()  # ... and back

    assert not thread.is_alive()
    [error] = errors
    assert isinstance(error, VertexAPIError)
    message = str(error)
    assert "Interrupted" not in message and "nothing was cancelled" in message
    assert "hydra.launcher.attach=outage" in message and "gcloud ai custom-jobs cancel" in message
    assert len(_unfinished(vertex_emulator, f"{sweep}-")) == 2  # they ran on: the user decides


def test_unconfirmed_cancels_are_reported_with_the_command(
    vertex_emulator: Any, sleepers: List[str], capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = "nocancel"
    sleepers.append(f"{sweep}-")
    backend = _backend(sweep, retry_timeout_s=1.0)
    names = lambda: [j["name"] for j in _jobs(vertex_emulator, f"{sweep}-")]  # noqa: E731

    def interrupt_when_running() -> None:
        wait_for(lambda: [j["state"] for j in _jobs(vertex_emulator, f"{sweep}-")] == ["JOB_STATE_RUNNING"] * 2, 60,
                 "both jobs running")
        vertex_emulator.knobs = Knobs(fail_rate=1.0, fail_codes=("UNAVAILABLE",), fault_methods=("CancelCustomJob",))
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        backend.run_jobs([_job(sweep, i, "import time; time.sleep(300)") for i in range(2)])
    vertex_emulator.knobs = Knobs()
    report = capsys.readouterr().err

    assert "Interrupted: cancelled 0 unfinished" in report
    assert "Could NOT confirm the cancellation of 2 job(s)" in report
    for name in names():
        assert f"gcloud ai custom-jobs cancel {name.split('/')[-1]} --region=us-central1" in report
    assert "hydra.launcher.attach=nocancel" in report


# --- 6 and 7. unreadable results fail one job or trial each ------------------------------------------------


def test_a_truncated_trial_result_fails_that_trial_only(storage_emulator: str, bucket: str) -> None:
    from hydra.core.utils import JobReturn
    from omegaconf import OmegaConf

    from hydra_plugins.hydra_vertex_ai import _payload, _storage, _sweep
    from hydra_plugins.hydra_vertex_ai._backends.base import TuningOutcome
    from hydra_plugins.hydra_vertex_ai._staging import Staging

    staging = Staging.of(STAGING, "truncated")
    good = JobReturn(overrides=["x=1"], cfg=OmegaConf.create({}), hydra_cfg=OmegaConf.create({}), working_dir="",
                     task_name="t", status=JobStatus.COMPLETED, _return_value=1.0)
    whole = _payload.dump_result(good)
    _storage.write_bytes(staging.trial_result("1"), whole)
    _storage.write_bytes(staging.trial_result("2"), whole[: len(whole) // 2])
    outcome = TuningOutcome("JOB_STATE_SUCCEEDED", [{"id": "1", "state": "SUCCEEDED"}, {"id": "2", "state": "SUCCEEDED"}])
    config = OmegaConf.create({"hydra": {"job": {"name": "t"}}})

    first, second = _sweep._trial_returns(staging, config, {}, [], outcome, deadline_s=5)
    assert first.status == JobStatus.COMPLETED and first.return_value == 1.0
    assert second.status == JobStatus.FAILED
    assert staging.trial_result("2") in str(second._return_value)


def times_ten(cfg: DictConfig) -> int:
    return int(cfg.tag) * 10


@pytest.mark.usefixtures("hydra_restore_singletons", "vertex_emulator")
def test_cloud_storage_gone_fails_each_result_not_the_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra_plugins.hydra_vertex_ai import _emulator, _storage

    storage = _emulator.StorageEmulator(buckets=[BUCKET])  # this test's own Cloud Storage, stopped below
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.host)
    real_run_jobs = VertexBackend.run_jobs

    def run_then_lose_storage(self: VertexBackend, *args: Any, **kwargs: Any) -> Any:
        outcomes = real_run_jobs(self, *args, **kwargs)
        storage.stop()  # gone for good, right when the results are read
        return outcomes

    monkeypatch.setattr(VertexBackend, "run_jobs", run_then_lose_storage)
    try:
        overrides = [*VERTEX, "hydra.launcher.retry_timeout_s=2", "hydra.job.name=nostorage",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}"]
        rets = launch_in_process(times_ten, [["tag=1"], ["tag=2"]], overrides)
    finally:
        _storage._clients.clear()

    assert [r.status for r in rets] == [JobStatus.FAILED, JobStatus.FAILED]
    for ret in rets:
        assert "cannot be read here" in str(ret._return_value) and f"gs://{BUCKET}/" in str(ret._return_value)


# --- 8. finished is finished --------------------------------------------------------------------------------


def test_the_wait_ends_when_every_job_has_ended_though_creates_back_off(vertex_emulator: Any) -> None:
    sweep = "finished"
    # every create commits and loses its reply; the client would back off 60 s before looking it up
    vertex_emulator.knobs = Knobs(lose_reply_rate=1.0, lose_reply_codes=("UNAVAILABLE",),
                                  fault_methods=("CreateCustomJob",))
    backend = _backend(sweep, retry_initial_s=60)
    result: List[Any] = []

    def run() -> None:
        try:
            result.append(backend.run_jobs([_job(sweep, i) for i in range(2)]))
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)  # well under the backoff
    vertex_emulator.knobs = Knobs()

    assert not thread.is_alive(), "the wait went on for creates of jobs that had ended"
    assert isinstance(result[0], list), result[0]
    assert [o.state for o in result[0]] == ["JOB_STATE_SUCCEEDED"] * 2
    assert [vertex_emulator.creates_by_uid[f"{sweep}-{i}"] for i in range(2)] == [1, 1]


# --- 13.1: max_parallel and the accelerator quota ------------------------------------------------------------


def _times(job: Dict[str, Any], field: str) -> float:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromJsonString(job[field])
    return float(stamp.ToNanoseconds()) / 1e9


def test_max_parallel_bounds_the_jobs_of_a_vertex_sweep(vertex_emulator: Any) -> None:
    sweep = "maxpar"
    outcomes = _backend(sweep, max_parallel=1).run_jobs([_job(sweep, i) for i in range(3)])

    assert [o.state for o in outcomes] == ["JOB_STATE_SUCCEEDED"] * 3
    jobs = _jobs(vertex_emulator, f"{sweep}-")
    for earlier, later in zip(jobs, jobs[1:]):  # each job was created after the one before had ended
        assert _times(later, "createTime") >= _times(earlier, "endTime")


def test_a_used_up_gpu_quota_waits_for_the_sweeps_own_jobs(
    vertex_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sweep = "gpuquota"
    vertex_emulator.knobs = Knobs(accelerator_quota={"NVIDIA_L4": 1})
    backend = _backend(sweep, retry_timeout_s=2)  # a rate-limit retry budget far shorter than the wait
    code = "import time; time.sleep(1)"
    with caplog.at_level("WARNING"):
        outcomes = backend.run_jobs([_job(sweep, i, code, gpus=1) for i in range(3)])
    vertex_emulator.knobs = Knobs()

    assert [o.state for o in outcomes] == ["JOB_STATE_SUCCEEDED"] * 3  # nothing cancelled
    said = [r.getMessage() for r in caplog.records if L4_QUOTA in r.getMessage()]
    assert len(said) == 1 and "when one of this sweep's" in said[0]  # once
    assert vertex_emulator.calls["CreateCustomJob"] > 3  # the quota did refuse creates


def test_a_gpu_quota_with_none_of_the_sweeps_jobs_running_fails_naming_it(
    vertex_emulator: Any, sleepers: List[str], tmp_path: Path
) -> None:
    sleepers.append("noquota-")
    vertex_emulator.knobs = Knobs(accelerator_quota={"NVIDIA_L4": 0})
    app = _launch(tmp_path, "noquota", "tag=0,1", "hydra.launcher.job.machine_type=g2-standard-4",
                  "hydra.launcher.job.accelerator_type=NVIDIA_L4", "hydra.launcher.job.accelerator_count=1")
    output = finish(app)
    vertex_emulator.knobs = Knobs()

    assert app.returncode != 0
    assert f"The following quota metrics exceed quota limits: {L4_QUOTA}" in output, output
    assert "https://console.cloud.google.com/iam-admin/quotas?project=test-project" in output
    assert "Traceback" not in output  # a VertexAPIError is one message (item 10)
    assert _jobs(vertex_emulator, "noquota-") == []


def test_capacity_quotas_and_rate_limits_are_told_apart() -> None:
    from hydra_plugins.hydra_vertex_ai._vertex_facts import accelerator_quota_metric, capacity_quota_metrics

    assert accelerator_quota_metric("NVIDIA_L4") == L4_QUOTA
    assert accelerator_quota_metric("NVIDIA_TESLA_V100").endswith("custom_model_training_nvidia_v100_gpus")
    assert accelerator_quota_metric("NVIDIA_H100_80GB").endswith("custom_model_training_nvidia_h100_gpus")
    assert capacity_quota_metrics(f"The following quota metrics exceed quota limits: {L4_QUOTA}") == [L4_QUOTA]
    rate = ("Quota exceeded for quota metric 'aiplatform.googleapis.com/job_or_lro_submission_requests' and limit "
            "'Job or LRO submission requests per minute per region' of service 'aiplatform.googleapis.com'")
    assert capacity_quota_metrics(rate) == []


# --- 9. an endpoint where nothing listens ----------------------------------------------------------------


def test_an_endpoint_where_nothing_listens_fails_before_staging(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"  # bound, never listening: nothing answers
        overrides = [o for o in VERTEX if not o.startswith("hydra.launcher.api_endpoint=")]
        proc = subprocess.run(
            [sys.executable, str(PROBE), "-m", *overrides, f"hydra.launcher.api_endpoint={dead}", "tag=0",
             f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode != 0
    assert f"hydra.launcher.api_endpoint: the Vertex AI endpoint {dead} did not answer" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "rec").exists()


# --- 10 and 11. bad staged files in the container --------------------------------------------------------------


def _entry(payload_uri: str, tmp_path: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.entry", payload_uri], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def _payload_bytes(tmp_path: Path, context_uri: str, snapshot: Optional[Dict[str, Any]] = None) -> bytes:
    from omegaconf import OmegaConf

    from hydra_plugins.hydra_vertex_ai import _payload

    job = _payload.JobPayload(context_uri, OmegaConf.create({}), str(tmp_path / "result"))
    return _payload.dumps(job, **({"snapshot": snapshot} if snapshot else {}))


@pytest.mark.parametrize("case", ["missing_payload", "truncated_payload", "garbage_payload", "missing_context",
                                  "truncated_context", "missing_snapshot", "wrong_snapshot"])
def test_a_bad_staged_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    from hydra_plugins.hydra_vertex_ai import _payload

    payload, context, snapshot_file = tmp_path / "payload.pkl", tmp_path / "context.pkl", tmp_path / "src.tar.gz"
    snapshot = None
    if "snapshot" in case:
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w:gz") as tar:
            tar.addfile(tarfile.TarInfo("empty.txt"), io.BytesIO(b""))
        digest = hashlib.sha256(b"another archive").hexdigest()
        if case == "wrong_snapshot":
            snapshot_file.write_bytes(data.getvalue())  # not the archive the digest names
        snapshot = {"uri": str(snapshot_file), "digest": digest, "root": str(tmp_path), "sys_path": []}
    raw = _payload_bytes(tmp_path, str(context), snapshot)
    context.write_bytes(_payload.dumps(object()))
    payload.write_bytes({"truncated_payload": raw[: len(raw) - 20], "garbage_payload": b"\x00\x01junk"}.get(case, raw))
    if case == "missing_payload":
        payload.unlink()
    if case == "missing_context":
        context.unlink()
    if case == "truncated_context":
        context.write_bytes(context.read_bytes()[:-10])
    bad = {"missing_payload": payload, "truncated_payload": payload, "garbage_payload": payload,
           "missing_context": context, "truncated_context": context, "missing_snapshot": snapshot_file,
           "wrong_snapshot": snapshot_file}[case]

    proc = _entry(str(payload), tmp_path)
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(bad) in lines[0]
    if case == "wrong_snapshot":
        assert "sha256" in lines[0]


def test_a_snapshot_that_does_not_match_its_digest_is_not_cached(tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._snapshot import Snapshot, unpack

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        tar.addfile(tarfile.TarInfo("a.txt"), io.BytesIO(b""))
    (tmp_path / "s.tar.gz").write_bytes(data.getvalue())
    claimed = hashlib.sha256(f"claimed {uuid.uuid4()}".encode()).hexdigest()  # never cached before
    with pytest.raises(ValueError, match="sha256"):
        unpack(Snapshot(str(tmp_path / "s.tar.gz"), claimed, str(tmp_path), ()))
    import tempfile

    assert not Path(tempfile.gettempdir(), "hydra_vertex_ai", "snapshots", claimed).exists()


# --- 12. the emulator's CLI stops its jobs on SIGTERM ------------------------------------------------------------


def test_the_emulator_cli_stops_its_jobs_on_sigterm(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = subprocess.Popen([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.emulator", "--port", str(port),
                            "--workdir", str(tmp_path / "emu")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    try:
        backend = VertexBackend(make_client("us-central1", f"127.0.0.1:{port}"), project="p", location="us-central1",
                                staging_dir=STAGING, sweep_id="cli", poll_interval_s=0.2, retry_initial_s=0.1,
                                retry_timeout_s=5)
        wait_for(lambda: _serving(port), 60, "the emulator CLI to serve")
        threading.Thread(target=lambda: _ignore(lambda: backend.run_jobs([_job("cli", 0, code)])), daemon=True).start()
        wait_for(lambda: pid_file.exists() and pid_file.read_text().isdigit(), 60, "the job process")
        pid = int(pid_file.read_text())
        cli.send_signal(signal.SIGTERM)
        output = finish(cli, timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert "stopping: cancelling running jobs" in output, output
    wait_for(lambda: not _alive(pid), 10, f"job process {pid} to end")


def _serving(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ignore(fn: Any) -> None:
    try:
        fn()
    except BaseException:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False

