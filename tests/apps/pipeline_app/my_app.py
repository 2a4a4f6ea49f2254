"""A Hydra app run as a pipeline step: it writes what it received, with types, as its output artifact."""
import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    received = {
        key: {"value": OmegaConf.select(cfg, key), "type": type(OmegaConf.select(cfg, key)).__name__}
        for key in ("data.name", "data.dir", "trainer.epochs", "model.lr", "model.out", "flag")
    }
    received["input_artifact"] = Path(cfg.data.dir).read_text()
    Path(cfg.model.out).write_text(json.dumps(received))


if __name__ == "__main__":
    main()
