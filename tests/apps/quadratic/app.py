"""A task whose optimum is known: minimize (x - 2)^2 + offset[opt], best at x=2, opt=b (offset 0)."""
import math
import os
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hydra_plugins.hydra_vertex_ai.metrics import report_metric

OFFSETS = {"a": 1.0, "b": 0.0, "c": 3.0}


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    if cfg.fail_when_x_below is not None and cfg.x < cfg.fail_when_x_below:
        raise ValueError(f"x={cfg.x} is below {cfg.fail_when_x_below}")
    time.sleep(cfg.sleep_s)
    final = (cfg.x - 2.0) ** 2 + OFFSETS[cfg.opt] + 0.01 * cfg.n
    for step in range(1, cfg.report_steps + 1):  # a learning curve that falls towards the final value
        report_metric(final + cfg.report_steps - step, step=step)
        time.sleep(cfg.step_s)
    if cfg.return_nan:
        return math.nan
    value = (cfg.x - 2.0) ** 2 + OFFSETS[cfg.opt] + 0.01 * cfg.n
    with open(os.path.join(HydraConfig.get().runtime.output_dir, "trial.txt"), "w") as f:
        f.write(f"{cfg.x} {cfg.opt} {cfg.n} {value}\n")
    return {"loss": value, "x": cfg.x} if cfg.as_dict else value


if __name__ == "__main__":
    main()
