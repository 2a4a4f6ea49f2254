"""A plain `pip install .` (not editable) into a fresh virtualenv: Hydra discovers both plugins from anywhere.

Setuptools' default editable mode hides `hydra_plugins` from Hydra's scan (README, Development), so this is
the install users get that the rest of the suite, run from an editable install, does not exercise.
"""
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Tuple

ROOT = Path(__file__).resolve().parents[1]

DISCOVER = """
import json
import hydra_plugins.hydra_vertex_ai as ours
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
found = [p.__name__ for kind in (Launcher, Sweeper) for p in Plugins.instance().discover(kind)]
print(json.dumps({"found": found, "file": ours.__file__}))
"""


def _source_copy(into: Path) -> Path:
    """The files git would ship (tracked and untracked-not-ignored), so the build leaves the work tree alone."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, into / rel)
    return into


def venv_over_this_environment(venv: Path, *extra: str) -> Tuple[Path, Path]:
    """A fresh venv without pip that sees this environment's packages (and `extra` paths): its python and its
    own site-packages, which comes first on its sys.path.

    Dependencies come from this environment's site-packages, listed in a .pth: the .pth files inside it are
    not processed, so our own editable install (a .pth naming the repository) does not come along."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    new_site = Path(subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (new_site / "dependencies.pth").write_text("\n".join([*site.getsitepackages(), *extra]) + "\n")
    return python, new_site


def test_plain_install_into_a_fresh_venv_discovers_both_plugins(tmp_path: Path) -> None:
    python, new_site = venv_over_this_environment(tmp_path / "venv")
    source = _source_copy(tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--no-index", str(source)],
        check=True, env=env, capture_output=True, text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([str(python), "-c", DISCOVER], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert {"VertexAILauncher", "VertexVizierSweeper"} <= set(seen["found"])
    assert Path(seen["file"]).is_relative_to(new_site), f"imported {seen['file']}, not the installed copy"
