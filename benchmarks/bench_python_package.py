"""Python-package jobs (the no-image path, issue 19) next to an image job, on the local backend.

Three whole 1-job sweeps of `apps/plain`, interleaved:
- image job: `hydra/launcher=vertex_ai hydra.launcher.backend=local` (this environment is the image);
- python-package, cold: the same with `job.executor_image_uri` set, so the job runs a pythonPackageSpec: the
  launcher builds and stages the two wheels, the stand-in creates a virtualenv and pip-installs them offline;
  every run gets an empty HYDRA_VERTEX_AI_CACHE;
- python-package, warm: the same with one cache kept across runs (the environment is reused).
Each figure is the whole process's wall time, and the job's own start-up as its log tells it.
"""
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from _common import APPS, PYTHON, WORK, bench_env, describe, header, interleave, median, result, run_process

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
APP = APPS / "plain" / "app.py"
EXECUTOR = "us-docker.pkg.dev/vertex-ai/training/pytorch-cpu.2-4.py310:latest"
BASE = ["-m", "x=1", "hydra/launcher=vertex_ai", "hydra.launcher.backend=local"]
INSTALLED = re.compile(r"installed in ([0-9.]+)s")


def sweep(extra: List[str], cache: Path, installs: List[float]) -> float:
    out = Path(tempfile.mkdtemp(dir=WORK, prefix="pp-"))
    elapsed, _ = run_process([PYTHON, str(APP), *BASE, *extra, f"hydra.sweep.dir={out}"], cwd=out,
                             env=bench_env(HYDRA_VERTEX_AI_CACHE=str(cache)))
    logs = "".join(p.read_text(errors="replace") for p in out.rglob("workerpool0-0.log"))
    installs.extend(float(m) for m in INSTALLED.findall(logs))
    return elapsed


def main() -> None:
    header("python-package jobs (no image): start-up, cold and warm, next to an image job")
    WORK.mkdir(parents=True, exist_ok=True)
    warm_cache = Path(tempfile.mkdtemp(dir=WORK, prefix="pp-cache-warm-"))
    package = [f"hydra.launcher.job.executor_image_uri={EXECUTOR}"]
    installs: Dict[str, List[float]] = {"cold": [], "warm": []}
    times = interleave({
        "image job": lambda: sweep([], warm_cache, []),
        "python-package, cold": lambda: sweep(package, Path(tempfile.mkdtemp(dir=WORK, prefix="pp-cache-")),
                                              installs["cold"]),
        "python-package, warm": lambda: sweep(package, warm_cache, installs["warm"]),
    }, REPEATS)
    for name, values in times.items():
        print(describe(name, values), flush=True)
    for kind, values in installs.items():
        if values:
            print(describe(f"install inside the job ({kind})", values), flush=True)
    image = median(times["image job"])
    cold, warm = median(times["python-package, cold"]), median(times["python-package, warm"])
    cold_install = f", of which the install {median(installs['cold']):.1f} s" if installs["cold"] else ""
    result("Python-package jobs (no image): a 1-job local sweep of `apps/plain`, whole process",
           f"image job: {image:.1f} s", "report",
           f"cold (venv built): {cold:.1f} s ({cold / image:.2f}×{cold_install}); warm (cached venv): "
           f"{warm:.1f} s ({warm / image:.2f}×)", None)


if __name__ == "__main__":
    sys.exit(main())
