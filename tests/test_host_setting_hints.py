"""A job that fails because a host setting was not shipped says so in one line (issue 21): a variable set here
but not in the job's environment names `hydra.launcher.job.env.<NAME>` and `local_env_passthrough`; a file that
exists in the launch dir but was not shipped names the path and `snapshot.include` (or gs:// and /gcs/)."""
import shutil
from pathlib import Path

import pytest
from conftest import TESTS, VERTEX_LOCAL, run_app

APP = TESTS / "apps" / "hostsettings"


def _launch(tmp_path: Path, *overrides: str) -> str:
    app = tmp_path / "app"
    shutil.copytree(APP, app)
    (app / "data").mkdir()
    (app / "data" / "train.csv").write_text("a,b\n")
    args = ["-m", *VERTEX_LOCAL, f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    proc = run_app(app / "app.py", args, app, env={"HVAI_TEST_TOKEN": "secret"})
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("mode", ["env", "oc_env"])
def test_a_variable_set_here_but_not_shipped_names_the_keys(tmp_path: Path, mode: str) -> None:
    output = _launch(tmp_path, f"mode={mode}")
    [line] = [ln for ln in output.splitlines() if "-> HVAI_TEST_TOKEN is set on this machine" in ln]
    assert "hydra.launcher.job.env.HVAI_TEST_TOKEN" in line and "hydra.launcher.local_env_passthrough" in line
    assert "secret" not in line  # the value never reaches the console


def test_a_file_here_that_was_not_shipped_names_the_path_and_snapshot_include(tmp_path: Path) -> None:
    output = _launch(tmp_path, "mode=file", "hydra.launcher.snapshot.exclude=[data]")
    [line] = [ln for ln in output.splitlines() if "-> data/train.csv was not shipped" in ln]
    assert str(tmp_path / "app" / "data" / "train.csv") in line
    assert "hydra.launcher.snapshot.include" in line and "gs://" in line and "/gcs/" in line
