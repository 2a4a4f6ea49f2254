"""P8: local jobs of a heavy project. `apps/heavy` (torch and Lightning imported at module level, a tiny
Lightning fit per job), 4 jobs, 2 at a time: `hydra/launcher=vertex_ai` on the local backend (jobs forked from
the warm parent, `local_warm_start`) vs Hydra's joblib launcher (loky workers keep their imports), and our
launcher with fresh interpreters (`local_warm_start=false`, the code before issue 24) for reference."""
import os
import resource
import shutil
from typing import Dict, List

from _common import APPS, PYTHON, WORK, describe, header, interleave, median, result, run_process

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TARGET = 1.2
APP_DIR = APPS / "heavy"
SEEDS = "seed=0,1,2,3"
CPU: Dict[str, List[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sweep(name: str, args: List[str]) -> float:
    sweep_dir = WORK / "heavy" / name
    shutil.rmtree(sweep_dir, ignore_errors=True)
    cpu = _children_cpu()
    wall = run_process([PYTHON, "app.py", "-m", f"hydra.sweep.dir={sweep_dir}", SEEDS, *args], cwd=APP_DIR)[0]
    CPU.setdefault(name, []).append(_children_cpu() - cpu)
    return wall


def main() -> None:
    header("P8: heavy project (torch + Lightning), 4 local jobs, 2 at a time, vs Hydra's joblib launcher")
    ours = ["hydra/launcher=vertex_ai", "hydra.launcher.backend=local", "hydra.launcher.max_parallel=2",
            f"hydra.launcher.snapshot.root={APP_DIR}"]
    runs = {
        "vertex_ai local, warm start": lambda: sweep("warm", ours),
        "joblib (baseline)": lambda: sweep("joblib", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
        "vertex_ai local, fresh interpreters": lambda: sweep("fresh", [*ours, "hydra.launcher.local_warm_start=false"]),
    }
    times = interleave(runs, REPEATS, warmup=0)
    for (name, values), cpu in zip(times.items(), CPU.values()):
        print(f"{describe(name, values)}; CPU median {median(cpu):.1f} s")
    warm, joblib, fresh = (median(v) for v in times.values())
    ratio = warm / joblib
    print(f"warm / joblib: {ratio:.2f} (target <= {TARGET}); fresh / joblib: {fresh / joblib:.2f}; "
          f"load average now {os.getloadavg()[0]:.1f}")
    result("P8: heavy project (torch + Lightning), 4 local jobs, 2 at a time",
           f"joblib launcher: {joblib:.1f} s; ours with fresh interpreters: {fresh:.1f} s ({fresh / joblib:.2f}×)",
           f"≤ {TARGET}× joblib", f"{ratio:.2f}× ({warm:.1f} s; CPU {median(CPU['warm']):.1f} s vs joblib "
           f"{median(CPU['joblib']):.1f} s)", ratio <= TARGET)


if __name__ == "__main__":
    main()
