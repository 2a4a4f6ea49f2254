"""Two optimizers with different keys: adam has optimizer.beta1, sgd has optimizer.momentum.

Each trial writes its composed optimizer config to `optimizer.json` in its output dir; the objective is a known
function of the active keys (adam best at beta1=0.9, sgd at momentum=0.5, lr best at 0.01)."""
import json
import os

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    optimizer = OmegaConf.to_container(cfg.optimizer)
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "optimizer.json"), "w") as f:
        json.dump(optimizer, f)
    off = abs(cfg.optimizer.beta1 - 0.9) if cfg.optimizer.name == "adam" else abs(cfg.optimizer.momentum - 0.5)
    return off + abs(cfg.optimizer.lr - 0.01)


if __name__ == "__main__":
    main()
