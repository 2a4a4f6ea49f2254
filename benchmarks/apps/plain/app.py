"""The smallest Hydra app: start-up is all there is to time."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> int:
    return int(cfg.x)


if __name__ == "__main__":
    main()
