"""`hydra-vertex-ai` answers what people ask (issue #22): a study's trials with their parameters and objective,
the best first; recent sweeps from any directory (a per-user index) with a header; `| head`; a silent job's log.

Each test runs a small sweep on the local backend, then the console script as a user would, in a fresh process.
The per-user index lives in this session's XDG_STATE_HOME (conftest), never the user's."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from conftest import PROBE, VERTEX_LOCAL, run_app

TESTS = Path(__file__).parent
QUADRATIC = TESTS / "apps" / "quadratic" / "app.py"
CLI = [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli"]


def cli(*args: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def sweep_id(sweep_dir: Path) -> str:
    [manifest] = (sweep_dir / ".vertex_ai").glob("*/manifest.json")
    return manifest.parent.name


def columns(header: str) -> List[int]:
    """Where each column of a header line starts."""
    return [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", header)]


def test_status_of_a_study_shows_each_trials_parameters_and_objective_best_first(tmp_path: Path) -> None:
    proc = run_app(QUADRATIC, ["-m", f"hydra.sweep.dir={tmp_path / 'study'}", "hydra/sweeper=vertex_vizier",
                               "hydra.sweeper.algorithm=grid", "hydra.sweeper.parallel_trial_count=2",
                               "hydra.sweeper.max_failed_trial_count=2", "fail_when_x_below=1", "x=choice(0,3,2)"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    status = cli("status", sweep_id(tmp_path / "study"), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    [header] = [line for line in lines if line.lstrip().startswith("TRIAL")]
    assert header.split() == ["TRIAL", "PARAMETERS", "objective", "(minimize)", "STATE", "ELAPSED", "LOGS"]
    trials = lines[lines.index(header) + 1:]
    assert len(trials) == 3
    # the best trial (x=2: 0.01 + offset 1 of opt=a) first, then by trial id; the failed one has no objective
    cells = [t.split() for t in trials]
    assert [c[1] for c in cells] == ["x=2", "x=0", "x=3"]
    assert cells[0][2:4] == ["1.01", "SUCCEEDED"] and cells[2][2:4] == ["2.01", "SUCCEEDED"]
    assert cells[1][2] == "INFEASIBLE"
    assert all(c[-1].startswith("study/.vertex_ai/") for c in cells)  # logs, relative to where we are
    # `status ... | head`: the reader goes away; the command ends quietly
    reader_gone = subprocess.Popen([*CLI, "status", sweep_id(tmp_path / "study")], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader_gone.stdout is not None
    reader_gone.stdout.close()  # before the command has written anything
    _, err = reader_gone.communicate(timeout=120)
    assert reader_gone.returncode == 0 and err.decode() == ""


def test_list_finds_recent_sweeps_from_any_directory_with_a_header(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    proc = run_app(PROBE, ["-m", *VERTEX_LOCAL, "tag=0,1", f"out_dir={tmp_path / 'rec'}",
                           f"hydra.sweep.dir={tmp_path / 'project' / 'multirun' / 'a'}"], tmp_path / "project")
    assert proc.returncode == 0, proc.stderr
    launched = sweep_id(tmp_path / "project" / "multirun" / "a")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = cli("list", cwd=elsewhere)
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["SWEEP", "BACKEND", "KIND", "AGE", "STATES", "SWEEP", "DIR"]
    [row] = [r for r in rows if r.startswith(launched)]
    starts = columns(header)
    assert [row[s - 2:s] for s in starts[1:]] == ["  "] * (len(starts) - 1)  # every cell starts under its title
    assert "local" in row and "2 job(s)" in row and "2 succeeded" in row
    assert row.endswith(str(tmp_path / "project" / "multirun" / "a"))  # outside the cwd: the absolute path
    # the index is a small per-user file naming manifests, nothing else
    index = json.loads((Path(os.environ["XDG_STATE_HOME"]) / "hydra-vertex-ai" / "sweeps.json").read_text())
    entry = next(e for e in index if e["sweep_id"] == launched)
    assert set(entry) == {"sweep_id", "manifest", "created", "seen"} and entry["manifest"].endswith("manifest.json")
    # from the project, ./multirun is still searched, and the sweep is listed once
    here = cli("list", cwd=tmp_path / "project")
    assert [r.split()[0] for r in here.stdout.splitlines()].count(launched) == 1
    assert "multirun/a" in here.stdout


def test_logs_of_a_job_that_ended_without_writing_says_so(tmp_path: Path) -> None:
    proc = run_app(PROBE, ["-m", *VERTEX_LOCAL, "tag=0", f"out_dir={tmp_path / 'rec'}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    launched = sweep_id(tmp_path / "sweep")
    [log] = (tmp_path / "sweep" / ".vertex_ai" / launched).glob("jobs/0/*.log")
    log.write_text("")  # as a job that printed nothing leaves it
    logs = cli("logs", launched, "0", cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout == ""
    assert "job 0 ended SUCCEEDED without writing to its log" in logs.stderr and "no log yet" not in logs.stderr


def test_the_index_keeps_the_newest_sweeps_and_survives_a_broken_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra_plugins.hydra_vertex_ai import _sweep_index

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    _sweep_index.index_path().parent.mkdir(parents=True)
    _sweep_index.index_path().write_text("{not json")  # a broken index is ignored, then replaced
    for i in range(_sweep_index.KEEP + 5):
        _sweep_index.remember(f"s{i}", f"/m/{i}/manifest.json", float(i))
    _sweep_index.remember("s7", "/m/7/manifest.json", 7.0)  # seen again: still once
    recent = _sweep_index.recent()
    assert len(recent) == _sweep_index.KEEP and recent[0] == f"/m/{_sweep_index.KEEP + 4}/manifest.json"
    assert "/m/4/manifest.json" not in recent and recent.count("/m/7/manifest.json") == 1
