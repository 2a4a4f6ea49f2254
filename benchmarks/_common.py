"""Shared by the benchmark scripts: interleaved A/B timing, medians, the machine, one result line per figure.

Every script measures its candidate and its baseline in the same run, alternating them (A/B/A/B...), and
reports medians: on a small shared machine absolute times drift, ratios measured side by side do not.
"""
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
PYTHON = sys.executable
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/hydra-vertex-ai-bench"))


def bench_env(**extra: str) -> Dict[str, str]:
    """The environment of every measured process.

    Bytecode caching on, under one prefix outside the repo: this workspace sets PYTHONDONTWRITEBYTECODE, which
    would charge every import of our (editable, uncompiled) source a compile that `pip install` users never
    pay. With the prefix, both sides of each comparison read their .pyc files from the same place.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    env.update(extra)
    return env


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def interleave(runs: Mapping[str, Callable[[], float]], repeats: int, warmup: int = 1) -> Dict[str, List[float]]:
    """Run each callable `repeats` times, alternating them; each returns the seconds it measured."""
    for _ in range(warmup):  # page cache, .pyc files, the unpacked snapshot
        for run in runs.values():
            run()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for i in range(repeats):
        order = list(runs.items())
        if i % 2:  # ABBA: neither side always runs right after the other
            order.reverse()
        for name, run in order:
            times[name].append(run())
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def describe(name: str, values: Sequence[float], unit: str = "s") -> str:
    scale = 1000.0 if unit == "ms" else 1.0
    v = [x * scale for x in values]
    return f"{name}: median {median(v):.3f} {unit} (min {min(v):.3f}, max {max(v):.3f}, n={len(v)})"


def run_process(cmd: Sequence[str], cwd: Optional[Path] = None, env: Optional[Mapping[str, str]] = None,
                timeout: float = 600) -> Tuple[float, str]:
    """Wall time of one whole process and its stdout; a failure stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(list(cmd), cwd=cwd, env=dict(env) if env is not None else bench_env(),
                          capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {cmd}\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def result(figure: str, baseline: str, target: str, measured: str, ok: Optional[bool]) -> None:
    """One machine-readable line per figure; run_all.sh turns them into the README's table."""
    verdict = "report" if ok is None else ("met" if ok else "MISSED")
    print(f"RESULT|{figure}|{baseline}|{target}|{measured}|{verdict}", flush=True)


def header(title: str) -> None:
    print(f"== {title}  [{machine()}]", flush=True)
