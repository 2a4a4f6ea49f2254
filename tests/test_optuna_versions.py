"""Issue 20, item 3: we install beside lightning-hydra-template's requirements, whose hydra-optuna-sweeper==1.2.0
pins optuna<3 (test_real_projects.py resolves our extras with it). The local study engine runs on optuna 2.10 as
on the newest: the rest of the suite runs on the newest this environment has, and here its tests run again on
optuna 2.10.1.

How: a throwaway venv that sees this environment's packages through a .pth file (as in test_install.py) and has
only optuna 2.10.1 and its import-time dependency cmaes installed on top, from PyPI (or pip's cache): seconds,
no compiler, no second copy of the stack. Those two packages shadow the newest optuna because a venv's own
site-packages comes first on sys.path.
"""
import os
import subprocess
import sys
from pathlib import Path

from test_install import venv_over_this_environment

ROOT = Path(__file__).resolve().parents[1]
OPTUNA_2 = "2.10.1"
# the local study engine's tests that reach each optuna API it uses: TPE, failed trials (tell with a state, in a
# random search), random with a seed; kept to these few for CI time (a grid search does not use optuna)
ENGINE_TESTS = [
    "tests/test_sweeper_local.py::test_bayesian_sweep_gets_near_the_optimum",
    "tests/test_sweeper_local.py::test_too_many_failed_trials_stop_the_study",
    "tests/test_optuna_port.py::test_the_sampler_seed_seeds_the_local_engine",
]


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}


def test_the_local_study_engine_runs_on_optuna_2_10(tmp_path: Path) -> None:
    # this environment's packages, and this checkout (our editable install's .pth is not processed from there)
    python, _ = venv_over_this_environment(tmp_path / "optuna2", str(ROOT))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         f"optuna=={OPTUNA_2}", "cmaes>=0.8.2"], env=_env(), capture_output=True, text=True)
    assert pip.returncode == 0, f"installing optuna {OPTUNA_2} from PyPI failed:\n{pip.stderr[-3000:]}"
    version = subprocess.run([str(python), "-c", "import optuna; print(optuna.__version__)"], env=_env(),
                             capture_output=True, text=True)
    assert version.stdout.strip() == OPTUNA_2, version.stderr
    # Each test's subprocesses (the apps, the sweeper, the local engine) run with that venv's python.
    tests = subprocess.run([str(python), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *ENGINE_TESTS],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-3000:]
    assert f"{len(ENGINE_TESTS)} passed" in tests.stdout

