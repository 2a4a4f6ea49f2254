"""The stand-ins enforce what Vertex enforces (issue 21): a job's timeout, what Create refuses, how jobs and tuning
jobs look (states, ids, names), Delete and its Operation, List filters, and $(VAR) in env values. Each rule is
checked through the real JobServiceClient against the emulator, and on the local backend where it runs jobs."""
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import EMULATOR_ADDRESS, tuning_job_spec, wait_for
from google.api_core import exceptions as ex
from google.cloud import aiplatform_v1
from google.protobuf import json_format

from hydra_plugins.hydra_vertex_ai import _emulator
from hydra_plugins.hydra_vertex_ai._backends.processes import run_custom_job
from hydra_plugins.hydra_vertex_ai._backends.vertex import make_client
from hydra_plugins.hydra_vertex_ai._vertex_facts import FAILED, TIMEOUT_ERROR_PREFIX

PARENT = "projects/parity-test/locations/us-central1"
SLEEP = "import time; time.sleep(60)"


@pytest.fixture
def client(vertex_emulator: Any) -> Any:
    return make_client("us-central1", EMULATOR_ADDRESS)


def pool(code: str = "pass", replicas: int = 1, **container: Any) -> Dict[str, Any]:
    return {
        "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": str(replicas),
        "containerSpec": {"imageUri": "local/test", "command": ["python", "-c", code], **container},
    }  # fmt: skip


def rest(name: str = "parity", code: str = "pass", **job_spec: Any) -> Dict[str, Any]:
    return {"displayName": name, "jobSpec": {"workerPoolSpecs": [pool(code)], **job_spec}}


def custom_job(job: Dict[str, Any]) -> Any:
    return aiplatform_v1.CustomJob.wrap(json_format.ParseDict(job, aiplatform_v1.CustomJob.pb()()))


def tuning_job(job: Dict[str, Any]) -> Any:
    pb = aiplatform_v1.HyperparameterTuningJob.pb()()
    return aiplatform_v1.HyperparameterTuningJob.wrap(json_format.ParseDict(job, pb))


def state(client: Any, name: str) -> str:
    return str(client.get_custom_job(name=name).state.name)


def ended(client: Any, name: str, timeout: float = 60) -> Any:
    wait_for(lambda: state(client, name).endswith(("SUCCEEDED", "FAILED", "CANCELLED")), timeout, f"{name} to end")
    return client.get_custom_job(name=name)


# --- scheduling.timeout ---------------------------------------------------------------------------------------


def test_a_job_past_its_timeout_fails_with_deadline_exceeded_locally(tmp_path: Path) -> None:
    outcome = run_custom_job(rest(code=SLEEP, scheduling={"timeout": "1s"}), job_id="t", workdir=tmp_path,
                             cancel=threading.Event())  # fmt: skip
    assert outcome.state == FAILED
    assert outcome.error and outcome.error.startswith(TIMEOUT_ERROR_PREFIX) and "1s" in outcome.error


def test_a_job_past_its_timeout_fails_with_deadline_exceeded_in_the_emulator(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest(code=SLEEP, scheduling={"timeout": "1s"})))
    job = ended(client, created.name, 30)
    assert job.state.name == "JOB_STATE_FAILED"
    assert job.error.code == 4 and job.error.message.startswith(TIMEOUT_ERROR_PREFIX)  # google.rpc DEADLINE_EXCEEDED


def test_a_job_within_its_timeout_succeeds(tmp_path: Path) -> None:
    outcome = run_custom_job(rest(scheduling={"timeout": "60s"}), job_id="t", workdir=tmp_path, cancel=threading.Event())
    assert outcome.state == "JOB_STATE_SUCCEEDED"


# --- what Create refuses ---------------------------------------------------------------------------------------

REFUSED = {
    # id: (the CustomJob, words of the refusal)
    "no_image": ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [
        {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
         "containerSpec": {"command": ["python", "-c", "pass"]}}]}}, "image_uri"),
    "display_name_129": (rest("n" * 129), "128"),
    "chief_of_two": ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [pool(replicas=2)]}}, "replica_count"),
    "five_pools": ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [pool()] * 5}}, "at most 4"),
    "local_output_dir": (rest(baseOutputDirectory={"outputUriPrefix": "/tmp/out"}), "gs://"),
    "unmodeled_pool_field": ({"displayName": "x", "jobSpec": {"workerPoolSpecs": [
        {**pool(), "nfsMounts": [{"server": "10.0.0.2", "path": "/share", "mountPoint": "data"}]}]}}, "nfs_mounts"),
    "unmodeled_job_field": (rest(reservedIpRanges=["range-a"]), "reserved_ip_ranges"),
    "unmodeled_top_field": ({**rest(), "encryptionSpec": {"kmsKeyName": "k"}}, "encryption_spec"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_emulator_refuses_on_create_what_vertex_refuses(client: Any, vertex_emulator: Any, case: str) -> None:
    job, words = REFUSED[case]
    before = len(vertex_emulator.jobs())
    with pytest.raises(ex.InvalidArgument, match=words):
        client.create_custom_job(parent=PARENT, custom_job=custom_job(job))
    assert len(vertex_emulator.jobs()) == before  # nothing was created


def test_a_tuning_job_is_refused_for_the_same_trial_spec_and_for_fields_not_modeled(client: Any) -> None:
    five_pools = tuning_job_spec("parity-pools")
    five_pools["trialJobSpec"]["workerPoolSpecs"] *= 5
    with pytest.raises(ex.InvalidArgument, match="at most 4"):
        client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=tuning_job(five_pools))
    unmodeled = {**tuning_job_spec("parity-enc"), "encryptionSpec": {"kmsKeyName": "k"}}
    with pytest.raises(ex.InvalidArgument, match="encryption_spec"):
        client.create_hyperparameter_tuning_job(parent=PARENT, hyperparameter_tuning_job=tuning_job(unmodeled))


def test_what_vertex_takes_is_taken(client: Any) -> None:
    job = rest("n" * 128, baseOutputDirectory={"outputUriPrefix": "gs://b/out"}, scheduling={"timeout": "60s"})
    job["jobSpec"]["workerPoolSpecs"].append(pool(replicas=2))
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(job))
    assert ended(client, created.name).state.name == "JOB_STATE_SUCCEEDED"


# --- jobs and tuning jobs look as Vertex's do ------------------------------------------------------------------


def test_names_carry_the_project_number_and_a_numeric_id_and_either_form_reaches_the_job(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest()))
    projects, number, _, location, kind, job_id = created.name.split("/")
    assert (projects, location, kind) == ("projects", "us-central1", "customJobs")
    assert number.isdigit() and number == _emulator.project_number("parity-test") and job_id.isdigit()
    by_id = f"{PARENT}/customJobs/{job_id}"
    assert client.get_custom_job(name=by_id).name == created.name  # Vertex takes the project id too
    assert [j.name for j in client.list_custom_jobs(request={"parent": PARENT, "filter": "display_name=parity"})][-1:] == [created.name]
    ended(client, created.name)


def test_a_tuning_job_has_a_numbered_name_and_each_trial_names_its_custom_job(client: Any) -> None:
    created = client.create_hyperparameter_tuning_job(
        parent=PARENT, hyperparameter_tuning_job=tuning_job(tuning_job_spec("parity-trials", trials=2)))
    assert created.name.split("/")[1] == _emulator.project_number("parity-test")
    assert created.name.rsplit("/", 1)[1].isdigit()

    def done() -> bool:
        return client.get_hyperparameter_tuning_job(name=created.name).state.name == "JOB_STATE_SUCCEEDED"

    wait_for(done, 90, "the tuning job")
    trials = client.get_hyperparameter_tuning_job(name=created.name).trials
    jobs = [t.custom_job for t in trials]
    assert len(trials) == 2 and len(set(jobs)) == 2
    for name in jobs:
        parent, _, job_id = name.rpartition("/customJobs/")
        assert parent == created.name.split("/hyperparameterTuningJobs/")[0] and job_id.isdigit()


def test_a_job_goes_queued_pending_running_and_waits_for_machines_as_pending(tmp_path: Path) -> None:
    with _emulator.running(tmp_path, max_running=1) as emulator:
        client = make_client("us-central1", emulator.address)
        first = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest("first", SLEEP)))
        assert first.state.name == "JOB_STATE_QUEUED"  # Create's reply
        wait_for(lambda: state(client, first.name) == "JOB_STATE_RUNNING", 30, "the first job to run")
        second = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest("second")))
        wait_for(lambda: state(client, second.name) != "JOB_STATE_QUEUED", 30, "the second job to be taken")
        assert state(client, second.name) == "JOB_STATE_PENDING"  # no machine free yet: provisioning, as on Vertex
        client.cancel_custom_job(name=first.name)
        assert ended(client, second.name).state.name == "JOB_STATE_SUCCEEDED"
        assert emulator.transitions(second.name) == [
            "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
        assert emulator.transitions(first.name)[-2:] == ["JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"]


# --- Delete and its long-running Operation ---------------------------------------------------------------------


def test_delete_answers_an_operation_the_client_waits_on(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(rest("deleted", SLEEP)))
    with pytest.raises(ex.FailedPrecondition):  # still running: cancel first
        client.delete_custom_job(name=created.name)
    client.cancel_custom_job(name=created.name)
    ended(client, created.name)

    operation = client.delete_custom_job(name=created.name)
    operation.result(timeout=30)
    assert operation.done() and operation.operation.name.startswith(f"{created.name}/operations/")
    polled = client._transport.operations_client.get_operation(operation.operation.name)
    assert polled.done
    with pytest.raises(ex.NotFound):
        client.get_custom_job(name=created.name)


# --- List filters ----------------------------------------------------------------------------------------------


def test_list_filters_on_create_time_and_or_as_documented(client: Any) -> None:
    first = client.create_custom_job(parent=PARENT, custom_job=custom_job({**rest("or-a"), "labels": {"g": "filters"}}))
    second = client.create_custom_job(parent=PARENT, custom_job=custom_job({**rest("or-b"), "labels": {"g": "filters"}}))
    ended(client, first.name), ended(client, second.name)

    def listed(text: str) -> List[str]:
        return [j.name for j in client.list_custom_jobs(request={"parent": PARENT, "filter": f"labels.g=filters AND {text}"})]

    assert listed('display_name="or-a" OR display_name="or-b"') == [first.name, second.name]
    assert listed('display_name="or-a" OR state="JOB_STATE_FAILED"') == [first.name]
    after_first = second.create_time.isoformat().replace("+00:00", "Z")
    assert listed(f'create_time>="{after_first}"') == [second.name]
    assert listed(f'create_time<"{after_first}"') == [first.name]
    with pytest.raises(ex.InvalidArgument):
        listed('create_time>"yesterday"')
    with pytest.raises(ex.InvalidArgument):
        listed('display_name>"or-a"')


# --- $(VAR) in env values ---------------------------------------------------------------------------------------

PRINT_ENV = "import os, sys; print('|'.join(os.environ[k] for k in 'ABCD')); sys.exit(3)"
ENV = [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)/y"}, {"name": "C", "value": "$$(A)"},
       {"name": "D", "value": "$(E)-$(A"}, {"name": "E", "value": "late"}]  # fmt: skip
EXPANDED = "x|x/y|$(A)|$(E)-$(A"  # a later or unknown variable stays as written, as does an unclosed reference


def _env_job() -> Dict[str, Any]:
    return {"displayName": "env", "jobSpec": {"workerPoolSpecs": [pool(PRINT_ENV, env=ENV)]}}


def test_env_values_expand_references_as_vertex_does_locally(tmp_path: Path) -> None:
    outcome = run_custom_job(_env_job(), job_id="env", workdir=tmp_path, cancel=threading.Event())
    assert outcome.error and EXPANDED in outcome.error


def test_env_values_expand_references_as_vertex_does_in_the_emulator(client: Any) -> None:
    created = client.create_custom_job(parent=PARENT, custom_job=custom_job(_env_job()))
    assert EXPANDED in ended(client, created.name).error.message
