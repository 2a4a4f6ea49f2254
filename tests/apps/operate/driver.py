"""Launch `tag_of` jobs with the vertex_ai launcher, as a process a test can kill -9.

usage: python driver.py OVERRIDES_JSON JOB_OVERRIDES_JSON  (both JSON lists; the first of strings, the second of
lists of strings). The test imports `tag_of` from here to re-attach in its own process with the same task.
"""
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[2]


def tag_of(cfg: Any) -> int:
    """Record each start (one file per process), hold for `hold_max_s` seconds, return ten times the tag."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{cfg.tag}.{os.getpid()}.start").touch()
    time.sleep(float(cfg.hold_max_s))
    return int(cfg.tag) * 10


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    from conftest import launch_in_process

    overrides, jobs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    launch_in_process(tag_of, jobs, overrides)
