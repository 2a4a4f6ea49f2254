"""The vertex_vizier sweeper on the vertex backend: a real JobServiceClient against the emulator and GCS stand-in."""
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

from conftest import VERTEX_OVERRIDES
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai._emulator import project_number

APP = Path(__file__).parent / "apps" / "quadratic" / "app.py"
SWEEPER = [o.replace("hydra.launcher.", "hydra.sweeper.") for o in VERTEX_OVERRIDES]


def sweep_cmd(tmp_path: Path, *overrides: str) -> List[str]:
    return [sys.executable, str(APP), "-m", "hydra/sweeper=vertex_vizier", *SWEEPER,
            f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.parallel_trial_count=2", *overrides]


def run_sweep(tmp_path: Path, *overrides: str) -> "subprocess.CompletedProcess[str]":
    proc = subprocess.run(sweep_cmd(tmp_path, *overrides), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def results(tmp_path: Path) -> Dict[str, Any]:
    loaded = OmegaConf.to_container(OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml"))
    assert isinstance(loaded, dict)
    return loaded


def test_study_runs_as_one_tuning_job_and_resume_collects_it_again(vertex_emulator: Any, tmp_path: Path) -> None:
    creates = vertex_emulator.calls["CreateHyperparameterTuningJob"]
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "x=choice(0,2,3)", "opt=a,b", "n=2")
    first = results(tmp_path)
    assert vertex_emulator.calls["CreateHyperparameterTuningJob"] == creates + 1
    assert first["tuning_job"].startswith(f"projects/{project_number('test-project')}/locations/us-central1/hyperparameterTuningJobs/")
    assert first["state"] == "SUCCEEDED" and len(first["trials"]) == 6
    assert sorted(first["best_params"]) == ["opt=b", "x=2"] and first["best_value"] == 0.02
    # each trial's Hydra output dir lived in the bucket (through the /gcs mount) and was synced back
    for trial in first["trials"]:
        # trial N (numbered from 1, as Vertex does) is hydra.job.num N - 1
        assert (tmp_path / "sweep" / str(int(trial["id"]) - 1) / ".hydra" / "overrides.yaml").exists()

    (tmp_path / "sweep" / "optimization_results.yaml").unlink()
    run_sweep(tmp_path, f"hydra.sweeper.resume={first['tuning_job']}", "x=choice(0,2,3)", "opt=a,b", "n=2")
    again = results(tmp_path)
    assert vertex_emulator.calls["CreateHyperparameterTuningJob"] == creates + 1  # nothing new was started
    assert (again["tuning_job"], again["best_params"], again["trials"]) == (
        first["tuning_job"], first["best_params"], first["trials"])

    # Resumed into a fresh directory (another machine, a deleted sweep dir): the trial outputs come back too.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    run_sweep(fresh, f"hydra.sweeper.resume={first['tuning_job']}", "x=choice(0,2,3)", "opt=a,b", "n=2")
    for trial in first["trials"]:
        out = fresh / "sweep" / str(int(trial["id"]) - 1)
        assert (out / ".hydra" / "config.yaml").exists() and (out / ".hydra" / "overrides.yaml").exists()
        assert list(out.glob("*.log")), f"trial {trial['id']}'s log was not copied back"
