"""An app installed as a package: its job prints what it sees (which copy of its code, where it started)."""
import json
import os
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    seen = {"file": __file__, "cwd": os.getcwd(), "note": Path("note.txt").read_text().strip(),
            "greeting": cfg.greeting, "x": cfg.x}
    print("SEEN " + json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
