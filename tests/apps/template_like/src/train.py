"""Shaped like ashleve/lightning-hydra-template's src/train.py, without torch: `python src/train.py ...`.

Traits it reproduces (issue #12): module-level project set-up in the style of `rootutils.setup_root` (finds
`.project-root`, sets PROJECT_ROOT, puts the root on sys.path, then `from src... import`), a config reading
`${oc.env:PROJECT_ROOT}`, a module-level custom resolver, the gitignored `optional local: default` group,
relative file reads and writes, `_target_` instantiation of classes in `src/`, and a task returning its metric
only when `optimized_metric` is set.

Each job logs one `RECORD {json}` line (into <output_dir>/train.log, which every backend brings back): what it
saw, with the project root and the sweep dir written as <ROOT> and <SWEEP> so that runs compare.
"""
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import hydra
from omegaconf import DictConfig, OmegaConf


def setup_root(search_from: str, indicator: str = ".project-root") -> Path:
    """A tiny stand-in of rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)."""
    here = Path(search_from).resolve().parent
    for folder in (here, *here.parents):
        if (folder / indicator).exists():
            os.environ["PROJECT_ROOT"] = str(folder)
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            return folder
    raise FileNotFoundError(f"no {indicator} above {search_from}")


setup_root(__file__)
OmegaConf.register_new_resolver("times_two", lambda x: 2 * int(x))

from src.data.tiny_datamodule import TinyDataModule  # noqa: E402  (needs the set-up above)
from src.models.tiny_model import TinyModel  # noqa: E402

log = logging.getLogger(__name__)


def _norm(value: Any, root: str, sweep: str) -> Any:
    if isinstance(value, str):
        return value.replace(sweep, "<SWEEP>").replace(root, "<ROOT>")
    if isinstance(value, dict):
        return {k: _norm(v, root, sweep) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v, root, sweep) for v in value]
    return value


def _rel(path: str, root: str) -> str:
    return os.path.relpath(os.path.realpath(path), os.path.realpath(root))


@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd, to_absolute_path

    if cfg.get("fail"):
        raise RuntimeError(f"broken on purpose: {cfg.fail}")
    hc = HydraConfig.get()
    root = os.environ["PROJECT_ROOT"]
    data: TinyDataModule = hydra.utils.instantiate(cfg.data)
    model: TinyModel = hydra.utils.instantiate(cfg.model)
    metrics = model.fit(data)
    greeting = Path(cfg.input_file).read_text().strip()  # relative to the directory the user launched from
    written = Path(cfg.written_dir) / f"{hc.job.num}.txt"  # relative write
    written.parent.mkdir(parents=True, exist_ok=True)
    written.write_text(greeting.upper())
    Path(hc.runtime.output_dir, "metrics.json").write_text(json.dumps(metrics, sort_keys=True))
    value = metrics[cfg.optimized_metric] if cfg.get("optimized_metric") else None
    record: Dict[str, Any] = {
        "job_num": hc.job.num,
        "overrides": sorted(hc.overrides.task),
        "cfg": OmegaConf.to_container(cfg, resolve=True),
        "classes": [type(data).__module__ + "." + type(data).__qualname__,
                    type(model).__module__ + "." + type(model).__qualname__],
        "greeting": greeting,
        "cwd": _rel(os.getcwd(), root),
        "runtime_cwd": _rel(hc.runtime.cwd, root),
        "original_cwd": _rel(get_original_cwd(), root),
        "to_absolute": _rel(to_absolute_path(cfg.input_file), root),
        "written": _rel(str(written.resolve()), root),
        "written_ok": written.read_text() == greeting.upper(),
        "output_dir": hc.runtime.output_dir,
        "return_value": value,
        "env_keys": sorted(os.environ),
    }
    seen = _norm(record, root, os.path.abspath(hc.sweep.dir))
    seen["raw_output_dir"] = hc.runtime.output_dir  # where to look for this job's files
    log.info("RECORD %s", json.dumps(seen, sort_keys=True))
    return value


if __name__ == "__main__":
    main()
