"""Build the KFP 2 components of `pipelines.hydra_component`. Imports kfp (the `pipelines` extra).

A step is a container component whose command is `pipeline_entry` and whose args are `--kind KEY=<placeholder>`
pairs. With a JobSpecConf the step becomes a Vertex CustomJob through google-cloud-pipeline-components'
`create_custom_training_job_from_component`, with worker pools built by `_jobspec` (the launcher's code), so
Vertex gets the exact machine type, accelerators, disks, replicas and scheduling the launcher would use.
"""
import dataclasses
import inspect
import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import _jobspec
from ._component_specs import ARTIFACT_TYPES, PARAM_TYPES, Artifact, Param, Spec
from ._errors import ConfigError
from .config import JobSpecConf

log = logging.getLogger(__name__)

ENTRY_MODULE = "hydra_plugins.hydra_vertex_ai.pipeline_entry"
COMMAND = [_jobspec.CONTAINER_PYTHON, "-m", ENTRY_MODULE]
_KIND_FLAGS = {str: "--str", int: "--int", float: "--float", bool: "--bool"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# gcpc's CustomTrainingJobOp defaults, used where the JobSpecConf leaves a setting unset.
_DEFAULT_TIMEOUT = "604800s"
_DEFAULT_MAX_WAIT = "86400s"


def build_component(
    *,
    name: str,
    app: str,
    image: Optional[str],
    inputs: Dict[str, Spec],
    outputs: Dict[str, Artifact],
    overrides: List[str],
    job: Optional[JobSpecConf],
    description: Optional[str],
) -> Any:
    image = _image(image, job)
    _check_interface(name, inputs, outputs)
    component = _container_component(name, app, image, inputs, outputs, overrides, description)
    if job is None:
        return component
    return _custom_job_component(component, dataclasses.replace(job, image_uri=image))


def _image(image: Optional[str], job: Optional[JobSpecConf]) -> str:
    job_image = job.image_uri if job is not None else None
    if image and job_image and image != job_image:
        raise ValueError(f"image '{image}' differs from job.image_uri '{job_image}'; set one of them")
    if not (image or job_image):
        raise ValueError("no container image: pass image=... or set job.image_uri")
    return str(image or job_image)


def _check_interface(name: str, inputs: Mapping[str, Spec], outputs: Mapping[str, Artifact]) -> None:
    if not _IDENTIFIER.match(name.replace("-", "_")):
        raise ValueError(f"component name '{name}' must be a Python identifier ('-' allowed)")
    keys: Dict[str, str] = {}
    for kind, specs in (("input", inputs), ("output", outputs)):
        for io_name, spec in specs.items():
            where = f"{kind} '{io_name}'"
            if not _IDENTIFIER.match(io_name):
                raise ValueError(f"{where}: KFP input and output names must be Python identifiers")
            if io_name in inputs and kind == "output":
                raise ValueError(f"{where}: the name is also an input")
            _check_spec(spec, where, output=kind == "output")
            if spec.key in keys:
                raise ValueError(f"{where}: Hydra key '{spec.key}' is already set by {keys[spec.key]}")
            keys[spec.key] = where


def _check_spec(spec: Spec, where: str, output: bool) -> None:
    if not isinstance(spec, (Param, Artifact)) or (output and not isinstance(spec, Artifact)):
        allowed = "Artifact" if output else "Param or Artifact"
        raise TypeError(f"{where}: expected {allowed}, got {spec!r}")
    if not spec.key or "=" in spec.key or spec.key.startswith("-"):
        raise ValueError(f"{where}: '{spec.key}' is not a Hydra override key")
    if isinstance(spec, Param) and spec.type not in PARAM_TYPES:
        raise TypeError(f"{where}: parameter type {spec.type!r} is not one of str, int, float, bool")
    if isinstance(spec, Artifact) and spec.type not in ARTIFACT_TYPES:
        raise ValueError(f"{where}: artifact type '{spec.type}' is not one of {', '.join(ARTIFACT_TYPES)}")


def _container_component(
    name: str,
    app: str,
    image: str,
    inputs: Mapping[str, Spec],
    outputs: Mapping[str, Artifact],
    overrides: Sequence[str],
    description: Optional[str],
) -> Any:
    """`@dsl.container_component` over a function whose signature is the declared interface."""
    from kfp import dsl

    params = _signature(inputs, outputs)
    specs: Dict[str, Spec] = {**inputs, **outputs}

    def body(*placeholders: Any) -> Any:
        args: List[Any] = [app]
        for override in overrides:
            args += ["--fixed", override]
        for param, placeholder in zip(params, placeholders):
            flag, value = _arg(specs[param.name], param.name in outputs, placeholder)
            args += [flag, f"{specs[param.name].key}={value}"]
        return dsl.ContainerSpec(image=image, command=list(COMMAND), args=args)

    body.__name__ = name.replace("-", "_")
    body.__doc__ = description or f"Hydra app {app}, its inputs and outputs passed as Hydra overrides."
    body.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return dsl.container_component(body)


def _signature(inputs: Mapping[str, Spec], outputs: Mapping[str, Artifact]) -> List[inspect.Parameter]:
    from kfp import dsl

    def parameter(io_name: str, spec: Spec, output: bool) -> inspect.Parameter:
        if isinstance(spec, Param):
            annotation: Any = spec.type
        else:
            annotation = (dsl.Output if output else dsl.Input)[getattr(dsl, spec.type)]
        default = spec.default if isinstance(spec, Param) and spec.has_default else inspect.Parameter.empty
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Parameter(io_name, kind, default=default, annotation=annotation)

    params = [parameter(n, s, False) for n, s in inputs.items()] + [parameter(n, s, True) for n, s in outputs.items()]
    # Python signatures list required parameters before defaulted ones; KFP keys them by name anyway.
    return sorted(params, key=lambda p: p.default is not inspect.Parameter.empty)


def _arg(spec: Spec, output: bool, placeholder: Any) -> "tuple[str, Any]":
    if isinstance(spec, Param):
        return _KIND_FLAGS[spec.type], placeholder
    return ("--output" if output else "--input"), placeholder.path


def _custom_job_component(component: Any, job: JobSpecConf) -> Any:
    """`component` as a Vertex CustomJob step on the machines of `job`."""
    _jobspec.validate(job, "job")
    if job.scheduling.disable_retries:
        raise ConfigError(
            "job.scheduling.disable_retries", "CustomTrainingJobOp (pipeline steps) has no such setting"
        )
    from google_cloud_pipeline_components.v1.custom_job import create_custom_training_job_from_component

    container = _executor_container(component)
    custom_job = _jobspec.build_custom_job(
        job,
        display_name=component.name,
        container=_jobspec.Container(args=container["args"], env=_jobspec.job_env(job)),
        labels={},
        base_output_dir=job.base_output_dir,
    )
    spec = custom_job["jobSpec"]
    scheduling = spec.get("scheduling", {})
    wrapped = create_custom_training_job_from_component(
        component,
        display_name=component.name,
        timeout=scheduling.get("timeout", _DEFAULT_TIMEOUT),
        restart_job_on_worker_restart=scheduling.get("restartJobOnWorkerRestart", False),
        strategy=scheduling.get("strategy", "STANDARD"),
        max_wait_duration=scheduling.get("maxWaitDuration", _DEFAULT_MAX_WAIT),
        service_account=spec.get("serviceAccount", ""),
        network=spec.get("network", ""),
        tensorboard=spec.get("tensorboard", ""),
        enable_web_access=spec.get("enableWebAccess", False),
        base_output_directory=spec.get("baseOutputDirectory", {}).get("outputUriPrefix", ""),
        labels=dict(custom_job["labels"]) or None,
    )
    pools = [_pool_for_gcpc(pool, container["command"]) for pool in spec["workerPoolSpecs"]]
    return _with_worker_pools(wrapped, pools)


def _executor_container(component: Any) -> Dict[str, Any]:
    from google.protobuf import json_format

    ir = json_format.MessageToDict(component.pipeline_spec)
    (executor,) = ir["deploymentSpec"]["executors"].values()
    return dict(executor["container"])


def _pool_for_gcpc(pool: Dict[str, Any], command: List[str]) -> Dict[str, Any]:
    """A `_jobspec` worker pool (REST JSON) as CustomTrainingJobOp wants it: snake_case, ints, our command."""
    if not pool:
        return {}  # an unused pool position stays empty
    out = _snake_keys(pool)
    out["replica_count"] = int(out["replica_count"])  # proto3 JSON writes int64 as a string
    out["container_spec"]["command"] = list(command)  # `_jobspec` writes the launcher's entry module
    return out


def _snake_keys(value: Any) -> Any:
    # Only field names are dict keys in a worker pool spec (env is a list of {name, value}), so this is safe.
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake_keys(v) for v in value]
    return value


def _with_worker_pools(component: Any, pools: List[Dict[str, Any]]) -> Any:
    """`component` with `pools` as the default of its `worker_pool_specs` input (in the IR and the spec)."""
    import yaml
    from kfp import components

    ir = yaml.safe_load(component.component_yaml)
    for definitions in _input_definitions(ir):
        definitions["parameters"]["worker_pool_specs"]["defaultValue"] = pools
    patched = components.load_component_from_text(yaml.safe_dump(ir, sort_keys=False))
    patched.component_spec.name = component.component_spec.name
    patched.description = component.description
    return patched


def _input_definitions(ir: Dict[str, Any]) -> List[Dict[str, Any]]:
    found = [ir["root"]["inputDefinitions"]]
    found += [c["inputDefinitions"] for c in ir["components"].values() if "inputDefinitions" in c]
    return [d for d in found if "worker_pool_specs" in d.get("parameters", {})]

