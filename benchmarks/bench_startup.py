"""Start-up of a plain Hydra app run with `-m` (basic sweeper and launcher): this package installed vs not.

Baseline environment: a venv made from the same base interpreter whose site-packages holds a symlink to every
entry of the project venv's site-packages except this package's editable `.pth` and its dist-info. Both
sides therefore have byte-identical packages (same hydra-core, same other .pth files); the only difference is
whether `hydra_plugins.hydra_vertex_ai` is importable, i.e. "installed vs not installed".
"""
import json
import os
import re
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Dict, List

from _common import APPS, PYTHON, WORK, bench_env, describe, header, interleave, median, result, run_process

OURS = "hydra_plugins.hydra_vertex_ai"
REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
TARGET = 1.02
APP = APPS / "plain" / "app.py"
DISCOVER = (
    "import json, sys\n"
    "before = set(sys.modules)\n"
    "from hydra.core.plugins import Plugins\n"
    "Plugins.instance()\n"
    "print(json.dumps(sorted(set(sys.modules) - before)))\n"
)


def baseline_python() -> str:
    """A venv identical to ours minus this package (see the module docstring); rebuilt every run."""
    venv = WORK / "baseline-venv"
    subprocess.run([PYTHON, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
    ours = Path(sysconfig.get_paths()["purelib"])
    theirs = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; "
                                  "print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip())
    for entry in ours.iterdir():
        if re.match(r"(__editable__\.)?hydra_vertex_ai[-_.]", entry.name):
            continue
        link = theirs / entry.name
        if not link.exists():
            link.symlink_to(entry)
    python = str(venv / "bin" / "python")
    probe = f"import hydra\ntry:\n    import {OURS}\nexcept ImportError:\n    print('absent')"
    assert python_c(python, probe).split() == ["absent"], "the baseline venv still sees this package"
    return python


def python_c(python: str, code: str, *flags: str, stderr: bool = False) -> str:
    """Run `python [flags] -c code` outside the repo (so the repo is not on sys.path); its stdout or stderr."""
    done = subprocess.run([python, *flags, "-c", code], cwd=tempfile.gettempdir(), env=bench_env(), check=True,
                          capture_output=True, text=True)
    return done.stderr if stderr else done.stdout


def time_app(python: str, sweep_dir: Path) -> float:
    cmd = [python, str(APP), "-m", "x=1,2", f"hydra.sweep.dir={sweep_dir}"]
    return run_process(cmd, cwd=Path(tempfile.gettempdir()))[0]


def discovery_modules(python: str) -> List[str]:
    return list(json.loads(python_c(python, DISCOVER)))


def import_times(modules: List[str]) -> Dict[str, int]:
    """`-X importtime` cumulative µs of each of our modules, imported after everything Hydra's scan loads first.

    Hydra's scan loads plugins with `exec_module`, which `-X importtime` does not see: so import Hydra's core
    plugins, then ours in the scan's order, with plain imports.
    """
    ours = [m for m in modules if m.startswith(OURS + ".")]
    code = ("import importlib, pkgutil\nimport hydra.core.plugins\nimport hydra._internal.core_plugins as c\n"
            "for m in pkgutil.iter_modules(c.__path__, c.__name__ + '.'):\n    importlib.import_module(m.name)\n"
            + "".join(f"import {m}\n" for m in ours))
    python_c(PYTHON, code)  # warm the .pyc cache
    times: Dict[str, int] = {}
    for line in python_c(PYTHON, code, "-X", "importtime", stderr=True).splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and m.group(4) in ours and len(m.group(3)) == 1:  # top level: cumulative includes what it pulls in
            times[m.group(4)] = int(m.group(2))
    return times


def discovery_seconds(python: str) -> float:
    """In-process time of Hydra's plugin discovery (`Plugins.instance()`), hydra itself already imported."""
    code = ("import time\nfrom hydra.core.plugins import Plugins\nt = time.perf_counter()\nPlugins.instance()\n"
            "print(time.perf_counter() - t)")
    return float(python_c(python, code))


def main() -> None:
    header("start-up of a plain Hydra app with -m: this package installed vs not")
    base = baseline_python()
    runs = {
        "with hydra-vertex-ai": lambda: time_app(PYTHON, WORK / "startup" / "with"),
        "without (baseline)": lambda: time_app(base, WORK / "startup" / "without"),
    }
    times = interleave(runs, REPEATS)
    for name, values in times.items():
        print(describe(name, values, "ms"))
    ratio = median(times["with hydra-vertex-ai"]) / median(times["without (baseline)"])
    pair = [a / b for a, b in zip(times["with hydra-vertex-ai"], times["without (baseline)"])]
    print(f"ratio with/without: {ratio:.3f} (median of pairwise ratios {median(pair):.3f}; target <= {TARGET})")
    extra = sorted(set(discovery_modules(PYTHON)) - set(discovery_modules(base)))
    print(f"modules plugin discovery imports because of us ({len(extra)}), -X importtime cumulative:")
    timed = import_times(extra)
    for name in extra:
        print(f"  {name:55s} {timed[name] / 1000:7.2f} ms" if name in timed else f"  {name}")
    print(f"  total: {sum(timed.values()) / 1000:.2f} ms")
    disc = interleave({"with": lambda: discovery_seconds(PYTHON), "without": lambda: discovery_seconds(base)},
                      REPEATS)
    added = median(disc["with"]) - median(disc["without"])
    print(describe("Plugins.instance() with", disc["with"], "ms"))
    print(describe("Plugins.instance() without", disc["without"], "ms"))
    print(f"discovery time added by this package: {added * 1000:.1f} ms")
    result("Start-up, plain app with `-m`, basic launcher", f"same app, venv without the package: "
           f"{median(times['without (baseline)']) * 1000:.0f} ms", f"≤ {TARGET}",
           f"{ratio:.3f} ({median(times['with hydra-vertex-ai']) * 1000:.0f} ms); discovery imports {len(extra)} "
           f"more modules (all ours), +{added * 1000:.0f} ms", ratio <= TARGET)


if __name__ == "__main__":
    main()
