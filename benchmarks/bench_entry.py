"""Container entry: process start -> the task's first line, via `python -m hydra_plugins.hydra_vertex_ai.entry
PAYLOAD` (payload staged by a real launch with the local backend) vs `python app.py` with the same overrides.

The task prints `time.time()` first thing; the start is `time.time()` taken just before spawning. Every entry
run starts as a fresh container does: the source snapshot is unpacked again (its unpack dir is removed first).
The task also reports which `google.cloud.aiplatform*` modules its process holds: the entry must hold none.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from _common import APPS, PYTHON, WORK, bench_env, describe, header, interleave, median, result, run_process

REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
TARGET = 1.15
APP_DIR = APPS / "entry_app"
OVERRIDES = ["dataset=large", "lr=0.5"]
ENTRY = "hydra_plugins.hydra_vertex_ai.entry"


def stage_payload() -> Path:
    """A real launch with the local backend (it also runs the job once); returns its staged payload.pkl."""
    sweep = WORK / "entry" / "sweep"
    shutil.rmtree(sweep, ignore_errors=True)
    # The app's own folder is its source root, as a user's repository would be (not this whole repo).
    cmd = [PYTHON, "app.py", "-m", "hydra/launcher=vertex_ai", f"hydra.launcher.snapshot.root={APP_DIR}",
           f"hydra.sweep.dir={sweep}", *OVERRIDES]
    run_process(cmd, cwd=APP_DIR)
    found = glob.glob(str(sweep / ".vertex_ai" / "*" / "jobs" / "0" / "payload.pkl"))
    assert len(found) == 1, f"expected one staged payload, found {found}"
    return Path(found[0])


def snapshot_dir(payload: Path) -> Path:
    with open(payload, "rb") as f:
        snapshot = json.loads(f.readline())["snapshot"]
    return Path(tempfile.gettempdir(), "hydra_vertex_ai", "snapshots", snapshot["digest"])


def first_line(cmd: List[str], cwd: Path, sdk_seen: List[List[str]]) -> float:
    """Seconds from just before spawning to the task's TASK_START timestamp; waits for the process to end."""
    env = bench_env()
    start = time.time()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {cmd}\n{done.stdout}\n{done.stderr}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("TASK_START "))
    task = json.loads(line[len("TASK_START "):])
    sdk_seen.append(task["sdk_modules"])
    return float(task["t"]) - start


def main() -> None:
    header("container entry: process start -> first line of the task")
    payload = stage_payload()
    unpacked = snapshot_dir(payload)
    container_cwd = WORK / "entry" / "container"
    container_cwd.mkdir(parents=True, exist_ok=True)
    sdk: Dict[str, List[List[str]]] = {"entry": [], "app": []}

    def entry() -> float:
        shutil.rmtree(unpacked, ignore_errors=True)  # a fresh container has no unpacked snapshot
        return first_line([PYTHON, "-m", ENTRY, str(payload)], container_cwd, sdk["entry"])

    def app() -> float:
        run_dir = WORK / "entry" / "run"
        return first_line([PYTHON, "app.py", *OVERRIDES, f"hydra.run.dir={run_dir}"], APP_DIR, sdk["app"])

    times = interleave({"entry (candidate)": entry, "python app.py (baseline)": app}, REPEATS)
    for name, values in times.items():
        print(describe(name, values, "ms"))
    ratio = median(times["entry (candidate)"]) / median(times["python app.py (baseline)"])
    pairs = [a / b for a, b in zip(times["entry (candidate)"], times["python app.py (baseline)"])]
    print(f"ratio entry/app: {ratio:.3f} (median of pairwise ratios {median(pairs):.3f}; target <= {TARGET})")
    leaked = sorted({m for seen in sdk["entry"] for m in seen})
    print(f"google.cloud.aiplatform* modules in the entry's task process: {leaked or 'none'}")
    assert not leaked, "the entry imported the Vertex SDK"
    result("Container entry → first line of the task (app with a config group)",
           f"`python app.py` same overrides: {median(times['python app.py (baseline)']) * 1000:.0f} ms",
           f"≤ {TARGET}×; no Vertex SDK",
           f"{ratio:.3f}× ({median(times['entry (candidate)']) * 1000:.0f} ms); SDK modules loaded: "
           f"{len(leaked)}", ratio <= TARGET and not leaked)


if __name__ == "__main__":
    main()
