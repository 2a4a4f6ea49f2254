"""A plain Hydra app: nothing in it knows about Vertex AI."""
import logging

import hydra
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def my_app(cfg: DictConfig) -> str:
    log.info(f"connecting to {cfg.db.driver} as {cfg.db.user}")
    return f"{cfg.db.driver}:{cfg.db.user}"


if __name__ == "__main__":
    my_app()
