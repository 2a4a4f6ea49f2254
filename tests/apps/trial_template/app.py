"""A study app whose trials' configs exercise what a composition takes from files, overrides and where it runs:
a config group (fixed, and swept), interpolations, a resolver the script registers, a key added with `+`, typed
values, and `hydra.job.env_copy` (a value that differs between the launching process and a trial)."""
import hydra
from omegaconf import DictConfig, OmegaConf

OmegaConf.register_new_resolver("twice", lambda x: 2 * x)


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    return float(cfg.lr) * cfg.model.width + (1.0 if cfg.opt == "sgd" else 0.0)


if __name__ == "__main__":
    main()
