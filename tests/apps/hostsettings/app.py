"""A Hydra app that needs a setting of the launching machine: a variable (`mode=env`, `mode=oc_env`) or a file
below the launch dir (`mode=file`)."""
import os

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> str:
    if cfg.mode == "env":
        return os.environ["HVAI_TEST_TOKEN"]
    if cfg.mode == "oc_env":
        return str(cfg.token)
    with open("data/train.csv") as f:
        return f.read()


if __name__ == "__main__":
    app()
