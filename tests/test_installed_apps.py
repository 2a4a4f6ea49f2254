"""Apps started as installed packages (issue 21): a console script, and `python -m pkg.module` of a package in
site-packages. Their job ships the package's source, imports it by reference from the snapshot, and starts in
the snapshot's copy of the launch directory, like any app. The package is installed offline (pip --target) into
a folder on PYTHONPATH here, which the local jobs do not inherit: they can only use the shipped copy."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import pytest

from hydra_plugins.hydra_vertex_ai._snapshot import SITE_DIR

PACKAGE = Path(__file__).parent / "apps" / "installed"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site-packages holding the app, installed without network or build isolation from a copy of its source."""
    work = tmp_path_factory.mktemp("installed")
    source = work / "src"
    shutil.copytree(PACKAGE, source)
    target = work / "site-packages"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300)
    return target


def launch(site: Path, tmp_path: Path, command: List[str]) -> "subprocess.CompletedProcess[str]":
    project = tmp_path / "project"
    project.mkdir()
    (project / "note.txt").write_text("from the launch dir\n")  # ships with the launch dir's source
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [*command, "-m", "hydra/launcher=vertex_ai", "hydra.launcher.backend=local",
         f"hydra.launcher.staging_dir={tmp_path / 'staging'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", "x=1,2"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )


def seen(tmp_path: Path) -> List[Dict[str, Any]]:
    logs = sorted((tmp_path / "staging").glob("*/jobs/*/workerpool0-0.log"))
    return [json.loads(line[len("SEEN "):]) for log in logs for line in log.read_text().splitlines()
            if line.startswith("SEEN ")]


def check(proc: "subprocess.CompletedProcess[str]", site: Path, tmp_path: Path) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "travels by value" not in proc.stdout + proc.stderr
    jobs = seen(tmp_path)
    assert sorted(j["x"] for j in jobs) == [1, 2]
    snapshots = Path(tempfile.gettempdir(), "hydra_vertex_ai", "snapshots")
    for job in jobs:
        code, cwd = Path(job["file"]), Path(job["cwd"])
        # the shipped copy of the package, not the installed one the launcher ran
        assert code.is_relative_to(snapshots) and code.parts[-3:] == (SITE_DIR, "hva_installed_app", "train.py")
        assert not code.is_relative_to(site)
        # the copy of the launch dir (the snapshot's root: no git work tree around it), with what it shipped
        assert cwd == code.parents[2] and job["note"] == "from the launch dir"
        assert job["greeting"] == "hello from the package's config"


def test_a_console_script_app_ships_its_package_and_travels_by_reference(site: Path, tmp_path: Path) -> None:
    check(launch(site, tmp_path, [str(site / "bin" / "hva-installed-app")]), site, tmp_path)


def test_a_python_m_app_from_site_packages_ships_its_package_and_travels_by_reference(site: Path, tmp_path: Path) -> None:
    check(launch(site, tmp_path, [sys.executable, "-m", "hva_installed_app.train"]), site, tmp_path)
