"""Hydra apps as Vertex AI Pipelines (KFP 2) components, their inputs and outputs passed as Hydra overrides.

    from hydra_plugins.hydra_vertex_ai.config import JobSpecConf
    from hydra_plugins.hydra_vertex_ai.pipelines import Artifact, Param, hydra_component

    train = hydra_component(
        "train", image="us-docker.pkg.dev/p/r/trainer:1", app="train.py",
        inputs={"data": Artifact("data.dir", "Dataset"), "lr": Param("model.lr", float, 1e-3)},
        outputs={"model": Artifact("model.out_dir", "Model")},
        job=JobSpecConf(machine_type="g2-standard-8", accelerator_type="NVIDIA_L4", accelerator_count=1),
    )

The container runs `python -m hydra_plugins.hydra_vertex_ai.pipeline_entry APP --str data.name=<value> ...`:
KFP substitutes its placeholders, and that entry quotes each value for Hydra's grammar before it runs the app.

Hydra's plugin scan imports this module in every app, so it imports only the standard library and our
config at top level; kfp (the `pipelines` extra) is imported by `_pipelines` when a component is built.
"""
from typing import Any, Mapping, Optional, Sequence

from ._component_specs import ARTIFACT_TYPES, PARAM_TYPES, Artifact, Param, Spec
from .config import JobSpecConf

__all__ = ["ARTIFACT_TYPES", "PARAM_TYPES", "Artifact", "Param", "Spec", "hydra_component"]


def hydra_component(
    name: str,
    app: str,
    image: Optional[str] = None,
    inputs: Optional[Mapping[str, Spec]] = None,
    outputs: Optional[Mapping[str, Artifact]] = None,
    overrides: Sequence[str] = (),
    job: Optional[JobSpecConf] = None,
    description: Optional[str] = None,
) -> Any:
    """A KFP 2 component that runs the Hydra app `app` with its inputs and outputs as overrides.

    name:      component name (a Python identifier; `-` is allowed and becomes `_`).
    app:       what the container runs: a script path (`train.py`, relative to the image's workdir) or a
               module (`my_pkg.train`), started with the image's `python`.
    image:     container image; defaults to `job.image_uri`.
    inputs:    component input name -> Param (pipeline parameter) or Artifact (upstream artifact's path).
    outputs:   component output name -> Artifact (the path the app must write).
    overrides: fixed Hydra overrides, passed verbatim before the inputs' overrides.
    job:       the step's machines from the launcher's JobSpecConf; the step then runs as a Vertex
               CustomJob (google-cloud-pipeline-components' CustomTrainingJobOp). None: a plain
               container step on Vertex Pipelines' default machine.
    """
    from . import _pipelines

    return _pipelines.build_component(
        name=name,
        app=app,
        image=image,
        inputs=dict(inputs or {}),
        outputs=dict(outputs or {}),
        overrides=list(overrides),
        job=job,
        description=description,
    )

