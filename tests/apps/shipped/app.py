"""An app that imports its own, uninstalled module and composes a config group from its own folder."""
import hydra
from mylib.words import shout  # travels in the source snapshot, not by value
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    print(shout(cfg.data.text))
    return float(len(shout(cfg.data.text)) + cfg.x)


if __name__ == "__main__":
    main()
