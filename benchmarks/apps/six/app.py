"""Six hyperparameters and an instant task: what the sweeper does before and around its trials, not the trials."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    return float(cfg.lr) + float(cfg.wd) + cfg.layers + float(cfg.dropout) + cfg.batch / 100 + (cfg.opt == "sgd")


if __name__ == "__main__":
    main()
