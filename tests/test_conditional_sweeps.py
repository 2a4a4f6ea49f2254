"""Conditional search spaces: keys of some options of a swept config group become Vizier conditional parameters.

The app (tests/apps/conditional) has two optimizers with different keys: adam has optimizer.beta1, sgd has
optimizer.momentum; both have optimizer.lr. Sweeps run for real, on the local backend and through the emulator.
"""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from conftest import EMULATOR_ADDRESS, STAGING, VERTEX_OVERRIDES, tuning_job_spec
from google.api_core import exceptions as ex
from google.cloud.aiplatform_v1.types import StudySpec
from google.protobuf import json_format
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai._backends.local_study import _suggest_active, require_optuna
from hydra_plugins.hydra_vertex_ai._errors import ConfigError
from hydra_plugins.hydra_vertex_ai._search_space import TrialValueError, trial_overrides

APP = Path(__file__).parent / "apps" / "conditional" / "app.py"
SWEEP = ["optimizer=choice(adam,sgd)", "optimizer.beta1=choice(0.8,0.9)", "optimizer.momentum=choice(0.0,0.5)"]
# lr is in both options, so composition cannot tell it matters for sgd only: stated.
LR_FOR_SGD = ["optimizer.lr=choice(0.01,0.1)", 'hydra.sweeper.conditions={optimizer.lr:"optimizer=sgd"}']
KEYS = {"adam": {"name", "lr", "beta1"}, "sgd": {"name", "lr", "momentum"}}


def sweep(tmp_path: Path, *overrides: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    cmd = [sys.executable, str(APP), "-m", "hydra/sweeper=vertex_vizier", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.parallel_trial_count=2", "hydra.sweeper.max_trial_count=20", *overrides]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def dry_run_parameters(tmp_path: Path, *overrides: str) -> List[Dict[str, Any]]:
    out = sweep(tmp_path, "hydra.sweeper.dry_run=true", *overrides).stdout
    parameters: List[Dict[str, Any]] = json.loads(out[out.index("{"):out.rindex("}") + 1])["studySpec"]["parameters"]
    return parameters


def discrete(pid: str, *values: float) -> Dict[str, Any]:
    return {"parameterId": pid, "discreteValueSpec": {"values": list(values)}, "scaleType": "UNIT_LINEAR_SCALE"}


def child(spec: Dict[str, Any], *options: str) -> Dict[str, Any]:
    return {"parentCategoricalValues": {"values": list(options)}, "parameterSpec": spec}


def test_the_spec_inferred_from_the_config_group_is_vizier_conditional_parameters(tmp_path: Path) -> None:
    parameters = dry_run_parameters(tmp_path, *SWEEP, "optimizer.lr=tag(log,interval(0.001,0.1))")
    assert parameters == [
        {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
         "conditionalParameterSpecs": [child(discrete("optimizer.beta1", 0.8, 0.9), "adam"),
                                       child(discrete("optimizer.momentum", 0.0, 0.5), "sgd")]},
        # in every option: a plain parameter
        {"parameterId": "optimizer.lr", "doubleValueSpec": {"minValue": 0.001, "maxValue": 0.1},
         "scaleType": "UNIT_LOG_SCALE"},
    ]  # fmt: skip
    json_format.ParseDict({"parameters": parameters}, StudySpec.pb(StudySpec()))  # the API's own shape
    assert not (tmp_path / "sweep" / ".vertex_ai").exists()  # a dry run stages nothing


def test_an_explicit_condition_nests_a_key_every_option_has(tmp_path: Path) -> None:
    parameters = dry_run_parameters(tmp_path, *SWEEP, *LR_FOR_SGD)
    assert [c["parameterSpec"]["parameterId"] for c in parameters[0]["conditionalParameterSpecs"]] == [
        "optimizer.beta1", "optimizer.momentum", "optimizer.lr"]
    assert parameters[0]["conditionalParameterSpecs"][2] == child(discrete("optimizer.lr", 0.01, 0.1), "sgd")
    assert len(parameters) == 1  # lr is no longer a top-level parameter


def check_trials(sweep_dir: Path) -> None:
    """Every trial composed only its option's keys, with the swept values of its active parameters and the option's
    own lr where lr was inactive; and the grid covered every child value under its parent's option."""
    results = OmegaConf.to_container(OmegaConf.load(sweep_dir / "optimization_results.yaml"))
    assert isinstance(results, dict) and results["state"] == "SUCCEEDED"
    seen = set()
    for trial in results["trials"]:
        assert trial["state"] == "SUCCEEDED", trial
        params = dict(p.split("=", 1) for p in trial["params"])  # inactive parameters are absent, not a value
        option = params["optimizer"]
        assert set(params) == ({"optimizer", "optimizer.beta1"} if option == "adam" else
                               {"optimizer", "optimizer.momentum", "optimizer.lr"})
        composed = OmegaConf.load(sweep_dir / str(int(trial["id"]) - 1) / ".hydra" / "config.yaml").optimizer
        assert set(composed) == KEYS[option]
        for key, value in params.items():
            if key != "optimizer":
                assert composed[key.split(".")[1]] == float(value)
        if option == "adam":
            assert composed.lr == 0.001  # no override: the option's own default stands
        seen.add(tuple(sorted(params.items())))
    assert len(results["trials"]) == 6  # 2 for adam + 2 x 2 for sgd: the grid of the conditional tree, not 2^4
    assert len(seen) == 6
    assert (sweep_dir / "report.html").exists()


def test_a_conditional_grid_sweep_on_the_local_backend(tmp_path: Path) -> None:
    sweep(tmp_path, "hydra.sweeper.algorithm=grid", *SWEEP, *LR_FOR_SGD)
    check_trials(tmp_path / "sweep")


def test_a_conditional_grid_sweep_through_the_emulator(vertex_emulator: Any, tmp_path: Path) -> None:
    sweeper = [o.replace("hydra.launcher.", "hydra.sweeper.") for o in VERTEX_OVERRIDES]
    before = len(vertex_emulator.jobs("hyperparameterTuningJobs"))
    sweep(tmp_path, *sweeper, "hydra.sweeper.algorithm=grid", *SWEEP, *LR_FOR_SGD)
    check_trials(tmp_path / "sweep")
    created = vertex_emulator.jobs("hyperparameterTuningJobs")[before:]
    assert len(created) == 1
    children = created[0]["studySpec"]["parameters"][0]["conditionalParameterSpecs"]
    assert [c["parameterSpec"]["parameterId"] for c in children] == [
        "optimizer.beta1", "optimizer.momentum", "optimizer.lr"]
    # `status` lists each trial's active parameters only
    status = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli", "status",
                             created[0]["displayName"], "--staging", STAGING], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    rows = [line for line in status.stdout.splitlines() if "optimizer=" in line]
    assert len(rows) == 6, status.stdout + status.stderr
    for row in rows:
        absent = ("optimizer.momentum", "optimizer.lr") if "optimizer=adam" in row else ("optimizer.beta1",)
        assert not any(key in row for key in absent), row


@pytest.mark.parametrize("overrides, message", [
    (['hydra.sweeper.conditions={optimizer.gamma:"optimizer=sgd"}'],
     "hydra.sweeper.conditions.optimizer.gamma: 'optimizer.gamma' is not a swept parameter"),
    (["optimizer.lr=choice(0.01,0.1)", 'hydra.sweeper.conditions={optimizer.lr:"optimizer=rmsprop"}'],
     "hydra.sweeper.conditions.optimizer.lr: rmsprop not among the values of 'optimizer'"),
    (["optimizer.lr=interval(0.01,0.1)", 'hydra.sweeper.conditions={optimizer.momentum:"optimizer.lr=0.05"}'],
     "hydra.sweeper.conditions.optimizer.momentum: 'optimizer.lr' is DOUBLE; a parent must be CATEGORICAL"),
    (["optimizer.gamma=interval(0,1)"], "hydra.sweeper.params: 'optimizer.gamma' is in no option of 'optimizer'"),
])  # fmt: skip
def test_bad_conditions_are_refused_before_anything_is_staged(tmp_path: Path, overrides: List[str],
                                                               message: str) -> None:
    proc = sweep(tmp_path, *SWEEP, *overrides, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr.splitlines()[0] and "Traceback" not in proc.stderr, proc.stderr  # one line
    assert not (tmp_path / "sweep" / ".vertex_ai").exists()


def test_the_emulator_refuses_conditional_specs_vertex_refuses(vertex_emulator: Any) -> None:
    from google.cloud.aiplatform_v1 import HyperparameterTuningJob

    from hydra_plugins.hydra_vertex_ai._backends.vertex import make_client

    client = make_client("us-central1", EMULATOR_ADDRESS)
    y = {"parameterId": "y", "discreteValueSpec": {"values": [1, 2]}}
    refused = {
        "a DOUBLE parent": {"parameterId": "x", "doubleValueSpec": {"minValue": 0, "maxValue": 1},
                            "conditionalParameterSpecs": [{"parentDiscreteValues": {"values": [0.5]}, "parameterSpec": y}]},
        "a value outside the parent's": {"parameterId": "x", "discreteValueSpec": {"values": [1, 2, 3]},
                                         "conditionalParameterSpecs": [{"parentDiscreteValues": {"values": [4]},
                                                                        "parameterSpec": y}]},
        "another kind's condition": {"parameterId": "x", "integerValueSpec": {"minValue": 1, "maxValue": 3},
                                     "conditionalParameterSpecs": [{"parentCategoricalValues": {"values": ["1"]},
                                                                    "parameterSpec": y}]},
        "an int outside the parent's bounds": {"parameterId": "x", "integerValueSpec": {"minValue": 1, "maxValue": 3},
                                               "conditionalParameterSpecs": [{"parentIntValues": {"values": [7]},
                                                                              "parameterSpec": y}]},
    }  # fmt: skip
    for what, parameter in refused.items():
        job = tuning_job_spec(f"conditional-{what.replace(' ', '-')}")
        job["studySpec"]["parameters"] = [parameter]
        pb = HyperparameterTuningJob.pb(HyperparameterTuningJob())
        json_format.ParseDict(job, pb)
        with pytest.raises(ex.InvalidArgument, match="conditional_parameter_specs"):
            client.create_hyperparameter_tuning_job(parent="projects/p/locations/us-central1",
                                                    hyperparameter_tuning_job=HyperparameterTuningJob.wrap(pb))


def test_the_study_engine_samples_a_child_only_when_its_parent_activates_it() -> None:
    optuna = require_optuna()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    specs = [{"parameterId": "n", "integerValueSpec": {"minValue": "0", "maxValue": "2"},  # int64 as JSON strings
              "conditionalParameterSpecs": [
                  {"parentIntValues": {"values": ["1", "2"]}, "parameterSpec": {
                      "parameterId": "k", "categoricalValueSpec": {"values": ["a", "b"]},
                      "conditionalParameterSpecs": [{"parentCategoricalValues": {"values": ["b"]},
                                                     "parameterSpec": {"parameterId": "w", "doubleValueSpec": {
                                                         "minValue": 0, "maxValue": 1}}}]}}]}]  # fmt: skip
    seen = set()
    for _ in range(40):
        trial = study.ask()
        suggested = {pid: value for pid, value, _ in _suggest_active(trial, specs)}
        expected = {"n"} | ({"k"} if suggested["n"] in (1, 2) else set())
        expected |= {"w"} if suggested.get("k") == "b" else set()
        assert set(suggested) == expected
        seen.add(frozenset(suggested))
        study.tell(trial, 0.0)
    assert seen == {frozenset({"n"}), frozenset({"n", "k"}), frozenset({"n", "k", "w"})}  # two levels deep


def test_trial_flags_of_a_conditional_study() -> None:
    parameters = {"optimizer": ("optimizer", "CATEGORICAL"), "optimizer.beta1": ("optimizer.beta1", "DOUBLE"),
                  "optimizer.momentum": ("optimizer.momentum", "DOUBLE")}
    conditions = {"optimizer.beta1": ("optimizer", "categoricalValueSpec", ["adam"]),
                  "optimizer.momentum": ("optimizer", "categoricalValueSpec", ["sgd"])}
    flags = ["--optimizer=sgd", "--optimizer.momentum=0.5"]
    assert trial_overrides(parameters, flags, conditions) == ["optimizer=sgd", "optimizer.momentum=0.5"]
    with pytest.raises(TrialValueError, match="no value for optimizer.beta1"):  # active, so required
        trial_overrides(parameters, ["--optimizer=adam", "--optimizer.momentum=0.5"], conditions)
    with pytest.raises(TrialValueError, match="optimizer.beta1 given, but inactive"):
        trial_overrides(parameters, [*flags, "--optimizer.beta1=0.9"], conditions)
    with pytest.raises(TrialValueError, match="no value for optimizer.beta1, optimizer.momentum"):
        trial_overrides(parameters, ["--optimizer=sgd"])  # without the study's conditions every flag is required


NESTED = {
    "config.yaml": "defaults:\n  - model: vit\n  - _self_\n",
    "model/vit.yaml": "name: vit\nheads: 4\n",
    "model/cnn.yaml": "defaults:\n  - backbone: r18\n  - _self_\nname: cnn\nwidth: 32\n",
    "model/backbone/r18.yaml": "name: r18\n",
    "model/backbone/r50.yaml": "name: r50\nbottleneck: 4\n",
}


def infer_in(conf_dir: Path, files: Dict[str, str], sweep: List[str],
             conditions: Optional[Dict[str, str]] = None) -> List[Dict[str, Any]]:
    """The study parameters the sweeper infers for `sweep` (and stated `conditions`) over a config dir holding
    `files`, composed by Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from hydra_plugins.hydra_vertex_ai import _conditions
    from hydra_plugins.hydra_vertex_ai._search_space import apply_conditions, parse_search_space, study_parameters

    space = apply_conditions(parse_search_space(sweep), conditions or {}, "hydra.sweeper.conditions")
    for name, text in files.items():
        (conf_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (conf_dir / name).write_text(text)
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        inferred = _conditions.infer(
            space, lambda overrides: compose("config", overrides, return_hydra_config=True),
            lambda group: bool(loader.get_group_options(group)), list(conditions or {}), "hydra.sweeper")
    return study_parameters(inferred)


def test_a_group_nested_in_an_option_nests_its_children_under_it(tmp_path: Path) -> None:
    parameters = infer_in(tmp_path, NESTED, ["model=choice(vit,cnn)", "model/backbone=choice(r18,r50)",
                                             "model.heads=choice(4,8)", "model.width=choice(32,64)",
                                             "model.backbone.bottleneck=choice(2,4)"])
    # model/backbone only composes inside model=cnn (the default is vit): it is composed there
    assert parameters == [
        {"parameterId": "model", "categoricalValueSpec": {"values": ["vit", "cnn"]}, "conditionalParameterSpecs": [
            child({"parameterId": "model/backbone", "categoricalValueSpec": {"values": ["r18", "r50"]},
                   "conditionalParameterSpecs": [child(discrete("model.backbone.bottleneck", 2.0, 4.0), "r50")]},
                  "cnn"),
            child(discrete("model.heads", 4.0, 8.0), "vit"),
            child(discrete("model.width", 32.0, 64.0), "cnn"),
        ]},
    ]  # fmt: skip


def test_stated_conditions_on_discrete_and_integer_parents_use_their_value_lists() -> None:
    # (Hydra composes a config group option only from a string, so an inferred parent is CATEGORICAL.)
    from hydra_plugins.hydra_vertex_ai._search_space import apply_conditions, parse_search_space, study_parameters

    space = parse_search_space(["batch=choice(32,64,128)", "accum=choice(1,2)", "depth=int(interval(1,4))",
                                "skip=choice(true,false)"])
    stated = apply_conditions(space, {"accum": "batch=choice(32,64)", "skip": "depth=choice(3,4)"}, "conditions")
    assert [p["conditionalParameterSpecs"] for p in study_parameters(stated)] == [
        [{"parentDiscreteValues": {"values": [32.0, 64.0]}, "parameterSpec": discrete("accum", 1.0, 2.0)}],
        [{"parentIntValues": {"values": [3, 4]},
          "parameterSpec": {"parameterId": "skip", "categoricalValueSpec": {"values": ["true", "false"]}}}],
    ]  # fmt: skip
    for conditions, message in [({"accum": "batch=48"}, "48.0 not among the values of 'batch'"),
                                ({"skip": "depth=5"}, "5 not among the values of 'depth'"),
                                ({"skip": "depth=2.5"}, "not all integers"),
                                ({"accum": "batch=accum"}, "takes numbers"),
                                ({"accum": "accum=1"}, "cannot depend on itself")]:
        with pytest.raises(ConfigError, match=message):
            apply_conditions(space, conditions, "conditions")


def test_the_report_shows_an_inactive_child_as_absent(tmp_path: Path) -> None:
    pytest.importorskip("plotly")
    import re

    from hydra_plugins.hydra_vertex_ai import _report
    from hydra_plugins.hydra_vertex_ai._vertex_facts import all_parameter_specs

    def trial(number: str, value: float, *params: str) -> Dict[str, Any]:
        return {"id": number, "state": "SUCCEEDED", "params": list(params), "value": value, "infeasible_reason": None}

    results = {"name": "vertex_vizier", "tuning_job": "t", "state": "SUCCEEDED", "metric_id": "loss", "goal": "minimize",
               "best_trial": "1", "best_value": 0.5, "best_params": [], "fixed_params": [],
               "trials": [trial("1", 0.5, "optimizer=adam", "optimizer.amsgrad=true"), trial("2", 1.0, "optimizer=sgd"),
                          trial("3", 0.7, "optimizer=adam", "optimizer.amsgrad=false")]}  # fmt: skip
    rest = [{"id": t["id"], "parameters": [{"parameterId": p.split("=")[0], "value": p.split("=")[1]} for p in t["params"]]}
            for t in results["trials"]]
    specs = [{"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
              "conditionalParameterSpecs": [child({"parameterId": "optimizer.amsgrad",
                                                   "categoricalValueSpec": {"values": ["true", "false"]}}, "adam")]}]
    path = _report.write_study_report(tmp_path, results, rest, all_parameter_specs(specs))
    assert path is not None
    parallel = re.search(r'data-figure="parallel"[^>]*>(.*?)</script>', path.read_text(), re.S)
    assert parallel is not None
    dims = {d["label"]: d for d in json.loads(parallel.group(1))["data"][0]["dimensions"]}
    # trial 2 (sgd) has no amsgrad: no value on that axis, and no "None" category
    assert dims["optimizer.amsgrad"]["ticktext"] == ["true", "false"]
    assert dims["optimizer.amsgrad"]["values"] == [0, None, 1]


def test_a_key_two_unrelated_groups_decide_must_be_stated(tmp_path: Path) -> None:
    # groups a and b (global packages) each write `shared.k` in one of their options: which one decides is unknowable
    files = {"config.yaml": "defaults:\n  - a: a2\n  - b: b2\n  - _self_\n",
             "a/a1.yaml": "# @package _global_\nshared:\n  k: 1\n", "a/a2.yaml": "# @package _global_\n{}\n",
             "b/b1.yaml": "# @package _global_\nshared:\n  k: 2\n", "b/b2.yaml": "# @package _global_\n{}\n"}
    with pytest.raises(ConfigError, match="'shared.k' depends on both 'a' and 'b'; state which one"):
        infer_in(tmp_path, files, ["a=choice(a1,a2)", "b=choice(b1,b2)", "shared.k=choice(1,2)"])


def test_stating_the_parent_of_a_key_whose_parent_is_not_swept_is_refused() -> None:
    from hydra_plugins.hydra_vertex_ai._search_space import apply_conditions, parse_search_space

    space = parse_search_space(["model=choice(cnn,vit)", "model.dropout=interval(0,0.5)"])
    with pytest.raises(ConfigError, match=r"hydra.sweeper.conditions.model.dropout: the parent 'data' is not a swept"):
        apply_conditions(space, {"model.dropout": "data=big"}, "hydra.sweeper.conditions")
    with pytest.raises(ConfigError, match=r"hydra.sweeper.conditions.model.dropout: list the parent's values"):
        apply_conditions(space, {"model.dropout": "model=glob(*)"}, "hydra.sweeper.conditions")
    with pytest.raises(ConfigError, match=r"list the parent.s values"):
        apply_conditions(space, {"model.dropout": "model=interval(0,1)"}, "hydra.sweeper.conditions")


def test_a_stated_condition_against_the_config_groups_is_refused(tmp_path: Path) -> None:
    files = {"config.yaml": "defaults:\n  - optimizer: adam\n  - _self_\n",
             "optimizer/adam.yaml": "beta1: 0.9\n", "optimizer/sgd.yaml": "momentum: 0.0\n"}
    with pytest.raises(ConfigError, match="'optimizer.momentum' depends on 'optimizer' through its config groups, "
                                          "but: 'optimizer.momentum' cannot depend on itself"):
        infer_in(tmp_path, files, ["optimizer=choice(adam,sgd)", "optimizer.momentum=choice(0.0,0.5)"],
                 {"optimizer": "optimizer.momentum=0.5"})
