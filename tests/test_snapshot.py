"""Shipping the application's own source: user modules and config files reach the job through the snapshot."""
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from omegaconf import OmegaConf

APP_SRC = Path(__file__).parent / "apps" / "shipped"


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    """A copy of the app in its own git repository, outside any installed path."""
    repo = tmp_path / "repo"
    shutil.copytree(APP_SRC, repo / "app")
    (repo / "app" / "outputs").mkdir()
    (repo / "app" / "outputs" / "big.bin").write_bytes(b"x" * 1000)  # never shipped
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo / "app"


def run(app: Path, *overrides: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "app.py", "-m", *overrides], cwd=app, env=env, capture_output=True,
                          text=True, timeout=240)
    if check and proc.returncode != 0:
        raise AssertionError(f"run failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def archives(staging: Path) -> List[Path]:
    return sorted((staging / "snapshots").glob("*.tar.gz"))


def test_user_module_reaches_the_job_and_unchanged_code_is_not_uploaded_again(app: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    common = ["hydra/launcher=vertex_ai", f"hydra.launcher.staging_dir={staging}", "x=1,2"]
    first = run(app, *common, f"hydra.sweep.dir={tmp_path / 's1'}")
    assert "staged as" in first.stdout and "not uploaded again" not in first.stdout
    logs = sorted((staging).glob("*/jobs/*/workerpool0-0.log"))
    assert len(logs) == 2 and all("HELLO!" in log.read_text() for log in logs)
    assert len(archives(staging)) == 1

    second = run(app, *common, f"hydra.sweep.dir={tmp_path / 's2'}")
    assert "unchanged" in second.stdout and "not uploaded again" in second.stdout
    assert len(archives(staging)) == 1

    (app / "mylib" / "words.py").write_text("def shout(text: str) -> str:\n    return text + '?'\n")
    third = run(app, *common, f"hydra.sweep.dir={tmp_path / 's3'}")
    assert len(archives(staging)) == 2
    assert "hello?" in "".join(p.read_text() for p in staging.glob("*/jobs/*/workerpool0-0.log"))
    assert third.returncode == 0


def test_snapshot_ships_tracked_and_unignored_files_only(app: Path, tmp_path: Path) -> None:
    import tarfile

    (app.parent / ".gitignore").write_text("secret.txt\n")
    (app / "secret.txt").write_text("do not ship")
    (app / "data").mkdir()
    (app / "data" / "train.csv").write_text("1,2,3\n")  # not ignored: ships, as git would ship it
    (app / "mylib" / "data").mkdir()
    (app / "mylib" / "data" / "__init__.py").write_text("")  # a code package named like a data folder
    staging = tmp_path / "staging"
    run(app, "hydra/launcher=vertex_ai", f"hydra.launcher.staging_dir={staging}", f"hydra.sweep.dir={tmp_path / 's'}")
    with tarfile.open(archives(staging)[0]) as tar:
        names = set(tar.getnames())
    assert {"app/app.py", "app/mylib/words.py", "app/conf/data/hello.yaml", ".gitignore", "app/data/train.csv",
            "app/mylib/data/__init__.py"} <= names
    assert not any(n.startswith(("app/outputs", ".git/")) or n.endswith("secret.txt") for n in names)


def test_without_snapshot_the_job_cannot_import_user_code(app: Path, tmp_path: Path) -> None:
    proc = run(app, "hydra/launcher=vertex_ai", "hydra.launcher.snapshot.enabled=false",
               f"hydra.sweep.dir={tmp_path / 's'}", check=False)
    assert proc.returncode != 0
    assert "No module named 'mylib'" in proc.stderr  # the job's log tail, in the FAILED JobReturn


def test_oversized_snapshot_fails_before_submission_listing_the_largest_files(app: Path, tmp_path: Path) -> None:
    (app / "weights.npy").write_bytes(b"0" * 200_000)
    proc = run(app, "hydra/launcher=vertex_ai", "hydra.launcher.snapshot.max_size_mb=0.1",
               f"hydra.launcher.staging_dir={tmp_path / 'staging'}", f"hydra.sweep.dir={tmp_path / 's'}", check=False)
    assert proc.returncode != 0
    assert "hydra.launcher.snapshot.max_size_mb" in proc.stderr and "app/weights.npy (0.2 MB)" in proc.stderr
    assert not list((tmp_path / "staging").glob("*/jobs/*/workerpool0-0.log"))


def test_trial_composes_its_config_from_the_snapshot_when_the_source_is_gone(app: Path, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    run(app, "hydra/sweeper=vertex_vizier", "hydra.sweeper.algorithm=grid", f"hydra.sweeper.staging_dir={staging}",
        f"hydra.sweep.dir={tmp_path / 's'}", "data=hello,morning")
    results = OmegaConf.load(tmp_path / "s" / "optimization_results.yaml")
    assert results.best_params == ["data=hello"]  # len("HELLO!") < len("GOOD MORNING!")
    # The app's folder disappears (as on a Vertex machine); a trial re-run from the staged payload still
    # finds its module and its config group, from the snapshot alone.
    shutil.move(str(app.parent), str(tmp_path / "moved"))
    payload = next(staging.glob("*/study/payload.pkl"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(CLOUD_ML_TRIAL_ID="77", CLOUD_ML_HP_METRIC_FILE=str(tmp_path / "m.metrics"))
    proc = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.entry", str(payload),
                           "--data=morning"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "GOOD MORNING!" in proc.stdout
    assert '"objective": "13.0"' in (tmp_path / "m.metrics").read_text()
