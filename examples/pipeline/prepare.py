"""Step 1 of the example pipeline, a plain Hydra app: download MNIST into `out_dir` (the Dataset artifact).

    python prepare.py out_dir=/tmp/mnist
"""
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore

log = logging.getLogger(__name__)


@dataclass
class PrepareConf:
    # where the dataset goes; in the pipeline, the path of the step's output artifact
    out_dir: str = "???"
    # torchvision dataset class
    dataset: str = "MNIST"


ConfigStore.instance().store(name="prepare", node=PrepareConf)


@hydra.main(version_base="1.3", config_path=None, config_name="prepare")
def prepare(cfg: PrepareConf) -> None:
    import torchvision

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        getattr(torchvision.datasets, cfg.dataset)(root=str(out), train=train, download=True)
    log.info("%s downloaded into %s", cfg.dataset, out)


if __name__ == "__main__":
    prepare()
