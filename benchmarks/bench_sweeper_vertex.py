"""The sweeper's Vertex path against the JobService emulator and gcp-storage-emulator: a 6-parameter study of
`apps/six` (an instant task), 8 trials, 4 at once. Seconds from spawning the sweep to the tuning job's create
(the line announcing its name), next to Hydra's own start in the same run (spawn to the basic sweeper's first
task); and from the create to the sweeper's exit (the emulator runs each trial as a fresh interpreter)."""
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from _common import APPS, PYTHON, WORK, bench_env, describe, header, interleave, median, result

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
APP_DIR = APPS / "six"
TARGET_CREATE_S = 1.6  # issue 24: "start to tuning-job create 1.6 s for 6 parameters" stays where it is
SPACE = ["lr=tag(log,interval(1e-4,1e-1))", "wd=interval(0,0.1)", "layers=range(1,4)", "opt=choice(adam,sgd,rmsprop)",
         "dropout=interval(0,0.5)", "batch=choice(16,32,64)"]
STUDY: List[float] = []


def ours(endpoint: str, env: Dict[str, str]) -> float:
    """Spawn → the tuning job's announce line; the rest of the run (create → exit) goes to STUDY."""
    sweep = WORK / "sweeper_vertex"
    shutil.rmtree(sweep, ignore_errors=True)
    args = ["-m", "hydra/sweeper=vertex_vizier", "hydra.sweeper.backend=vertex", f"hydra.sweeper.api_endpoint={endpoint}",
            "hydra.sweeper.project=bench", "hydra.sweeper.staging_dir=gs://bench/staging",
            "hydra.sweeper.job.image_uri=local/bench:latest", "hydra.sweeper.poll_interval_s=0.2",
            "hydra.sweeper.max_trial_count=8", "hydra.sweeper.parallel_trial_count=4",
            f"hydra.sweeper.snapshot.root={APP_DIR}", f"hydra.sweep.dir={sweep}", *SPACE]
    start = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "app.py", *args], cwd=APP_DIR, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    created, tail = None, []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if created is None and line.startswith("Vertex AI tuning job "):
            created = time.perf_counter()
    proc.wait()
    if proc.returncode != 0 or created is None:
        raise SystemExit(f"the sweep failed ({proc.returncode}):\n{''.join(tail)}")
    STUDY.append(time.perf_counter() - created)
    return created - start


def hydra_start(env: Dict[str, str]) -> float:
    """Spawn → the basic sweeper's first task (the task writes its start time)."""
    stamp = Path(tempfile.mkdtemp()) / "started"
    code = ("import sys, time, runpy; import hydra.core.utils as u; real = u.run_job\n"
            "def run_job(*a, **k):\n"
            f"    open({str(stamp)!r}, 'a').write(repr(time.time()) + '\\n'); return real(*a, **k)\n"
            "u.run_job = run_job; sys.argv = sys.argv[1:]; runpy.run_path('app.py', run_name='__main__')")
    start_wall = time.time()
    subprocess.run([PYTHON, "-c", code, "app.py", "-m", f"hydra.sweep.dir={WORK / 'sweeper_basic'}", "lr=0.1"],
                   cwd=APP_DIR, env=env, check=True, capture_output=True)
    return float(stamp.read_text().split()[0]) - start_wall


def main() -> None:
    header("the sweeper's Vertex path: a 6-parameter study on the JobService emulator, 8 trials, 4 at once")
    from hydra_plugins.hydra_vertex_ai import _emulator

    with tempfile.TemporaryDirectory() as tmp, _emulator.running(Path(tmp), max_running=4) as emulator:
        storage = _emulator.StorageEmulator(buckets=["bench"])
        os.environ["STORAGE_EMULATOR_HOST"] = storage.host  # the trials the emulator runs read the payload there
        env = bench_env(STORAGE_EMULATOR_HOST=storage.host)
        times = interleave({"ours: spawn → tuning job created": lambda: ours(emulator.address, env),
                            "Hydra's start (basic sweeper: spawn → first task)": lambda: hydra_start(env)}, REPEATS)
        storage.stop()
    for name, values in times.items():
        print(describe(name, values))
    print(describe("ours: create → sweeper done (8 trials, 4 at once)", STUDY[-REPEATS:]))
    create = median(times["ours: spawn → tuning job created"])
    start = median(times["Hydra's start (basic sweeper: spawn → first task)"])
    # reported, not judged: on this VM the same code measured 1.5 s and 2.2 s twenty minutes apart; compare code
    # versions side by side (benchmarks/README.md, fourth round) before reading a change into this figure
    result("Sweeper, vertex backend (emulator): start to tuning-job create, 6 parameters",
           f"Hydra's own start to its first task: {start:.2f} s", f"stays at about {TARGET_CREATE_S} s",
           f"{create:.2f} s (the sweeper's own part: {create - start:.2f} s)", None)
    study = median(STUDY[-REPEATS:])
    result("Sweeper, vertex backend (emulator): create to done, 8 trials 4 at once (fresh interpreters, 0.2 s polls)",
           "—", "report", f"{study:.2f} s ({study / 2:.2f} s per round of 4)", None)


if __name__ == "__main__":
    main()
