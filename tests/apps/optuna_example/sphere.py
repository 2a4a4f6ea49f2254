"""Hydra's own Optuna sweeper example (plugins/hydra_optuna_sweeper/example, v1.3.2), as a user ports it: only
its sweeper override changes (conf/config.yaml). Its other Optuna-only lines stay: the sampler chosen from
Optuna's `hydra/sweeper/sampler` group, and `max_failure_rate`."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path="conf", config_name="config")
def sphere(cfg: DictConfig) -> float:
    x: float = cfg.x
    y: float = cfg.y

    if cfg.get("error", False):
        raise RuntimeError("cfg.error is True")

    return x**2 + y**2


if __name__ == "__main__":
    sphere()
