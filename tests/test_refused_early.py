"""Refused before anything is staged, one line naming the key (issue 21): input Vertex would refuse (or that would
silently run something else) fails the launch at once, with a ConfigError (or a SearchSpaceError naming the
override); the emulator refuses bad env names on Create as Vertex does. Rules and sources: _vertex_facts."""
from pathlib import Path
from typing import Any, Dict

import pytest
from conftest import EMULATOR_ADDRESS, PROBE, VERTEX_LOCAL, VERTEX_OVERRIDES, run_app
from google.api_core import exceptions as ex
from test_vertex_rules import PARENT, custom_job, rest_job

from hydra_plugins.hydra_vertex_ai import _jobspec, _tuning_spec
from hydra_plugins.hydra_vertex_ai._backends.vertex import VertexBackend, make_client
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai._search_space import SearchSpaceError, parse_search_space
from hydra_plugins.hydra_vertex_ai.config import (
    JobSpecConf,
    SchedulingConf,
    VertexAILauncherConf,
    VertexVizierSweeperConf,
)

MANY_VARS = {f"VAR_{i}": "x" for i in range(101)}
JOB_SPECS: Dict[str, Any] = {
    "env_name_with_a_dash": (JobSpecConf(env={"MY-VAR": "1"}), "job.env.MY-VAR"),
    "env_name_with_a_leading_digit": (JobSpecConf(env={"1VAR": "1"}), "job.env.1VAR"),
    "more_than_100_env_vars": (JobSpecConf(env=MANY_VARS), "job.env"),
    "machine_type_of_no_family": (JobSpecConf(machine_type="n9-superfast-8"), "job.machine_type"),
    "image_with_a_space": (JobSpecConf(image_uri="my image:latest"), "job.image_uri"),
    "image_with_uppercase": (JobSpecConf(image_uri="gcr.io/Proj/Trainer"), "job.image_uri"),
    "network_by_project_id": (JobSpecConf(network="projects/my-project/global/networks/vpc"), "job.network"),
    "network_by_name": (JobSpecConf(network="my-vpc"), "job.network"),
    "negative_max_wait": (JobSpecConf(machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=1,
                                      scheduling=SchedulingConf(strategy="FLEX_START", max_wait_duration_s=-60)),
                          "job.scheduling.max_wait_duration_s"),
    "negative_timeout": (JobSpecConf(scheduling=SchedulingConf(timeout_s=-1)), "job.scheduling.timeout_s"),
}


@pytest.mark.parametrize("case", JOB_SPECS)
def test_job_settings_vertex_refuses_name_their_key(case: str) -> None:
    spec, key = JOB_SPECS[case]
    with pytest.raises(ConfigError) as caught:
        _jobspec.validate(spec, "job")
    assert caught.value.key == key


def test_valid_settings_pass() -> None:
    _jobspec.validate(JobSpecConf(env={"_OK": "1", "MY_VAR2": "2"}, image_uri="localhost:5000/team/trainer:v1.2",
                                  network="projects/12345/global/networks/my-vpc", machine_type="n2-highmem-16"), "job")
    _jobspec.validate(JobSpecConf(image_uri="us-docker.pkg.dev/p/r/t@sha256:" + "a" * 64, machine_type="cloud-tpu"),
                      "job")


@pytest.mark.parametrize("env", [{"MY-VAR": "1"}, MANY_VARS], ids=["bad_name", "over_100"])
def test_the_emulator_refuses_bad_env_on_create(vertex_emulator: Any, env: Dict[str, str]) -> None:
    client = make_client("us-central1", EMULATOR_ADDRESS)
    rest = rest_job(JobSpecConf(), hydra_uid="badenv")
    rest["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"] = [{"name": k, "value": v} for k, v in env.items()]
    with pytest.raises(ex.InvalidArgument, match="container_spec.env"):
        client.create_custom_job(parent=PARENT, custom_job=custom_job(rest))


@pytest.mark.parametrize("location", ["us-central1-a", "us", "uscentral1"])
def test_a_location_that_is_not_a_vertex_region_is_refused(location: str) -> None:
    conf = VertexAILauncherConf(backend="vertex", project="p", location=location, staging_dir="gs://b/s")
    conf.job.image_uri = "img"
    with pytest.raises(ConfigError) as caught:
        VertexBackend.from_config(conf, "hydra.launcher", "sweep", connect=False)
    assert caught.value.key == "hydra.launcher.location"


def test_a_metric_id_with_whitespace_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _tuning_spec.validate(VertexVizierSweeperConf(metric_id="val loss"), "hydra.sweeper")
    assert caught.value.key == "hydra.sweeper.metric_id"


@pytest.mark.parametrize("override, words", [
    ("lr=int(interval(0.5,3.7))", "truncate"),  # Hydra's int() would sweep [0, 3]
    ("lr=interval(1,1)", "holds only"),
    ("lr=int(interval(2,2))", "holds only"),
    ("lr=choice(1.0,1.00000000001,2.0)", "closer than Vertex allows"),
])  # fmt: skip
def test_search_spaces_vertex_refuses_name_the_override(override: str, words: str) -> None:
    with pytest.raises(SearchSpaceError, match=words) as caught:
        parse_search_space([override])
    assert caught.value.override == override


def test_a_bad_env_name_fails_the_launch_before_anything_is_staged(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *VERTEX_LOCAL, "+hydra.launcher.job.env.MY-VAR=1", "tag=0", f"out_dir={tmp_path / 'rec'}",
            f"hydra.sweep.dir={sweep}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode != 0
    assert "hydra.launcher.job.env.MY-VAR" in proc.stderr and "C identifier" in proc.stderr, proc.stderr
    assert not (sweep / ".vertex_ai").exists() and not (tmp_path / "rec").exists()


@pytest.mark.usefixtures("vertex_emulator")
def test_a_missing_staging_bucket_is_one_line_before_the_manifest(tmp_path: Path) -> None:
    args = ["-m", "hydra/launcher=vertex_ai", *VERTEX_OVERRIDES, "hydra.launcher.staging_dir=gs://no-such-bucket/s",
            "tag=0", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode != 0
    assert "hydra.launcher.staging_dir" in proc.stderr and "gs://no-such-bucket does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_an_unwritable_local_staging_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    args = ["-m", *VERTEX_LOCAL, f"hydra.launcher.staging_dir={tmp_path / 'afile' / 'staging'}", "tag=0",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode != 0
    assert "hydra.launcher.staging_dir" in proc.stderr and "cannot create" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
