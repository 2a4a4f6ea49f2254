"""Hydra apps as KFP 2 components: the compiled spec, and the compiled step run locally as a real process."""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest
import yaml
from kfp import compiler, dsl

from hydra_plugins.hydra_vertex_ai import _jobspec, pipeline_entry
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai.config import JobSpecConf, SchedulingConf, WorkerPoolConf
from hydra_plugins.hydra_vertex_ai.pipelines import Artifact, Param, hydra_component

APP = Path(__file__).parent / "apps" / "pipeline_app" / "my_app.py"
IMAGE = "us-docker.pkg.dev/p/r/app:1"
ENTRY = ["python", "-m", "hydra_plugins.hydra_vertex_ai.pipeline_entry"]
INPUTS = {
    "name": Param("data.name", str),
    "epochs": Param("trainer.epochs", int, 3),
    "lr": Param("model.lr", float),
    "flag": Param("flag", bool, False),
    "data": Artifact("data.dir", "Dataset"),
}
OUTPUTS = {"model": Artifact("model.out", "Model")}
GPU_JOB = JobSpecConf(
    machine_type="g2-standard-24",
    accelerator_type="NVIDIA_L4",
    accelerator_count=2,
    replica_count=2,
    boot_disk_size_gb=200,
    env={"TOKENIZERS_PARALLELISM": "false"},
    labels={"team": "ml"},
    service_account="sa@p.iam.gserviceaccount.com",
    scheduling=SchedulingConf(timeout_s=3600, strategy="SPOT"),
)
# Placeholders of KFP 2's IR: parameter values, and artifact paths on the container's file system.
PLACEHOLDER = re.compile(r"\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](\.path)?\}\}")


def compile_pipeline(tmp_path: Path, job: Any = None) -> Dict[str, Any]:
    """A one-step pipeline around the test app, compiled by kfp's real compiler; the IR as a dict."""
    step = hydra_component(
        "probe", app=str(APP), image=IMAGE, inputs=INPUTS, outputs=OUTPUTS, overrides=["hydra.job.chdir=false"], job=job
    )

    @dsl.pipeline(name="probe-pipeline")
    def pipeline(name: str, lr: float, data_uri: str = "gs://b/data.csv") -> None:
        data = dsl.importer(artifact_uri=data_uri, artifact_class=dsl.Dataset)
        step(name=name, lr=lr, data=data.output)

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return dict(yaml.safe_load(path.read_text()))


def container(ir: Mapping[str, Any], executor: str = "exec-probe") -> Dict[str, Any]:
    return dict(ir["deploymentSpec"]["executors"][executor]["container"])


def substitute(args: List[str], params: Mapping[str, Any], paths: Mapping[str, Path]) -> List[str]:
    """Fill the placeholders as the KFP backend does: parameters as text (JSON for numbers and bools)."""

    def value(match: "re.Match[str]") -> str:
        name = match.group(3)
        if match.group(2) == "artifacts":
            return str(paths[name])
        raw = params[name]
        return raw if isinstance(raw, str) else json.dumps(raw)

    return [PLACEHOLDER.sub(value, arg) for arg in args]


def run_step(command: List[str], args: List[str], cwd: Path) -> "subprocess.CompletedProcess[str]":
    """The step's container command as a real process; the image's `python` is this environment's."""
    argv = [sys.executable if command[0] == "python" else command[0], *command[1:], *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_compiled_spec_has_the_entry_and_one_override_per_input_and_output(tmp_path: Path) -> None:
    spec = container(compile_pipeline(tmp_path))
    assert spec["image"] == IMAGE
    assert spec["command"] == ENTRY
    pairs = list(zip(spec["args"][1::2], spec["args"][2::2]))
    assert spec["args"][0] == str(APP)
    assert sorted(pairs) == sorted(
        [
            ("--fixed", "hydra.job.chdir=false"),
            ("--str", "data.name={{$.inputs.parameters['name']}}"),
            ("--int", "trainer.epochs={{$.inputs.parameters['epochs']}}"),
            ("--float", "model.lr={{$.inputs.parameters['lr']}}"),
            ("--bool", "flag={{$.inputs.parameters['flag']}}"),
            ("--input", "data.dir={{$.inputs.artifacts['data'].path}}"),
            ("--output", "model.out={{$.outputs.artifacts['model'].path}}"),
        ]
    )


def test_compiled_interface_has_the_declared_types_and_defaults(tmp_path: Path) -> None:
    comp = compile_pipeline(tmp_path)["components"]["comp-probe"]
    params = comp["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in params.items()} == {
        "name": "STRING",
        "epochs": "NUMBER_INTEGER",
        "lr": "NUMBER_DOUBLE",
        "flag": "BOOLEAN",
    }
    assert params["epochs"]["defaultValue"] == 3 and params["flag"]["defaultValue"] is False
    assert comp["inputDefinitions"]["artifacts"]["data"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert comp["outputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == "system.Model"


def test_machine_spec_is_a_vertex_custom_job_built_from_the_job_spec(tmp_path: Path) -> None:
    ir = compile_pipeline(tmp_path, job=GPU_JOB)
    launcher = container(ir)
    assert "google_cloud_pipeline_components.container.v1.custom_job.launcher" in launcher["command"]
    params = ir["components"]["comp-probe"]["inputDefinitions"]["parameters"]
    pools = params["worker_pool_specs"]["defaultValue"]
    # The launcher's own builder made these pools: same machines, disks, replicas and env.
    expected = _jobspec.build_custom_job(
        GPU_JOB, display_name="probe", container=_jobspec.Container(args=[], env=GPU_JOB.env), labels={}, base_output_dir=None
    )["jobSpec"]["workerPoolSpecs"]
    assert len(pools) == len(expected) == 2
    for pool, rest in zip(pools, expected):
        assert pool["machine_spec"] == {"machine_type": "g2-standard-24", "accelerator_type": "NVIDIA_L4", "accelerator_count": 2}
        assert pool["machine_spec"]["machine_type"] == rest["machineSpec"]["machineType"]
        assert pool["replica_count"] == int(rest["replicaCount"])
        assert pool["disk_spec"] == {"boot_disk_size_gb": 200}  # no type: Vertex picks the machine's default
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["container_spec"]["command"] == ENTRY
        assert pool["container_spec"]["env"] == [{"name": "TOKENIZERS_PARALLELISM", "value": "false"}]
        # values are read from the executor input by name (see test_job_step_values_survive_gcpcs_json_payload)
        assert ["--str-of", "data.name=name"] in pairs(pool["container_spec"]["args"])
        assert ["--output-of", "model.out=model"] in pairs(pool["container_spec"]["args"])
        assert "{{$.inputs" not in json.dumps(pool) and "{{$.outputs" not in json.dumps(pool)
    assert params["timeout"]["defaultValue"] == "3600s"
    assert params["strategy"]["defaultValue"] == "SPOT"
    assert params["service_account"]["defaultValue"] == "sa@p.iam.gserviceaccount.com"
    assert params["labels"]["defaultValue"] == {"team": "ml"}
    # The step keeps its own interface, so downstream steps consume its artifacts as before.
    assert ir["components"]["comp-probe"]["outputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == "system.Model"


def pairs(args: List[str]) -> List[List[str]]:
    return [list(p) for p in zip(args[1::2], args[2::2])]


def gcpc_payload_args(pools: List[Dict[str, Any]], executor_input: Dict[str, Any], params: Mapping[str, Any]) -> List[str]:
    """The chief's args after the backend fills gcpc's `--payload` (a JSON string holding the worker pools): each
    placeholder replaced by raw text, `{{$.json_escape[1]}}` by the executor input escaped once, as KFP does."""
    payload = json.dumps({"job_spec": {"worker_pool_specs": pools}})
    payload = payload.replace("{{$.json_escape[1]}}", json.dumps(json.dumps(executor_input))[1:-1])
    payload = PLACEHOLDER.sub(lambda m: str(params.get(m.group(3), "")), payload)
    return list(json.loads(payload)["job_spec"]["worker_pool_specs"][0]["container_spec"]["args"])


@pytest.mark.parametrize("name", ['say "hi"', "back\\slash\\", "two\nlines", "all \" \\ \n, ${x} null"])
def test_job_step_values_survive_gcpcs_json_payload(tmp_path: Path, name: str, monkeypatch: Any) -> None:
    ir = compile_pipeline(tmp_path, job=GPU_JOB)
    pools = ir["components"]["comp-probe"]["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    fuse = tmp_path / "gcs"  # the /gcs mount's stand-in
    data = fuse / "b" / "in put" / "data.csv"
    data.parent.mkdir(parents=True)
    data.write_text("x,y\n1,2\n")
    params = {"name": name, "epochs": 7, "lr": 1e-05, "flag": True}
    executor_input = {
        "inputs": {"parameterValues": params,
                   "artifacts": {"data": {"artifacts": [{"uri": "gs://b/in put/data.csv"}]}}},
        "outputs": {"artifacts": {"model": {"artifacts": [{"uri": "gs://b/out/model's dir/model.json"}]}}},
    }  # fmt: skip
    args = gcpc_payload_args(pools, executor_input, params)
    monkeypatch.setenv("HYDRA_VERTEX_AI_GCS_FUSE_ROOT", str(fuse))
    proc = run_step(pools[0]["container_spec"]["command"], args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    received = json.loads((fuse / "b" / "out" / "model's dir" / "model.json").read_text())
    assert received["data.name"] == {"value": name, "type": "str"}
    assert received["trainer.epochs"] == {"value": 7, "type": "int"}
    assert received["model.lr"] == {"value": 1e-05, "type": "float"}
    assert received["flag"] == {"value": True, "type": "bool"}
    assert received["data.dir"] == {"value": str(data), "type": "str"}
    assert received["input_artifact"] == "x,y\n1,2\n"


def test_explicit_worker_pools_reach_the_step() -> None:
    job = JobSpecConf(machine_type="n2-standard-8", worker_pools=[WorkerPoolConf(machine_type="n2-highmem-4", replica_count=3)])
    step = hydra_component("multi", app="train.py", image=IMAGE, job=job)
    from google.protobuf import json_format

    ir = json_format.MessageToDict(step.pipeline_spec)
    (comp,) = ir["components"].values()
    pools = comp["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"]
    assert [(p["machine_spec"]["machine_type"], p["replica_count"]) for p in pools] == [("n2-standard-8", 1), ("n2-highmem-4", 3)]


@pytest.mark.parametrize(
    "job, key",
    [
        (JobSpecConf(accelerator_count=1), "job.accelerator_count"),
        (JobSpecConf(scheduling=SchedulingConf(disable_retries=True)), "job.scheduling.disable_retries"),
    ],
)
def test_job_spec_errors_name_the_key(job: JobSpecConf, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        hydra_component("bad", app="train.py", image=IMAGE, job=job)


def test_interface_errors() -> None:
    with pytest.raises(ValueError, match="data.dir"):
        hydra_component("s", app="a.py", image=IMAGE, inputs={"a": Param("data.dir")}, outputs={"b": Artifact("data.dir")})
    with pytest.raises(TypeError, match="list"):
        hydra_component("s", app="a.py", image=IMAGE, inputs={"a": Param("x", list)})
    with pytest.raises(ValueError, match="image"):
        hydra_component("s", app="a.py")


@pytest.mark.parametrize(
    "name, lr",
    [
        ("a, b", 0.001),  # a comma: one value, not a sweep
        ("it's \"quoted\" = [1, 2] ${oops} null", 1e-05),
        ("  spaced  out\\", 3.0),
    ],
)
def test_compiled_step_runs_the_app_with_exactly_those_values(tmp_path: Path, name: str, lr: float) -> None:
    spec = container(compile_pipeline(tmp_path))
    data = tmp_path / "in put" / "data, v1.csv"
    data.parent.mkdir()
    data.write_text("x,y\n1,2\n")
    model = tmp_path / "outputs" / "model's dir" / "model.json"  # the folder does not exist yet
    params = {"name": name, "epochs": 7, "lr": lr, "flag": True}
    args = substitute(spec["args"], params, {"data": data, "model": model})
    proc = run_step(spec["command"], args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    received = json.loads(model.read_text())
    assert received["data.name"] == {"value": name, "type": "str"}
    assert received["trainer.epochs"] == {"value": 7, "type": "int"}
    assert received["model.lr"]["type"] == "float" and math.isclose(received["model.lr"]["value"], lr, rel_tol=0, abs_tol=0)
    assert received["flag"] == {"value": True, "type": "bool"}
    assert received["data.dir"] == {"value": str(data), "type": "str"}
    assert received["model.out"] == {"value": str(model), "type": "str"}
    assert received["input_artifact"] == "x,y\n1,2\n"


def test_a_value_not_of_its_declared_type_fails_the_step_before_the_app(tmp_path: Path) -> None:
    spec = container(compile_pipeline(tmp_path))
    params = {"name": "n", "epochs": "three", "lr": 0.1, "flag": False}
    args = substitute(spec["args"], params, {"data": tmp_path / "d", "model": tmp_path / "m"})
    proc = run_step(spec["command"], args, cwd=tmp_path)
    assert proc.returncode == pipeline_entry.EXIT_USAGE
    assert "trainer.epochs (int)" in proc.stderr
    assert not (tmp_path / "outputs").exists()  # Hydra never started


@pytest.mark.parametrize(
    "flag, raw, override",
    [
        ("--int", "3.0", "k=3"),
        ("--float", "1e-05", "k=1e-05"),
        ("--float", "-Infinity", "k=-inf"),
        ("--bool", "True", "k=true"),
        ("--str", "true", "k='true'"),
        ("--fixed", "k=a,b", "k=a,b"),
    ],
)
def test_entry_turns_raw_values_into_hydra_literals(flag: str, raw: str, override: str) -> None:
    text = raw if flag == "--fixed" else f"k={raw}"
    assert pipeline_entry.hydra_overrides([flag, text]) == [override]


def test_entry_module_mode_and_bad_usage() -> None:
    assert pipeline_entry.app_command("pkg.train", ["a=1"]) == [sys.executable, "-m", "pkg.train", "a=1"]
    for bad in (["--str", "no_equals"], ["--json", "k=1"], ["--int"], ["--bool", "k=maybe"]):
        with pytest.raises(ValueError):
            pipeline_entry.hydra_overrides(bad)
    assert pipeline_entry.main([]) == pipeline_entry.EXIT_USAGE


def test_public_module_does_not_import_kfp() -> None:
    # Hydra's plugin scan imports pipelines.py and pipeline_entry.py in every app.
    code = (
        "import sys, hydra_plugins.hydra_vertex_ai.pipelines, hydra_plugins.hydra_vertex_ai.pipeline_entry;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'google_cloud_pipeline_components')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_example_pipeline_compiles_to_two_hydra_steps(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "pipeline"
    out = tmp_path / "pipeline.yaml"
    proc = subprocess.run(
        [sys.executable, str(example / "compile.py"), str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ir = yaml.safe_load(out.read_text())
    prepare = container(ir, "exec-prepare-data")
    assert prepare["command"] == ENTRY and "out_dir={{$.outputs.artifacts['data'].path}}" in prepare["args"]
    train = ir["components"]["comp-train"]["inputDefinitions"]["parameters"]["worker_pool_specs"]["defaultValue"][0]
    assert train["machine_spec"] == {"machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4", "accelerator_count": 1}
    args = train["container_spec"]["args"]
    assert args[1:3] == ["--executor-input", "{{$.json_escape[1]}}"]
    assert ["--input-of", "data.root=data"] in pairs(args)
    assert ["--float-of", "model.lr=lr"] in pairs(args)
    assert ["--output-of", "++model_dir=model"] in pairs(args)
    assert ir["root"]["dag"]["tasks"]["train"]["inputs"]["artifacts"]["data"]["taskOutputArtifact"]["producerTask"] == "prepare-data"
