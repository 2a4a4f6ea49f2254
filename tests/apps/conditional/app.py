"""Two optimizers with different keys: adam has optimizer.beta1, sgd has optimizer.momentum.

The objective is a known function of the option's own keys (adam best at beta1=0.9, sgd at momentum=0.5, and
lr best at 0.01); reading the other option's key would fail the trial."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    opt = cfg.optimizer
    off = abs(opt.beta1 - 0.9) if opt.name == "adam" else abs(opt.momentum - 0.5)
    return float(off + abs(opt.lr - 0.01))


if __name__ == "__main__":
    main()
