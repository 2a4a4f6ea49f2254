"""A CPU-bound trial: a pure-Python busy loop of `cfg.work` iterations (calibrated to about 2 s)."""
import hydra
from omegaconf import DictConfig


def spin(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return acc


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    spin(int(cfg.work))
    return float((cfg.x - 3) ** 2)


if __name__ == "__main__":
    main()
