"""An app whose config names a file in a bucket by its /gcs/ path, as code on Vertex reads the FUSE mount."""
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> str:
    text = Path(cfg.data).read_text()
    folder = sorted(p.name for p in Path(cfg.folder).iterdir())
    print(f"READ {text!r} FROM {cfg.data}; FOLDER {folder}", flush=True)
    if text != cfg.expect or folder != ["a.txt", "b.txt"]:
        raise SystemExit(f"read {text!r} and {folder}")
    return text


if __name__ == "__main__":
    main()
