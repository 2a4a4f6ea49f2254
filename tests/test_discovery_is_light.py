"""Hydra imports every plugin in every app: discovery must stay light, and plain runs must not touch our core."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
from conftest import PROBE, records, run_app

OURS = "hydra_plugins.hydra_vertex_ai"
# Nothing of this may be imported by discovery or by a run that does not use our plugins (prefix match).
HEAVY = (
    "google.cloud", "google.api_core", "google.auth", "google.protobuf", "google.genai", "grpc",
    "torch", "lightning", "pytorch_lightning", "optuna", "kfp", "hypertune",
    "numpy", "pandas", "sqlalchemy", "rich", "requests", "urllib3",
)  # fmt: skip

DISCOVER = """
import json, sys
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
found = [p.__name__ for kind in (Launcher, Sweeper) for p in Plugins.instance().discover(kind)]
print(json.dumps({"found": found, "modules": sorted(sys.modules)}))
"""


def _modules_of(code: str, cwd: Path) -> Dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def at_startup(tmp_path_factory: pytest.TempPathFactory) -> Set[str]:
    """What the bare interpreter already holds (site's .pth files import e.g. the empty `google.cloud`)."""
    code = "import json, sys; print(json.dumps({'modules': sorted(sys.modules)}))"
    return set(_modules_of(code, tmp_path_factory.mktemp("bare"))["modules"])


def heavy(modules: List[str], at_startup: Set[str]) -> List[str]:
    added = [m for m in modules if m not in at_startup]
    return [m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY)]


# Private modules a public one imports on purpose: what it re-exports (Hydra's scan re-executes every public
# module, replacing its classes and functions), config.py's lazy ConfigStore entries and the resolvers the sweeper's
# entry refers to. HEAVY checks their imports.
LIGHT_PRIVATE = {f"{OURS}._component_specs", f"{OURS}._lazy_store", f"{OURS}._metrics", f"{OURS}._inherit",
                 f"{OURS}._optuna_port"}


def private_of_ours(modules: List[str]) -> List[str]:
    """Our `_`-prefixed modules: Hydra's scan skips them, so only our own top-level imports bring them in."""
    private = [m for m in modules if m.startswith(OURS + ".") and any(p.startswith("_") for p in m.split(".")[2:])]
    return [m for m in private if m not in LIGHT_PRIVATE]


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    seen = _modules_of(DISCOVER, tmp_path_factory.mktemp("discover"))
    assert "VertexAILauncher" in seen["found"]
    return list(seen["modules"])


def test_discovery_imports_nothing_heavy(discovered: List[str], at_startup: Set[str]) -> None:
    assert heavy(discovered, at_startup) == []


def test_discovery_imports_none_of_our_private_modules(discovered: List[str]) -> None:
    assert private_of_ours(discovered) == []


@pytest.mark.parametrize("mode_args", [[], ["-m", "hydra/launcher=basic"]], ids=["no_multirun", "basic_launcher"])
def test_runs_without_our_launcher_never_import_its_core(
    tmp_path: Path, mode_args: List[str], discovered: List[str], at_startup: Set[str]
) -> None:
    out = tmp_path / "rec"
    proc = run_app(PROBE, [*mode_args, f"out_dir={out}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    modules = records(out)[0]["modules"]  # sys.modules as the task saw it
    assert heavy(modules, at_startup) == []
    ours = sorted(m for m in modules if m.startswith(OURS))
    assert ours == sorted(m for m in discovered if m.startswith(OURS)), "only what discovery imported"
    assert private_of_ours(ours) == []
