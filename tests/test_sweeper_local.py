"""The vertex_vizier sweeper end to end on the local backend: real Hydra runs, real trial processes."""
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from conftest import finish, wait_for
from google.cloud.aiplatform_v1.types import HyperparameterTuningJob
from google.protobuf import json_format
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai.config import VertexVizierSweeperConf

APP = Path(__file__).parent / "apps" / "quadratic" / "app.py"
OFFSETS = {"a": 1.0, "b": 0.0, "c": 3.0}


def run_sweep(tmp_path: Path, *overrides: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    cmd = [sys.executable, str(APP), "-m", "hydra/sweeper=vertex_vizier", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.parallel_trial_count=2", *overrides]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def results(tmp_path: Path) -> Dict[str, Any]:
    container = OmegaConf.to_container(OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml"))
    assert isinstance(container, dict)
    return container


def value_of(params: List[str], n: int = 1) -> float:
    """The quadratic app's objective, recomputed from a trial's overrides."""
    kv = dict(p.split("=", 1) for p in params)
    return (float(kv.get("x", 0.0)) - 2.0) ** 2 + OFFSETS[kv.get("opt", "a")] + 0.01 * int(kv.get("n", n))


def test_grid_sweep_finds_the_known_optimum(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "hydra.sweeper.max_trial_count=50",
              "x=choice(0,1,2,3)", "opt=a,b,c", "n=3")
    res = results(tmp_path)
    assert res["state"] == "SUCCEEDED"
    assert len(res["trials"]) == 12  # the whole grid, no more, though 50 were allowed
    assert sorted(res["best_params"]) == ["opt=b", "x=2"]  # ints as ints, paste-ready
    assert res["best_value"] == pytest.approx(0.03)
    assert res["fixed_params"] == ["n=3"]
    seen = {tuple(sorted(t["params"])) for t in res["trials"]}
    assert len(seen) == 12
    for trial in res["trials"]:
        assert trial["state"] == "SUCCEEDED"
        assert trial["value"] == pytest.approx(value_of(trial["params"], n=3))
        # each trial ran in its own Hydra output dir, numbered by trial id
        out = tmp_path / "sweep" / str(int(trial["id"]) - 1)  # trial N (from 1, as Vertex) is job N - 1
        assert (out / ".hydra" / "config.yaml").exists()
        x, opt, n, _ = (out / "trial.txt").read_text().split()
        assert (float(x), opt, int(n)) == (float(dict(p.split("=") for p in trial["params"])["x"]),
                                           dict(p.split("=") for p in trial["params"])["opt"], 3)


def test_a_grid_sweep_needs_no_optuna_and_runs_the_grid_in_order(tmp_path: Path) -> None:
    """A grid is enumerated, not sampled: without optuna installed (the local-sweeps extra) it runs, trial N
    being the grid's N-th point, up to max_trial_count."""
    hide = ("import runpy, sys; sys.modules['optuna'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    cmd = [sys.executable, "-c", hide, str(APP), "-m", "hydra/sweeper=vertex_vizier",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.parallel_trial_count=2",
           "hydra.sweeper.algorithm=grid", "hydra.sweeper.max_trial_count=5", "x=choice(0,1,2)", "opt=a,b", "n=3"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = results(tmp_path)["trials"]
    assert [t["id"] for t in trials] == ["1", "2", "3", "4", "5"]
    assert [t["params"] for t in trials] == [["x=0", "opt=a"], ["x=0", "opt=b"], ["x=1", "opt=a"], ["x=1", "opt=b"],
                                            ["x=2", "opt=a"]]
    assert all(t["value"] == pytest.approx(value_of(t["params"], n=3)) for t in trials)


def test_bayesian_sweep_gets_near_the_optimum(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.max_trial_count=12", "x=interval(0,4)", "opt=a,b")
    res = results(tmp_path)
    assert len(res["trials"]) == 12
    assert res["best_value"] < 1.5  # a random trial does worse than this half the time
    best = next(t for t in res["trials"] if t["id"] == res["best_trial"])
    assert best["value"] == pytest.approx(value_of(best["params"]))
    assert res["best_value"] == min(t["value"] for t in res["trials"])


def test_metric_from_a_returned_mapping_and_maximize(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "hydra.sweeper.metric_id=x", "hydra.sweeper.goal=maximize",
              "as_dict=true", "x=range(0,4)")
    res = results(tmp_path)
    assert res["best_params"] == ["x=3"] and res["best_value"] == 3.0


def test_failed_trials_within_budget_complete(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "hydra.sweeper.max_failed_trial_count=3",
              "fail_when_x_below=1", "x=choice(0,0.5,2,3)")
    res = results(tmp_path)
    failed = [t for t in res["trials"] if t["state"] == "INFEASIBLE"]
    assert sorted(t["params"][0] for t in failed) == ["x=0", "x=0.5"]
    for trial in failed:
        assert "ValueError" in trial["infeasible_reason"] and "is below 1" in trial["infeasible_reason"]
    assert res["best_params"] == ["x=2"]


def test_too_many_failed_trials_stop_the_study(tmp_path: Path) -> None:
    # random search: Optuna is told of each failed trial (a grid needs no sampler)
    proc = run_sweep(tmp_path, "hydra.sweeper.algorithm=random", "hydra.sweeper.max_failed_trial_count=2",
                     "hydra.sweeper.parallel_trial_count=1", "fail_when_x_below=10", "x=choice(0,1,2,3)",
                     check=False)
    assert proc.returncode != 0
    assert "2 trials failed, reaching max_failed_trial_count=2" in proc.stderr
    res = results(tmp_path)  # partial results are still written
    assert res["state"] == "FAILED" and len(res["trials"]) == 2


def test_nan_objective_fails_the_trial_visibly(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "return_nan=true", "x=choice(2,3)", check=False)
    res = results(tmp_path)
    assert [t["state"] for t in res["trials"]] == ["INFEASIBLE", "INFEASIBLE"]
    assert all("nan" in t["infeasible_reason"] for t in res["trials"])


def test_dry_run_prints_a_valid_tuning_job_and_runs_nothing(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "hydra.sweeper.dry_run=true", "hydra.sweeper.goal=maximize",
                     "hydra.sweeper.job.machine_type=g2-standard-8", "hydra.sweeper.job.accelerator_type=NVIDIA_L4",
                     "hydra.sweeper.job.accelerator_count=1",
                     "hydra.sweeper.early_stopping=median", "x=tag(log,interval(0.1,4))", "opt=a,b", "n=2")
    job, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    proto = json_format.ParseDict(job, HyperparameterTuningJob.pb(HyperparameterTuningJob()))
    assert proto.study_spec.metrics[0].goal == 1  # MAXIMIZE
    assert proto.study_spec.HasField("median_automated_stopping_spec")
    assert [p.parameter_id for p in proto.study_spec.parameters] == ["x", "opt"]
    assert proto.trial_job_spec.worker_pool_specs[0].machine_spec.accelerator_count == 1
    assert not (tmp_path / "sweep").exists()


def test_an_override_that_does_not_compose_fails_before_any_trial(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "no_such_key=interval(0,1)", check=False)
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr
    assert not (tmp_path / "sweep" / "optimization_results.yaml").exists()


@pytest.mark.parametrize(
    "override, key",
    [("hydra.sweeper.goal=up", "hydra.sweeper.goal"), ("hydra.sweeper.algorithm=anneal", "hydra.sweeper.algorithm"),
     ("hydra.sweeper.max_trial_count=0", "hydra.sweeper.max_trial_count"),
     ("hydra.sweeper.job.accelerator_count=2", "hydra.sweeper.job.accelerator_count"),
     ("hydra.sweeper.parallel_trial_count=11", "hydra.sweeper.parallel_trial_count"),  # above max_trial_count=10
     ("hydra.sweeper.job.machine_type=''", "hydra.sweeper.job.machine_type")],
)
def test_bad_sweeper_settings_name_their_key(tmp_path: Path, override: str, key: str) -> None:
    proc = run_sweep(tmp_path, override, "x=interval(0,1)", check=False)
    assert proc.returncode != 0 and key in proc.stderr
    assert not (tmp_path / "sweep" / ".vertex_ai").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["ctrl_c", "sigterm", "sighup"])
def test_interrupting_a_local_study_stops_its_trials(tmp_path: Path, sig: signal.Signals) -> None:
    cmd = [sys.executable, str(APP), "-m", "hydra/sweeper=vertex_vizier", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.parallel_trial_count=2", "hydra.sweeper.max_trial_count=4", "sleep_s=120", "x=interval(0,4)"]
    app = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    trials = lambda: subprocess.run(["pgrep", "-f", f"{tmp_path}/sweep/.vertex_ai"],  # noqa: E731
                                    capture_output=True, text=True).stdout.split()
    try:
        wait_for(lambda: len(trials()) == 2, 120, "two running trials")
        app.send_signal(sig)
    finally:
        output = finish(app, timeout=60)
    assert app.returncode != 0
    assert "cancelled the local study" in output
    wait_for(lambda: trials() == [], 15, "the trial processes to end")


def test_a_choice_of_more_than_a_thousand_strings_is_refused(tmp_path: Path) -> None:
    many = ",".join(f"v{i}" for i in range(1001))
    proc = run_sweep(tmp_path, f"+label=choice({many})", "x=interval(0,1)", check=False)
    assert proc.returncode != 0 and "1001 choices; Vertex allows at most 1000" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr  # a SearchSpaceError is one message
    assert not (tmp_path / "sweep" / ".vertex_ai").exists()


def test_search_space_from_sweeper_params_and_the_command_line_wins(tmp_path: Path) -> None:
    run_sweep(tmp_path, "hydra.sweeper.algorithm=grid",
              "+hydra.sweeper.params.x='choice(0,1)'",  # overridden below
              "+hydra.sweeper.params.opt='choice(a,b)'", "x=choice(2,3)")
    res = results(tmp_path)
    swept = sorted(tuple(sorted(t["params"])) for t in res["trials"])
    assert swept == [("opt=a", "x=2"), ("opt=a", "x=3"), ("opt=b", "x=2"), ("opt=b", "x=3")]
    assert sorted(res["best_params"]) == ["opt=b", "x=2"]


def test_median_early_stopping_stops_a_trial_worse_than_the_completed_ones(tmp_path: Path) -> None:
    # Grid order (sorted values): x=2 and x=2.5 complete first, one trial at a time; x=9 reports values far above
    # their running averages from its first step, so the median rule stops it long before its 20 steps end.
    proc = run_sweep(tmp_path, "hydra.sweeper.algorithm=grid", "hydra.sweeper.parallel_trial_count=1",
                     "hydra.sweeper.early_stopping=median", "report_steps=20", "step_s=0.2", "x=choice(2,2.5,9)")
    res = results(tmp_path)
    assert [t["params"] for t in res["trials"]] == [["x=2"], ["x=2.5"], ["x=9"]]
    assert [t["state"] for t in res["trials"]] == ["SUCCEEDED"] * 3
    done, stopped = res["trials"][:2], res["trials"][2]
    for trial in done:  # ran to the end: the task wrote its file and reported its final objective
        assert (tmp_path / "sweep" / str(int(trial["id"]) - 1) / "trial.txt").exists()
        assert trial["value"] == pytest.approx(value_of(trial["params"]))
    assert not (tmp_path / "sweep" / stopped["id"] / "trial.txt").exists()  # killed mid-curve
    assert stopped["value"] > value_of(stopped["params"])  # its last intermediate value, above its final one
    assert res["best_params"] == ["x=2"]
    # reported as stopped early, not as a failure: in the results file and on the console
    assert [t["stopped_early"] for t in res["trials"]] == [False, False, True]
    assert "Stopped early by the early stopping rule (reported with their last measurement): trial(s) 3" in proc.stdout


def _rest_trial(trial_id: str, state: str, value: Optional[float] = None) -> Dict[str, Any]:
    trial: Dict[str, Any] = {"id": trial_id, "state": state, "parameters": [{"parameterId": "x", "value": 1.5}]}
    if value is not None:
        trial["finalMeasurement"] = {"stepCount": "3", "metrics": [{"metricId": "loss", "value": value}]}
    return trial


@pytest.mark.parametrize("stopping", [{"medianAutomatedStoppingSpec": {}}, {"decayCurveStoppingSpec": {}}, {}],
                         ids=["median", "decay-curve", "no-stopping-spec"])
def test_a_trial_stopped_early_comes_back_completed_with_its_last_measurement(
    tmp_path: Path, stopping: Dict[str, Any]
) -> None:
    """What Vertex returns for a stopped trial (SUCCEEDED, a final measurement, no result.pkl since its container
    was killed) becomes a COMPLETED JobReturn whose value is that measurement; a failed trial stays FAILED."""
    from hydra.core.utils import JobStatus

    from hydra_plugins.hydra_vertex_ai import _payload, _sweep
    from hydra_plugins.hydra_vertex_ai._backends.base import TuningOutcome
    from hydra_plugins.hydra_vertex_ai._staging import Staging

    staging = Staging.of(str(tmp_path / "staging"), "s-1")
    config = OmegaConf.create({"x": 0.0, "hydra": {"job": {"name": "app"}}})
    finished = _payload.completed_return(config, ["x=2"], 0.25)
    Path(staging.trial_result("1")).parent.mkdir(parents=True)
    Path(staging.trial_result("1")).write_bytes(_payload.dump_result(finished))
    trials = [_rest_trial("1", "SUCCEEDED", 0.25), _rest_trial("2", "SUCCEEDED", 7.5), _rest_trial("3", "INFEASIBLE")]
    outcome = TuningOutcome("JOB_STATE_SUCCEEDED", trials)
    parameter_map = {"x": ("x", "DOUBLE")}

    early = _sweep.stopped_early_ids(outcome, {"metrics": [], **stopping}, staging)
    returns = _sweep._trial_returns(staging, config, parameter_map, [], outcome, early)
    conf = OmegaConf.structured(VertexVizierSweeperConf(metric_id="loss"))
    res = _sweep.write_results(tmp_path / "results.yaml", conf, parameter_map, [], outcome, early)

    assert [r.status for r in returns[:1]] == [JobStatus.COMPLETED] and returns[0].return_value == 0.25
    assert returns[2].status == JobStatus.FAILED
    if stopping:
        assert early == {"2"}
        assert returns[1].status == JobStatus.COMPLETED and returns[1].return_value == 7.5
        assert returns[1].overrides == ["x=1.5"]
        assert [t["stopped_early"] for t in res["trials"]] == [False, True, False]
    else:  # without a stopping rule nothing is stopped early: a missing result is a failure
        assert early == set() and returns[1].status == JobStatus.FAILED
