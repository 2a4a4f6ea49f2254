"""Issue 20, items 2 and 4: an Optuna sweeper config ports to vertex_vizier by its two sweeper lines, and the
sweeper's summary is paste-ready.

tests/apps/optuna_port is laid out as lightning-hydra-template's configs/ (train.yaml, model/, data/,
hparams_search/); its hparams_search/score_optuna.yaml is an Optuna search (params, direction, n_trials, n_jobs,
sampler with seed, storage, study_name) whose only changes are the sweeper override and no `_target_`.
"""
import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from conftest import EMULATOR_ADDRESS, REPORT_LOSS, VERTEX_OVERRIDES, tuning_job_spec
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai import _optuna_port, _sweep
from hydra_plugins.hydra_vertex_ai._backends.base import TuningOutcome
from hydra_plugins.hydra_vertex_ai._errors import StudyFailedError
from hydra_plugins.hydra_vertex_ai.config import Goal, VertexVizierSweeperConf

APP = Path(__file__).parent / "apps" / "optuna_port"
PORTED = "hparams_search=score_optuna"
# the file's search space
WIDTHS, BATCH_SIZES, LR = {8, 16, 32}, {16, 32, 64}, (0.001, 0.1)


def train(tmp_path: Path, *overrides: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    """`python src/train.py -m hparams_search=score_optuna ...`, as the template's README runs a search."""
    cmd = [sys.executable, "src/train.py", "-m", PORTED, f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    proc = subprocess.run(cmd, cwd=APP, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def dry_run(tmp_path: Path, *overrides: str) -> Tuple[Dict[str, Any], str]:
    proc = train(tmp_path, "hydra.sweeper.dry_run=true", *overrides)
    job, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return job, proc.stdout + proc.stderr


def results(tmp_path: Path) -> Dict[str, Any]:
    loaded = OmegaConf.to_container(OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml"))
    assert isinstance(loaded, dict)
    return loaded


def seen(job_dir: Path) -> Dict[str, Any]:
    """What a job of the app logged it was given and scored."""
    line = next(ln for ln in (job_dir / "train.log").read_text().splitlines() if " SEEN " in ln)
    found = json.loads(line.split(" SEEN ", 1)[1])
    assert isinstance(found, dict)
    return found


def assert_points_of_the_space(trials: List[Dict[str, Any]], sweep_dir: Path) -> None:
    """Each trial's overrides are a point of the file's space, and its value is the task's optimized_metric."""
    for trial in trials:
        point = dict(p.split("=", 1) for p in trial["params"])
        assert set(point) == {"model.lr", "model.width", "data.batch_size"}
        assert LR[0] <= float(point["model.lr"]) <= LR[1]
        assert int(point["model.width"]) in WIDTHS and int(point["data.batch_size"]) in BATCH_SIZES
        assert trial["value"] == seen(sweep_dir / str(int(trial["id"]) - 1))["metrics"]["val/score"]


def test_the_ported_file_sets_the_study(tmp_path: Path) -> None:
    job, printed = dry_run(tmp_path)
    assert (job["maxTrialCount"], job["parallelTrialCount"]) == (6, 2)  # n_trials, n_jobs
    assert job["studySpec"]["metrics"][0]["goal"] == "MAXIMIZE"  # direction
    assert job["studySpec"]["algorithm"] == "ALGORITHM_UNSPECIFIED"  # TPE: Vizier's default
    assert [p["parameterId"] for p in job["studySpec"]["parameters"]] == ["model.lr", "model.width", "data.batch_size"]
    assert "hydra.sweeper.study_name: not needed" in printed
    assert "hydra.sweeper.sampler: unused by Vizier: n_startup_trials" in printed


def test_the_ported_search_runs_its_trials_on_the_local_backend(tmp_path: Path) -> None:
    proc = train(tmp_path)
    found = results(tmp_path)
    assert found["state"] == "SUCCEEDED" and found["goal"] == "maximize"
    assert len(found["trials"]) == 6 and all(t["state"] == "SUCCEEDED" for t in found["trials"])
    assert_points_of_the_space(found["trials"], tmp_path / "sweep")
    assert found["best_value"] == max(t["value"] for t in found["trials"])
    # item 4: the best overrides in Hydra's form, and a line to paste that runs that trial again
    best = next(t for t in found["trials"] if t["id"] == found["best_trial"])
    assert found["best_params"] == best["params"]
    assert found["best_overrides_shell"] == " ".join([PORTED, *best["params"]])
    rerun = next(ln for ln in proc.stdout.splitlines() if "Run the best trial again: " in ln)
    command = rerun.split("Run the best trial again: ", 1)[1]
    assert command == f"python src/train.py {found['best_overrides_shell']} hydra.mode=RUN"
    out = tmp_path / "rerun"
    again = subprocess.run([sys.executable, *command.split()[1:], f"hydra.run.dir={out}"], cwd=APP,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert seen(out)["metrics"]["val/score"] == found["best_value"]
    # the sampler's seed seeds the local engine: a second run asks the same first points
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    train(again_dir, "hydra.sweeper.n_trials=2")
    assert [t["params"] for t in results(again_dir)["trials"]] == [t["params"] for t in found["trials"][:2]]


def test_the_ported_search_runs_through_the_emulator(vertex_emulator: Any, tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._backends.vertex_client import make_client

    # the launcher says where jobs run; the command line gives the trial count
    train(tmp_path, "hydra/launcher=vertex_ai", *VERTEX_OVERRIDES, "hydra.sweeper.n_trials=3")
    found = results(tmp_path)
    job = make_client("us-central1", EMULATOR_ADDRESS).get_hyperparameter_tuning_job(name=found["tuning_job"])
    assert (job.max_trial_count, job.parallel_trial_count) == (3, 2)
    assert job.study_spec.metrics[0].goal.name == "MAXIMIZE"
    assert found["state"] == "SUCCEEDED" and len(found["trials"]) == 3
    assert_points_of_the_space(found["trials"], tmp_path / "sweep")


@pytest.mark.parametrize("override, key", [
    ("hydra.sweeper.custom_search_space=src.space.define", "hydra.sweeper.custom_search_space"),
    ("hydra.sweeper.direction=[minimize,maximize]", "hydra.sweeper.direction"),
])
def test_what_cannot_port_is_refused_naming_its_key(tmp_path: Path, override: str, key: str) -> None:
    proc = train(tmp_path, override, check=False)
    assert proc.returncode != 0
    assert f"{key}:" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "sweep").exists()  # refused before anything was staged


def test_a_vizier_key_wins_over_its_optuna_key_and_a_line_says_so(tmp_path: Path) -> None:
    job, printed = dry_run(tmp_path, "hydra.sweeper.max_trial_count=4", "hydra.sweeper.goal=minimize")
    assert job["maxTrialCount"] == 4 and job["studySpec"]["metrics"][0]["goal"] == "MINIMIZE"
    assert "hydra.sweeper.max_trial_count wins over the Optuna key hydra.sweeper.n_trials" in printed
    assert "hydra.sweeper.goal wins over the Optuna key hydra.sweeper.direction" in printed


@pytest.mark.parametrize("sampler, algorithm", [
    ("optuna.samplers.RandomSampler", "RANDOM_SEARCH"),
    ("optuna.samplers.CmaEsSampler", "ALGORITHM_UNSPECIFIED"),
])
def test_the_sampler_becomes_the_algorithm(tmp_path: Path, sampler: str, algorithm: str) -> None:
    job, printed = dry_run(tmp_path, f"hydra.sweeper.sampler._target_={sampler}")
    assert job["studySpec"]["algorithm"] == algorithm
    if algorithm == "ALGORITHM_UNSPECIFIED":
        assert "CmaEsSampler has no Vizier counterpart" in printed


def test_the_sampler_seed_seeds_the_local_engine(tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._backends.local_study import run_tuning_job

    def points(run: str, seed: int) -> List[Any]:
        job = tuning_job_spec(run, REPORT_LOSS, trials=3)
        job["studySpec"]["algorithm"] = "RANDOM_SEARCH"
        job["studySpec"]["parameters"] = [{"parameterId": "x", "doubleValueSpec": {"minValue": 1, "maxValue": 3}}]
        job["parallelTrialCount"] = 1
        outcome = run_tuning_job(job, job_id=run, workdir=tmp_path / run, cancel=threading.Event(), seed=seed)
        return [t["parameters"] for t in outcome.trials]

    assert points("a", 7) == points("b", 7) != points("c", 8)


def test_a_study_without_a_completed_trial_fails_saying_why(tmp_path: Path) -> None:
    conf = VertexVizierSweeperConf(goal=Goal.maximize)
    trials = [{"id": str(i), "state": "INFEASIBLE", "infeasibleReason": "no value reported for metric 'objective'",
               "parameters": [{"parameterId": "x", "value": 1.0}]} for i in (1, 2)]
    found = _sweep.write_results(tmp_path / "r.yaml", conf, {"x": ("x", "DOUBLE")}, [],
                                 TuningOutcome("JOB_STATE_SUCCEEDED", trials, None, "tuning/1"))
    with pytest.raises(StudyFailedError, match="no trial completed with a finite objective: trial states "
                                               "INFEASIBLE; first reason: no value reported"):
        _sweep._summarize(found, conf, tmp_path)


def test_the_shell_line_quotes_what_a_shell_would_split(tmp_path: Path) -> None:
    trial = {"id": "1", "state": "SUCCEEDED", "finalMeasurement": {"metrics": [{"metricId": "objective", "value": 1.0}]},
             "parameters": [{"parameterId": "name", "value": "a b; rm -rf x"}]}
    found = _sweep.write_results(tmp_path / "r.yaml", VertexVizierSweeperConf(), {"name": ("name", "CATEGORICAL")},
                                 ["+tag=$HOME"], TuningOutcome("JOB_STATE_SUCCEEDED", [trial], None, "tuning/1"))
    assert found["best_overrides_shell"] == "'+tag=$HOME' 'name=a b; rm -rf x'"
    assert not math.isnan(found["best_value"])


@pytest.mark.parametrize("sampler, algorithm", [("tpe", "ALGORITHM_UNSPECIFIED"), ("random", "RANDOM_SEARCH")])
def test_hydras_own_optuna_example_ports_by_its_sweeper_line(tmp_path: Path, sampler: str, algorithm: str) -> None:
    """tests/apps/optuna_example is Hydra's Optuna example with only `override hydra/sweeper: vertex_vizier`:
    its `override hydra/sweeper/sampler: tpe` composes (it was "No match in the defaults list"), the sampler
    it picks sets the algorithm, and `max_failure_rate: 0.0` (refused before) becomes
    "the first failed trial fails the study"."""
    app = Path(__file__).parent / "apps" / "optuna_example"
    cmd = [sys.executable, "sphere.py", "-m", "hydra.sweeper.dry_run=true", f"hydra/sweeper/sampler={sampler}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = subprocess.run(cmd, cwd=app, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    job, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    assert job["maxTrialCount"] == 20 and job["parallelTrialCount"] == 1 and job["maxFailedTrialCount"] == 1
    assert job["studySpec"]["algorithm"] == algorithm
    assert job["studySpec"]["metrics"] == [{"metricId": "objective", "goal": "MINIMIZE"}]
    assert "no Vizier counterpart" not in proc.stdout + proc.stderr


def test_max_failure_rate_becomes_the_first_failed_trial_count_above_that_share() -> None:
    node = OmegaConf.create({"max_trial_count": 20})
    assert [_optuna_port._failed_trials(rate, node) for rate in (0.0, 0.1, 0.25, 0.99)] == [1, 3, 6, 20]
    assert _optuna_port._failed_trials(1.0, node) is None  # never fails: Vertex decides
