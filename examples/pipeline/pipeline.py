"""The example pipeline: prepare data -> train the Lightning classifier on a GPU, both plain Hydra apps.

The image holds this folder and examples/lightning_classifier side by side in its workdir (see
docs/pipelines.md), so `prepare.py` and `train.py` run as they do on a laptop.
"""
import os

from kfp import dsl

from hydra_plugins.hydra_vertex_ai.config import JobSpecConf
from hydra_plugins.hydra_vertex_ai.pipelines import Artifact, Param, hydra_component

IMAGE = os.environ.get("PIPELINE_IMAGE", "us-central1-docker.pkg.dev/my-project/hydra/classifier:latest")

prepare_data = hydra_component(
    "prepare_data",
    app="pipeline/prepare.py",
    image=IMAGE,
    inputs={"dataset": Param("dataset", str, "MNIST")},
    outputs={"data": Artifact("out_dir", "Dataset")},
)

train = hydra_component(
    "train",
    app="lightning_classifier/train.py",
    image=IMAGE,
    # The dataset artifact becomes torchvision's root, already downloaded by the first step.
    overrides=["data=mnist", "model=cnn", "data.num_workers=4"],
    inputs={
        "data": Artifact("data.root", "Dataset"),
        "lr": Param("model.lr", float, 0.003),
        "epochs": Param("trainer.max_epochs", int, 10),
        "optimizer": Param("optimizer.name", str, "adam"),
    },
    # `++` adds the key whether or not the app's config declares it; train.py saves the model there.
    outputs={"model": Artifact("++model_dir", "Model")},
    job=JobSpecConf(
        machine_type="g2-standard-8",
        accelerator_type="NVIDIA_L4",
        accelerator_count=1,
        boot_disk_size_gb=100,
    ),
)


@dsl.pipeline(name="hydra-classifier", description="Prepare MNIST, then train the Hydra classifier on an L4.")
def classifier_pipeline(lr: float = 0.003, epochs: int = 10, optimizer: str = "adam") -> None:
    data = prepare_data()
    train(data=data.outputs["data"], lr=lr, epochs=epochs, optimizer=optimizer)
