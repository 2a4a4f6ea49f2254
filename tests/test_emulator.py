"""The local Vertex AI JobService emulator, through the real JobServiceClient over real gRPC."""
import signal
import subprocess
import sys
from typing import Any, Dict

import pytest
from conftest import EMULATOR_ADDRESS, tuning_job_spec, wait_for
from google.api_core import exceptions as ex

from hydra_plugins.hydra_vertex_ai._backends.vertex import VertexBackend, make_client
from hydra_plugins.hydra_vertex_ai._emulator import by_number, repeated

PARENT = "projects/emu-test/locations/europe-west4"


@pytest.fixture
def client(vertex_emulator: Any) -> Any:
    return make_client("europe-west4", EMULATOR_ADDRESS)


def _job(name: str, code: str = "pass", **labels: str) -> Dict[str, Any]:
    from google.cloud.aiplatform_v1 import CustomJob
    from google.protobuf import json_format

    rest = {
        "displayName": name,
        "labels": labels,
        "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
            "containerSpec": {"imageUri": "local/test", "command": ["python", "-c", code]},
        }]},
    }  # fmt: skip
    pb = CustomJob.pb()()
    json_format.ParseDict(rest, pb)
    return CustomJob.wrap(pb)



def _state(client: Any, name: str) -> str:
    return str(client.get_custom_job(name=name).state.name)


def test_create_get_and_run_a_custom_job(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=_job("ok", "print('hi')", group="crud"))
    assert created.name.startswith(f"{by_number(PARENT)}/customJobs/") and created.name.rsplit("/", 1)[1].isdigit()
    assert created.state.name == "JOB_STATE_QUEUED"
    assert created.create_time is not None

    wait_for(lambda: _state(client, created.name) == "JOB_STATE_SUCCEEDED", 60, "the job to succeed")
    job = client.get_custom_job(name=created.name)
    assert job.start_time and job.end_time and not job.error.message
    assert job.job_spec.worker_pool_specs[0].container_spec.command == ["python", "-c", "print('hi')"]


def test_a_failing_job_ends_failed_with_its_error(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=_job("bad", "raise SystemExit(4)"))
    wait_for(lambda: _state(client, created.name) == "JOB_STATE_FAILED", 60, "the job to fail")
    assert "exited with code 4" in client.get_custom_job(name=created.name).error.message


def test_cancel_goes_through_cancelling_to_cancelled(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=_job("long", "import time; time.sleep(120)"))
    client.cancel_custom_job(name=created.name)
    assert _state(client, created.name) in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    wait_for(lambda: _state(client, created.name) == "JOB_STATE_CANCELLED", 30, "the job to be cancelled")
    with pytest.raises(ex.FailedPrecondition):
        client.cancel_custom_job(name=created.name)


def test_unknown_and_malformed_names(client: Any) -> None:
    with pytest.raises(ex.NotFound):
        client.get_custom_job(name=f"{PARENT}/customJobs/123")
    with pytest.raises(ex.InvalidArgument):
        client.get_custom_job(name=f"{PARENT}/hyperparameterTuningJobs/123")
    with pytest.raises(ex.InvalidArgument, match="display_name"):
        client.create_custom_job(parent=PARENT, custom_job=_job(""))
    with pytest.raises(ex.InvalidArgument, match="label"):
        client.create_custom_job(parent=PARENT, custom_job=_job("x", Bad="Label"))


def test_list_filters_on_labels_and_state_and_honours_the_read_mask(client: Any) -> None:
    names = [client.create_custom_job(parent=PARENT, custom_job=_job(f"f{i}", group="listing", i=str(i))).name
             for i in range(3)]  # fmt: skip
    wait_for(lambda: all(_state(client, n) == "JOB_STATE_SUCCEEDED" for n in names), 60, "the jobs")

    listed = list(client.list_custom_jobs(request={"parent": PARENT, "filter": 'labels.group="listing"'}))
    assert [j.name for j in listed] == names
    one = list(client.list_custom_jobs(request={"parent": PARENT, "filter": 'labels.group="listing" AND labels.i=1'}))
    assert [j.name for j in one] == [names[1]]
    none = client.list_custom_jobs(request={"parent": PARENT, "filter": 'labels.group="listing" AND state!="JOB_STATE_SUCCEEDED"'})
    assert list(none) == []
    masked = list(client.list_custom_jobs(request={
        "parent": PARENT, "filter": "labels.group=listing", "read_mask": {"paths": ["name", "state"]},
    }))  # fmt: skip
    assert [j.name for j in masked] == names
    assert all(j.state.name == "JOB_STATE_SUCCEEDED" and not j.display_name and not j.job_spec.worker_pool_specs
               for j in masked)  # fmt: skip
    with pytest.raises(ex.InvalidArgument):
        list(client.list_custom_jobs(request={"parent": PARENT, "filter": "(labels.a=1 OR labels.b=2)"}))
    with pytest.raises(ex.InvalidArgument):
        list(client.list_custom_jobs(request={"parent": PARENT, "read_mask": {"paths": ["no_such_field"]}}))


def test_list_pages(client: Any, vertex_emulator: Any) -> None:
    names = [client.create_custom_job(parent=PARENT, custom_job=_job(f"p{i}", group="paging")).name for i in range(5)]
    before = vertex_emulator.calls["ListCustomJobs"]
    pager = client.list_custom_jobs(request={"parent": PARENT, "filter": "labels.group=paging", "page_size": 2})
    pages = [[j.name for j in page.custom_jobs] for page in pager.pages]
    assert pages == [names[0:2], names[2:4], names[4:5]]
    assert vertex_emulator.calls["ListCustomJobs"] - before == 3


# --- knobs -------------------------------------------------------------------------------------------------


def test_injected_failures_carry_the_chosen_status(client: Any, vertex_emulator: Any) -> None:
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    vertex_emulator.knobs = Knobs(fail_rate=1.0, fail_codes=("UNAVAILABLE",))
    with pytest.raises(ex.ServiceUnavailable):
        client.get_custom_job(name=f"{PARENT}/customJobs/1")
    vertex_emulator.knobs = Knobs(fail_rate=1.0, fail_codes=("INVALID_ARGUMENT",))
    with pytest.raises(ex.InvalidArgument, match="injected"):
        client.create_custom_job(parent=PARENT, custom_job=_job("refused"))


def test_a_lost_reply_still_commits_the_create(client: Any, vertex_emulator: Any) -> None:
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    vertex_emulator.knobs = Knobs(lose_reply_rate=1.0, lose_reply_codes=("DEADLINE_EXCEEDED",))
    with pytest.raises(ex.DeadlineExceeded):
        client.create_custom_job(parent=PARENT, custom_job=_job("lost", hydra_uid="lost-reply-1"))
    vertex_emulator.knobs = Knobs()
    assert vertex_emulator.creates_by_uid["lost-reply-1"] == 1
    assert len(list(client.list_custom_jobs(request={"parent": PARENT, "filter": 'labels.hydra_uid="lost-reply-1"'}))) == 1


def test_quota_mode_refuses_creates_beyond_the_limit(client: Any, vertex_emulator: Any) -> None:
    from hydra_plugins.hydra_vertex_ai._emulator import Knobs

    vertex_emulator.knobs = Knobs(quota_creates_per_minute=2)
    for i in range(2):
        client.create_custom_job(parent=PARENT, custom_job=_job(f"q{i}", hydra_uid=f"quota-{i}"))
    with pytest.raises(ex.ResourceExhausted, match="Quota exceeded"):
        client.create_custom_job(parent=PARENT, custom_job=_job("q2", hydra_uid="quota-2"))
    assert vertex_emulator.creates_by_uid["quota-2"] == 0


# --- hyperparameter tuning jobs ----------------------------------------------------------------------------

def _backend(sweep_id: str) -> VertexBackend:
    return VertexBackend(
        make_client("europe-west4", EMULATOR_ADDRESS), project="emu-test", location="europe-west4",
        staging_dir="gs://hydra-test/hpt", sweep_id=sweep_id, poll_interval_s=0.2, retry_initial_s=0.05,
    )  # fmt: skip


def test_a_tuning_job_runs_its_trials_through_the_local_study(vertex_emulator: Any) -> None:
    outcome = _backend("hpt").run_tuning_job(tuning_job_spec("hpt-grid"))

    assert outcome.state == "JOB_STATE_SUCCEEDED", outcome.error
    assert outcome.name and "/hyperparameterTuningJobs/" in outcome.name
    assert len(outcome.trials) == 3 and {t["state"] for t in outcome.trials} == {"SUCCEEDED"}
    values = {float(t["parameters"][0]["value"]): t["finalMeasurement"]["metrics"][0]["value"] for t in outcome.trials}
    assert values == {1.0: 1.0, 2.0: 0.0, 3.0: 1.0}
    assert vertex_emulator.creates_by_uid["hpt-grid"] == 1
    again = _backend("hpt").attach_tuning_job(outcome.name)  # reattaching to a finished job just collects it
    assert again.state == outcome.state and len(again.trials) == 3


def test_tuning_jobs_list_filter_and_cancel(client: Any) -> None:
    from google.cloud.aiplatform_v1 import HyperparameterTuningJob
    from google.protobuf import json_format

    pb = HyperparameterTuningJob.pb()()
    json_format.ParseDict(tuning_job_spec("hpt-cancel", "import time; time.sleep(120)", trials=2), pb)
    created = client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=HyperparameterTuningJob.wrap(pb))
    listed = list(client.list_hyperparameter_tuning_jobs(request={"parent": PARENT, "filter": 'labels.hydra_uid="hpt-cancel"'}))
    assert [j.name for j in listed] == [created.name]
    client.cancel_hyperparameter_tuning_job(name=created.name)
    wait_for(
        lambda: client.get_hyperparameter_tuning_job(name=created.name).state.name == "JOB_STATE_CANCELLED",
        60, "the tuning job to be cancelled",
    )  # fmt: skip


# --- the command line --------------------------------------------------------------------------------------


def test_the_public_module_imports_no_grpc() -> None:
    code = (
        "import sys; before = set(sys.modules); import hydra_plugins.hydra_vertex_ai.emulator; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith(('grpc', 'google'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_the_command_line_serves_until_interrupted(tmp_path: Any) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.emulator", "--port", "0", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(1)]
        while not lines[-1].startswith("Vertex AI JobService emulator on ") and len(lines) < 20:
            lines.append(proc.stdout.readline())
        first = lines[-1]
        assert first.startswith("Vertex AI JobService emulator on 127.0.0.1:"), lines
        address = first.split(" on ", 1)[1].split(";", 1)[0]
        with pytest.raises(ex.NotFound):
            make_client("us-central1", address).get_custom_job(name=f"{PARENT}/customJobs/1", timeout=30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_command_line_refuses_a_non_loopback_host() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "loopback" in out.stderr



def test_repeated_fields_are_recognised_on_every_protobuf() -> None:
    """The emulator walks nested fields to refuse what it does not model. protobuf 7 removed
    FieldDescriptor.label (a fresh `pip install 'hydra-vertex-ai[emulator]'` gets it, and every Create failed
    with AttributeError); releases before 5.29 have no `is_repeated`."""
    from types import SimpleNamespace

    from google.cloud.aiplatform_v1 import CustomJob

    fields = CustomJob.pb(CustomJob()).DESCRIPTOR.fields_by_name
    assert repeated(fields["labels"]) and not repeated(fields["job_spec"])  # the installed protobuf
    assert repeated(SimpleNamespace(is_repeated=True)) and not repeated(SimpleNamespace(is_repeated=False))  # 7
    old = SimpleNamespace(LABEL_REPEATED=3, label=3)
    assert repeated(old) and not repeated(SimpleNamespace(LABEL_REPEATED=3, label=1))  # before 5.29
