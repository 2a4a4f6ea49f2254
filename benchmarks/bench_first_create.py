"""P7: a 500-job launcher sweep of a tiny app against the JobService emulator and gcp-storage-emulator.

A (in this process, interleaved): composing the batch's job configs, Hydra's `load_sweep_config` per job vs
our `SweepComposer` (the memo of `_compose_cache`), and one Hydra composition with `hydra/launcher=vertex_ai`
vs the basic launcher (our ConfigStore entry, built once per process since issue 24).
B (whole processes): `app.py -m x=range(N)` with the vertex backend and `wait=false`: seconds from the
launcher's first log line (as launch() begins, before the backend connects) to the emulator's first
CreateCustomJob, and peak RSS, vs Hydra's basic launcher (peak RSS of the same sweep). The emulator runs no job here (its one slot is held).
"""
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

from _common import APPS, PYTHON, WORK, bench_env, describe, header, interleave, median, result

JOBS = int(os.environ.get("BENCH_JOBS", "500"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
APP_DIR = APPS / "plain"
TARGET_FIRST_CREATE_S = 2.0


def compositions() -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from hydra_plugins.hydra_vertex_ai._compose_cache import SweepComposer

    jobs = [[f"x={i}"] for i in range(JOBS)]
    with initialize_config_dir(config_dir=str(APP_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        loader = hydra.config_loader
        masters = {name: hydra.compose_config("config", [f"hydra/launcher={name}"], run_mode=RunMode.MULTIRUN)
                   for name in ("vertex_ai", "basic")}

        def batch(compose: Callable[[List[str]], Any]) -> float:
            start = time.perf_counter()
            for overrides in jobs:
                compose(overrides)
            return time.perf_counter() - start

        master = masters["vertex_ai"]
        batches = interleave({
            "Hydra's composition, per job": lambda: batch(lambda o: loader.load_sweep_config(master, o)),
            "SweepComposer (memo)": lambda: batch(SweepComposer(loader, master).compose),
        }, REPEATS)

        def one(name: str) -> float:
            start = time.perf_counter()
            for _ in range(20):
                loader.load_sweep_config(masters[name], ["x=1"])
            return (time.perf_counter() - start) / 20

        single = interleave({"vertex_ai": lambda: one("vertex_ai"), "basic": lambda: one("basic")}, REPEATS)
    return batches, single


def _stamp(line: str) -> float:
    return datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def whole_run(args: List[str], env: Dict[str, str], emulator: Any = None) -> Tuple[float, float, float, float]:
    """(seconds from launch() to the first create or NaN, peak RSS in MB, wall seconds, the launcher's CPU
    seconds for the whole submission or NaN) of one sweep process."""
    creates = emulator.calls["CreateCustomJob"] if emulator else 0
    first: List[float] = []

    def watch() -> None:
        while not first and proc.poll() is None:
            if emulator.calls["CreateCustomJob"] > creates:
                first.append(time.time())
            time.sleep(0.005)

    start = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "app.py", "-m", f"x=range(0,{JOBS})", *args], cwd=APP_DIR, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watcher = threading.Thread(target=watch, daemon=True)
    if emulator:
        watcher.start()
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed: {args}\n{out[-3000:]}")
    # our launcher's first line, logged as launch() begins
    launched = [_stamp(line) for line in out.splitlines() if re.match(r"\[[\d\- :,]+\]\[HYDRA\] Vertex AI launcher \(", line)]
    to_first = first[0] - launched[0] if emulator and first and launched else float("nan")
    cpu = [float(m) for m in re.findall(r"job\(s\) submitted \(not waited for\) using ([0-9.]+) CPU-s", out)]
    return to_first, usage.ru_maxrss / 1024, wall, cpu[0] if cpu else float("nan")


def main() -> None:
    header(f"P7: a {JOBS}-job launcher sweep against the JobService emulator")
    batches, single = compositions()
    for name, v in {**batches, **single}.items():
        print(describe(name, v))
    hydra_s, memo_s = (median(v) for v in batches.values())
    ours_ms, basic_ms = median(single["vertex_ai"]) * 1000, median(single["basic"]) * 1000
    print(f"composing {JOBS} jobs: memo {memo_s:.2f} s vs Hydra {hydra_s:.2f} s ({memo_s / hydra_s:.3f}×); "
          f"one composition with our launcher {ours_ms:.1f} ms vs basic {basic_ms:.1f} ms")

    from hydra_plugins.hydra_vertex_ai import _emulator

    with tempfile.TemporaryDirectory() as tmp, _emulator.running(Path(tmp), max_running=1) as emulator:
        emulator._slots.acquire()  # no job runs: this measures the launcher, not the jobs
        storage = _emulator.StorageEmulator(buckets=["bench"])
        env = bench_env(STORAGE_EMULATOR_HOST=storage.host)
        ours = ["hydra/launcher=vertex_ai", "hydra.launcher.backend=vertex", f"hydra.launcher.api_endpoint={emulator.address}",
                "hydra.launcher.project=bench", "hydra.launcher.staging_dir=gs://bench/staging",
                "hydra.launcher.job.image_uri=local/bench:latest", "hydra.launcher.wait=false",
                "hydra.launcher.create_rate_per_minute=1000000", f"hydra.launcher.snapshot.root={APP_DIR}",
                "hydra.verbose=[hydra_plugins.hydra_vertex_ai._launch]"]  # its CPU line
        runs: Dict[str, List[Tuple[float, float, float, float]]] = {"ours": [], "basic": []}
        sweep_dir = WORK / "first_create"
        for i in range(REPEATS):
            order = [("ours", ours), ("basic", [])][:: -1 if i % 2 else 1]
            for name, args in order:
                runs[name].append(whole_run([*args, f"hydra.sweep.dir={sweep_dir / name / str(i)}"], env,
                                            emulator if name == "ours" else None))
        storage.stop()
    first_create = median([r[0] for r in runs["ours"]])
    rss_ours, rss_basic = median([r[1] for r in runs["ours"]]), median([r[1] for r in runs["basic"]])
    print(f"launch() to first create: {first_create:.2f} s; peak RSS {rss_ours:.0f} MB vs basic {rss_basic:.0f} MB; "
          f"wall {median([r[2] for r in runs['ours']]):.1f} s vs basic {median([r[2] for r in runs['basic']]):.1f} s; "
          f"load average now {os.getloadavg()[0]:.1f}")
    result(f"P7: {JOBS}-job sweep, launch() to first create (emulator)", "—", f"≤ {TARGET_FIRST_CREATE_S} s",
           f"{first_create:.1f} s", first_create <= TARGET_FIRST_CREATE_S)
    launcher_cpu = median([r[3] for r in runs["ours"]])
    result(f"P7: the launcher's CPU for the whole {JOBS}-job submission (launch() to the last create)",
           f"Hydra's composition of the batch: {hydra_s:.2f} s", "≤ 0.25×",
           f"{launcher_cpu / hydra_s:.3f}× ({launcher_cpu:.2f} CPU-s)", launcher_cpu / hydra_s <= 0.25)
    result(f"P7: composing the {JOBS} job configs", f"Hydra's composition per job: {hydra_s:.2f} s", "≤ 0.25×",
           f"{memo_s / hydra_s:.3f}× ({memo_s:.2f} s)", memo_s / hydra_s <= 0.25)
    result("P7: one composition with hydra/launcher=vertex_ai", f"basic launcher: {basic_ms:.1f} ms", "entry built once",
           f"{ours_ms:.1f} ms ({ours_ms - basic_ms:+.1f} ms)", None)
    result(f"P7: peak RSS, {JOBS}-job sweep", f"basic launcher: {rss_basic:.0f} MB", "≤ 2×",
           f"{rss_ours / rss_basic:.2f}× ({rss_ours:.0f} MB)", rss_ours <= 2 * rss_basic)


if __name__ == "__main__":
    main()
