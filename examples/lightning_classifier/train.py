"""An image classifier with Hydra and PyTorch Lightning; it returns the validation accuracy.

    python train.py                                   # trains here, no plugin involved
    python train.py model=cnn data=mnist              # a bigger run, for a GPU machine
    python train.py -m hydra/launcher=vertex_ai model.lr=0.01,0.1   # one Vertex AI job per value

Nothing here knows about Vertex AI except two conventions of its containers: checkpoints go to
AIP_CHECKPOINT_DIR and TensorBoard events to AIP_TENSORBOARD_LOG_DIR when they are set, and the
ReportMetricCallback feeds Vizier's early stopping (a no-op outside a tuning trial).

Everything lives in this one file on purpose: the launcher ships this script's functions and classes by
value, while a module of its own next to it would have to exist in the container image.
"""
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import hydra
import lightning.pytorch as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hydra_plugins.hydra_vertex_ai.metrics import ReportMetricCallback

log = logging.getLogger(__name__)
NUM_CLASSES = 10
MONITOR = "val_acc"

# --- data -------------------------------------------------------------------------------------------


class ImageArrays(Dataset):
    """Grayscale uint8 images (N, H, W) and their labels, through a torchvision transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.transform(self.images[i].unsqueeze(0)), int(self.labels[i])


Split = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def load_digits(val_fraction: float, seed: int) -> Split:
    """scikit-learn's 8x8 digits as uint8 images, split stratified into train and validation."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8)  # pixels are 0..16
    labels = torch.from_numpy(digits.target)
    train_idx, val_idx = train_test_split(
        range(len(labels)), test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    return images[train_idx], labels[train_idx], images[val_idx], labels[val_idx]


def load_mnist(root: str, download: bool) -> Split:
    from torchvision.datasets import MNIST

    train, val = (MNIST(root, train=flag, download=download) for flag in (True, False))
    return train.data, train.targets, val.data, val.targets


class ImageDataModule(L.LightningDataModule):
    def __init__(
        self,
        name: str,
        image_size: int,
        batch_size: int,
        num_workers: int = 0,
        augment: bool = False,
        val_fraction: float = 0.2,
        root: str = "~/.cache/torchvision",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if name not in ("digits", "mnist"):
            raise ValueError(f"unknown data.name {name!r}: digits or mnist")
        self.name, self.image_size, self.batch_size, self.num_workers = name, image_size, batch_size, num_workers
        self.augment, self.val_fraction, self.root, self.seed = augment, val_fraction, os.path.expanduser(root), seed

    def prepare_data(self) -> None:
        if self.name == "mnist":  # download once, on rank 0 only
            load_mnist(self.root, download=True)

    def setup(self, stage: str) -> None:
        if self.name == "digits":
            x_train, y_train, x_val, y_val = load_digits(self.val_fraction, self.seed)
        else:
            x_train, y_train, x_val, y_val = load_mnist(self.root, download=False)
        pixels = x_train.float() / 255
        normalize = v2.Normalize([pixels.mean().item()], [pixels.std().item()])
        to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        jitter = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1))] if self.augment else []
        self.train_set = ImageArrays(x_train, y_train, v2.Compose(jitter + to_tensor + [normalize]))
        self.val_set = ImageArrays(x_val, y_val, v2.Compose(to_tensor + [normalize]))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


# --- model ------------------------------------------------------------------------------------------


def build_net(name: str, layers: int, width: int, dropout: float, image_size: int) -> nn.Module:
    if name == "mlp":
        blocks: List[nn.Module] = [nn.Flatten()]
        features = image_size * image_size
        for _ in range(layers):
            blocks += [nn.Linear(features, width), nn.ReLU(), nn.Dropout(dropout)]
            features = width
        return nn.Sequential(*blocks, nn.Linear(features, NUM_CLASSES))
    if name == "cnn":
        blocks, channels, size = [], 1, image_size
        for _ in range(layers):
            blocks += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if size >= 8:  # pool while the map is large enough to keep its shape information
                blocks.append(nn.MaxPool2d(2))
                size //= 2
            channels = width
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, NUM_CLASSES)]
        return nn.Sequential(*blocks, *head)
    raise ValueError(f"unknown model.name {name!r}: mlp or cnn")


class Classifier(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float, optimizer: Dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net, self.lr, self.optimizer_conf = net, lr, optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), sync_dist=True)
        self.log(MONITOR, (logits.argmax(dim=1) == y).float().mean(), prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            m = self.trainer.callback_metrics
            log.info("epoch %d: val_acc=%.4f val_loss=%.4f", self.current_epoch, m[MONITOR], m["val_loss"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        conf = dict(self.optimizer_conf)
        name, decay = conf.pop("name"), conf.pop("weight_decay", 0.0)
        if name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=decay, **conf)
        if name == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=decay, **conf)
        raise ValueError(f"unknown optimizer.name {name!r}: adam or sgd")


# --- where outputs go -------------------------------------------------------------------------------


def vertex_dir(env_var: str, fallback: Path) -> str:
    """The directory Vertex names in `env_var`, as this process can write it; `fallback` when unset.

    Vertex gives gs:// URIs; inside its containers the bucket is mounted at /gcs/<bucket>/ (FUSE).
    """
    uri = os.environ.get(env_var)
    if not uri:
        return str(fallback)
    if uri.startswith("gs://"):
        if not Path("/gcs").is_dir():
            log.warning("%s=%s but /gcs is not mounted; writing to %s instead", env_var, uri, fallback)
            return str(fallback)
        return "/gcs/" + uri[len("gs://") :]
    return uri


def make_loggers(output_dir: Path) -> List[Logger]:
    tensorboard_dir = vertex_dir("AIP_TENSORBOARD_LOG_DIR", output_dir)
    return [CSVLogger(output_dir, name="csv"), TensorBoardLogger(tensorboard_dir, name="tensorboard")]


# --- the task ---------------------------------------------------------------------------------------


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def train(cfg: DictConfig) -> float:
    L.seed_everything(cfg.seed, workers=True)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and newer
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    data = ImageDataModule(**cfg.data, seed=cfg.seed)
    net = build_net(cfg.model.name, cfg.model.layers, cfg.model.width, cfg.model.dropout, cfg.data.image_size)
    model = Classifier(net, lr=cfg.model.lr, optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True))
    checkpoints = ModelCheckpoint(
        dirpath=vertex_dir("AIP_CHECKPOINT_DIR", output_dir / "checkpoints"),
        filename="{epoch}-{val_acc:.4f}",
        monitor=MONITOR,
        mode="max",
        save_top_k=1,
    )
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        default_root_dir=output_dir,
        logger=make_loggers(output_dir),
        callbacks=[checkpoints, ReportMetricCallback(monitor=MONITOR)],
    )
    trainer.fit(model, datamodule=data)
    accuracy = float(trainer.callback_metrics[MONITOR])
    log.info("validation accuracy: %.4f (best checkpoint: %s)", accuracy, checkpoints.best_model_path)
    return accuracy


if __name__ == "__main__":
    train()
