"""A plain Hydra app whose jobs record what they see and misbehave on request (`mode`)."""
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

WATCHED_ENV = (
    "CLOUD_ML_JOB_ID",
    "AIP_MODEL_DIR",
    "AIP_CHECKPOINT_DIR",
    "AIP_TENSORBOARD_LOG_DIR",
    "CLUSTER_SPEC",
    "PYTHONPATH",
    "MY_VAR",
)
log = logging.getLogger(__name__)


def record(cfg: DictConfig) -> Path:
    """Write what this job sees to <out_dir>/<tag>.json before doing anything else."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen = {
        "pid": os.getpid(),
        "start": time.time(),
        "cwd": os.getcwd(),
        "env": {k: os.environ.get(k) for k in WATCHED_ENV},
        "job_id": HydraConfig.get().job.get("id"),  # unset in a single run
        "output_dir": HydraConfig.get().runtime.output_dir,
        "modules": sorted(sys.modules),
    }
    path = out / f"{cfg.tag}.json"
    path.write_text(json.dumps(seen))
    return path


def hold(cfg: DictConfig) -> None:
    """Stay running until `hold_for` jobs have started, so that jobs allowed to overlap do overlap."""
    deadline = time.time() + cfg.hold_max_s
    while time.time() < deadline and len(list(Path(cfg.out_dir).glob("*.json"))) < cfg.hold_for:
        time.sleep(0.05)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def my_app(cfg: DictConfig) -> int:
    path = record(cfg)
    log.info("job %s started", cfg.tag)
    if cfg.mode == "raise":
        raise ValueError(f"job {cfg.tag} was told to fail")
    if cfg.mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.mode == "exit":
        print(f"job {cfg.tag} is about to vanish", flush=True)
        os._exit(1)
    if cfg.mode == "sleep":
        time.sleep(300)
    if cfg.mode == "hold":
        hold(cfg)
    path.with_suffix(".end").write_text(str(time.time()))
    return int(cfg.tag)


if __name__ == "__main__":
    my_app()
