"""A Hydra app with a config group; the task's first act is to print when it started.

It also prints whether any part of the Vertex SDK is loaded in its process (the entry must never import it).
"""
import json
import sys
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    now = time.time()
    sdk = sorted(m for m in sys.modules if m.startswith("google.cloud.aiplatform"))
    print("TASK_START " + json.dumps({"t": now, "sdk_modules": sdk}), flush=True)
    return float(cfg.dataset.size * cfg.lr)


if __name__ == "__main__":
    main()
