"""A task shaped like lightning-hydra-template's src/train.py, without torch: `python src/train.py ...`.

It "trains" deterministically from its hyperparameters and returns the metric `optimized_metric` names, as the
template does; each job logs what it was given and scored (`SEEN {json}`), into <output_dir>/train.log, which
every backend brings back.
"""
import json
import logging
from typing import Dict, Optional

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def fit(lr: float, width: int, batch_size: int) -> Dict[str, float]:
    loss = abs(lr - 0.03) * 10 + abs(width - 16) / 16 + abs(batch_size - 32) / 64
    return {"train/loss": loss, "val/score": round(1.0 / (1.0 + loss), 6)}


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg: DictConfig) -> Optional[float]:
    metrics = fit(float(cfg.model.lr), int(cfg.model.width), int(cfg.data.batch_size))
    seen = {"lr": cfg.model.lr, "width": cfg.model.width, "batch_size": cfg.data.batch_size, "metrics": metrics}
    log.info("SEEN %s", json.dumps(seen))
    return metrics[cfg.optimized_metric] if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
