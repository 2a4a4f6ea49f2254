"""Hydra sweep overrides -> Vertex ParameterSpecs (the README's table), errors, and trial flags -> overrides."""
from typing import Any, Dict

import pytest
from google.cloud.aiplatform_v1.types import StudySpec
from google.protobuf import json_format
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from hydra_plugins.hydra_vertex_ai._search_space import (
    CATEGORICAL,
    DISCRETE,
    DISCRETE_INT,
    DOUBLE,
    INTEGER,
    SearchSpaceError,
    TrialValueError,
    merge_params,
    overrides_from_values,
    parameter_id_for,
    parameter_map,
    parse_search_space,
    trial_overrides,
)

LIN, LOG = "UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE"


def double(pid: str, low: float, high: float, scale: str = LIN) -> Dict[str, Any]:
    return {"parameterId": pid, "doubleValueSpec": {"minValue": low, "maxValue": high}, "scaleType": scale}


def integer(pid: str, low: int, high: int, scale: str = LIN) -> Dict[str, Any]:
    return {"parameterId": pid, "integerValueSpec": {"minValue": low, "maxValue": high}, "scaleType": scale}


def discrete(pid: str, *values: float, scale: str = LIN) -> Dict[str, Any]:
    return {"parameterId": pid, "discreteValueSpec": {"values": list(values)}, "scaleType": scale}


def categorical(pid: str, *values: str) -> Dict[str, Any]:
    return {"parameterId": pid, "categoricalValueSpec": {"values": list(values)}}


# override -> (override key, declared type, REST ParameterSpec)
SPECS = [
    # interval(a,b) -> DOUBLE, linear
    ("model.lr=interval(0.001,0.1)", "model.lr", DOUBLE, double("model.lr", 0.001, 0.1)),
    ("x=interval(-1,1)", "x", DOUBLE, double("x", -1.0, 1.0)),
    # int(interval(a,b)) -> INTEGER
    ("layers=int(interval(1,8))", "layers", INTEGER, integer("layers", 1, 8)),
    # tag(log, ...) -> same kind, log scale
    ("lr=tag(log,interval(1e-4,1e-1))", "lr", DOUBLE, double("lr", 1e-4, 1e-1, LOG)),
    ("units=tag(log,int(interval(16,512)))", "units", INTEGER, integer("units", 16, 512, LOG)),
    ("units=int(tag(log,interval(16,512)))", "units", INTEGER, integer("units", 16, 512, LOG)),
    ("bs=tag(log,choice(128,16,32))", "bs", DISCRETE_INT, discrete("bs", 16.0, 32.0, 128.0, scale=LOG)),
    # numeric choice / a,b,c -> DISCRETE, sorted and distinct
    ("bs=choice(64,16,32,16)", "bs", DISCRETE_INT, discrete("bs", 16.0, 32.0, 64.0)),
    ("bs=64,16,32", "bs", DISCRETE_INT, discrete("bs", 16.0, 32.0, 64.0)),
    ("p=0.5,0.1,-2.5e-3", "p", DISCRETE, discrete("p", -2.5e-3, 0.1, 0.5)),
    ("mix=1,2.5", "mix", DISCRETE_INT, discrete("mix", 1.0, 2.5)),
    ("bs=sort(3,1,2)", "bs", DISCRETE_INT, discrete("bs", 1.0, 2.0, 3.0)),
    # range -> DISCRETE of exactly Hydra's values, stop excluded
    ("layers=range(1,5)", "layers", DISCRETE_INT, discrete("layers", 1.0, 2.0, 3.0, 4.0)),
    ("n=range(3)", "n", DISCRETE_INT, discrete("n", 0.0, 1.0, 2.0)),
    ("n=range(10,0,-4)", "n", DISCRETE_INT, discrete("n", 2.0, 6.0, 10.0)),
    ("f=range(0,1,0.25)", "f", DISCRETE, discrete("f", 0.0, 0.25, 0.5, 0.75)),
    ("f=range(0,0.3,0.1)", "f", DISCRETE, discrete("f", 0.0, 0.1, 0.2)),
    ("f=range(1,3.0)", "f", DISCRETE, discrete("f", 1.0, 2.0)),
    ("n=tag(log,range(1,4))", "n", DISCRETE_INT, discrete("n", 1.0, 2.0, 3.0, scale=LOG)),
    # any other choice -> CATEGORICAL of each choice's override text
    ("optimizer=adam,sgd", "optimizer", CATEGORICAL, categorical("optimizer", "adam", "sgd")),
    ("opt=choice(adam,sgd)", "opt", CATEGORICAL, categorical("opt", "adam", "sgd")),
    ("flag=true,false", "flag", CATEGORICAL, categorical("flag", "true", "false")),
    ("v=a,null", "v", CATEGORICAL, categorical("v", "a", "null")),
    ("v=1,abc", "v", CATEGORICAL, categorical("v", "1", "abc")),
    ("v='1',2", "v", CATEGORICAL, categorical("v", "'1'", "2")),
    ("v=str(1),2", "v", CATEGORICAL, categorical("v", "'1'", "2")),
    ("v='a b','c,d'", "v", CATEGORICAL, categorical("v", "'a b'", "'c,d'")),
    ("v=choice('a b',x)", "v", CATEGORICAL, categorical("v", "a b", "x")),
    ("v=[1,2],[3]", "v", CATEGORICAL, categorical("v", "[1,2]", "[3]")),
    ("v={a:1},{a:2}", "v", CATEGORICAL, categorical("v", "{a:1}", "{a:2}")),
    ("v=${a},b", "v", CATEGORICAL, categorical("v", "${a}", "b")),
    ("v=a\\,b,c", "v", CATEGORICAL, categorical("v", "a\\,b", "c")),
    ("v=a,a,b", "v", CATEGORICAL, categorical("v", "a", "b")),
    # numbers Vertex's doubles could not bring back with their type -> CATEGORICAL (exact)
    ("v=1.0,2", "v", CATEGORICAL, categorical("v", "1.0", "2")),
    ("v=inf,1.5", "v", CATEGORICAL, categorical("v", "inf", "1.5")),
    ("v=9007199254740993,1", "v", CATEGORICAL, categorical("v", "9007199254740993", "1")),
    # +key / ++key: the prefix stays in the override key, the id is the plain key
    ("+extra=interval(0,1)", "+extra", DOUBLE, double("extra", 0.0, 1.0)),
    ("++extra=1,2", "++extra", DISCRETE_INT, discrete("extra", 1.0, 2.0)),
    ("+db@backup=mysql,pg", "+db@backup", CATEGORICAL, categorical("db@backup", "mysql", "pg")),
    ("hydra/launcher=a,b", "hydra/launcher", CATEGORICAL, categorical("hydra/launcher", "a", "b")),
]


@pytest.mark.parametrize("override, key, declared, spec", SPECS, ids=[row[0] for row in SPECS])
def test_sweep_override_becomes_parameter_spec(override: str, key: str, declared: str, spec: Dict[str, Any]) -> None:
    space = parse_search_space([override])
    assert space.fixed == ()
    assert [p.spec for p in space.parameters] == [spec]
    assert parameter_map(space) == {spec["parameterId"]: (key, declared)}


@pytest.mark.parametrize("override, key, declared, spec", SPECS, ids=[row[0] for row in SPECS])
def test_every_spec_is_a_valid_vertex_parameter_spec(override: str, key: str, declared: str, spec: Dict[str, Any]) -> None:
    (parameter,) = parse_search_space([override]).parameters
    message = json_format.ParseDict(parameter.spec, StudySpec.ParameterSpec.pb(StudySpec.ParameterSpec()))
    # Nothing was dropped: the proto says back what we wrote, except that proto3 JSON omits zero bounds and
    # writes int64 bounds as strings.
    back = json_format.MessageToDict(message)
    if "integerValueSpec" in back:
        back["integerValueSpec"] = {k: int(v) for k, v in back["integerValueSpec"].items()}
    assert back == without_zero_bounds(parameter.spec)


def without_zero_bounds(spec: Dict[str, Any]) -> Dict[str, Any]:
    return {
        k: {b: v for b, v in value.items() if v != 0} if k in ("doubleValueSpec", "integerValueSpec") else value
        for k, value in spec.items()
    }


def test_plain_overrides_are_fixed_verbatim_and_keep_their_order() -> None:
    overrides = ["a=1", "+b='x, y'", "lr=interval(0,1)", "~c", "++d=[1,2]", "e="]
    space = parse_search_space(overrides)
    assert space.fixed == ("a=1", "+b='x, y'", "~c", "++d=[1,2]", "e=")
    assert [p.parameter_id for p in space.parameters] == ["lr"]


def test_parameters_keep_command_line_order() -> None:
    space = parse_search_space(["b=1,2", "a=interval(0,1)", "c=x,y"])
    assert list(parameter_map(space)) == ["b", "a", "c"]


INVALID = [
    ("g=glob(*)", "glob"),
    ("v=choice(choice(a,b),c)", "nested"),
    ("v=interval(0,1),2", "nested"),
    ("v=range(1,3),7", "nested"),
    ("v=tag(foo,interval(0,1))", "tag"),
    ("v=tag(log,foo,interval(1,2))", "tag"),
    ("v=tag(log,interval(0,1))", "log scale"),
    ("v=tag(log,interval(-1,1))", "log scale"),
    ("v=tag(log,int(interval(0,4)))", "log scale"),
    ("v=tag(log,choice(0,1,2))", "log scale"),
    ("v=tag(log,range(0,3))", "log scale"),
    ("v=tag(log,choice(a,b))", "log scale"),
    ("v=interval(2,1)", "above"),
    ("v=interval(0,inf)", "finite"),
    ("v=int(interval(0,100000000000000000))", "2\\*\\*53"),
    ("v=range(0,1001)", "1000"),
    ("v=range(0,10,0.001)", "1000"),
    ("v=range(5,1)", "no value"),
    ("v=range(0,1,0)", "zero"),
    ("v=choice(a,", "no viable alternative"),
    ("~v=a,b", "deletion"),
]


@pytest.mark.parametrize("override, reason", INVALID, ids=[row[0] for row in INVALID])
def test_invalid_sweep_fails_naming_the_override(override: str, reason: str) -> None:
    with pytest.raises(SearchSpaceError, match=reason) as info:
        parse_search_space(["ok=1,2", override])
    assert f"'{override}'" in str(info.value)
    assert info.value.override == override
    assert isinstance(info.value, HydraException)


def test_more_than_1000_discrete_choices_fail() -> None:
    override = "v=" + ",".join(str(i) for i in range(1001))
    with pytest.raises(SearchSpaceError, match="1001 values") as info:
        parse_search_space([override])
    assert info.value.override == override
    assert len(parse_search_space(["v=" + ",".join(str(i) for i in range(1000))]).parameters[0].spec["discreteValueSpec"]["values"]) == 1000


@pytest.mark.parametrize(
    "first, second",
    [("x=1,2", "x=interval(0,1)"), ("x=1", "+x=a,b"), ("++x=1,2", "x=3"), ("db@p=a,b", "+db@p=c")],
)
def test_duplicate_keys_fail_naming_both_overrides(first: str, second: str) -> None:
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space([first, second])
    assert info.value.override == second
    assert first in str(info.value)


def test_grid_search_refuses_a_double_and_accepts_finite_kinds() -> None:
    with pytest.raises(SearchSpaceError, match="grid") as info:
        parse_search_space(["n=int(interval(1,4))", "lr=interval(0.1,1)"], algorithm="grid")
    assert info.value.override == "lr=interval(0.1,1)"
    space = parse_search_space(["n=int(interval(1,4))", "m=range(3)", "o=a,b"], algorithm="grid")
    assert [p.kind for p in space.parameters] == [INTEGER, DISCRETE, CATEGORICAL]
    assert parse_search_space(["lr=interval(0.1,1)"], algorithm="random").parameters[0].kind == DOUBLE


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="bayesian"):
        parse_search_space(["x=1,2"], algorithm="annealing")


# --- merge_params ---------------------------------------------------------------------------------------


def test_merge_params_command_line_wins_on_the_same_key() -> None:
    params = {"model.lr": "interval(0.1,1)", "layers": "range(1,4)", "+extra": "a,b", "opt": "adam,sgd"}
    cli = ["layers=5", "++extra=c", "seed=1"]
    merged = merge_params(params, cli)
    assert merged == ["model.lr=interval(0.1,1)", "opt=adam,sgd", "layers=5", "++extra=c", "seed=1"]
    space = parse_search_space(merged)
    assert list(parameter_map(space)) == ["model.lr", "opt"]
    assert space.fixed == ("layers=5", "++extra=c", "seed=1")


def test_merge_params_renders_non_string_values_from_yaml() -> None:
    merged = merge_params({"a": 5, "b": None, "c": True, "d": [1, 2]}, [])
    assert merged == ["a=5", "b=null", "c=True", "d=[1,2]"]
    parser = OverridesParser.create()
    assert [parser.parse_override(o).value() for o in merged] == [5, None, True, [1, 2]]


def test_merge_params_reports_a_bad_override() -> None:
    with pytest.raises(SearchSpaceError) as info:
        merge_params({"a": "1,2"}, ["b=choice(1,"])
    assert info.value.override == "b=choice(1,"


# --- parameter ids ---------------------------------------------------------------------------------------


def test_parameter_ids_are_the_hydra_key_without_prefix() -> None:
    space = parse_search_space(["+model.opt.lr=interval(0,1)", "++db@backup=a,b", "hydra/launcher=a,b", "layers.0.$x-y=1,2"])
    assert [p.parameter_id for p in space.parameters] == ["model.opt.lr", "db@backup", "hydra/launcher", "layers.0.$x-y"]
    assert [p.key for p in space.parameters] == ["+model.opt.lr", "++db@backup", "hydra/launcher", "layers.0.$x-y"]


def test_a_key_vertex_would_refuse_gets_a_deterministic_distinct_id() -> None:
    # Hydra's grammar cannot produce these keys; the mapping still must never yield an invalid or shared id.
    ids = [parameter_id_for(k) for k in ("a b", "a\tb", "a_b", "")]
    assert ids[2] == "a_b"
    assert all(pid and not any(c.isspace() for c in pid) for pid in ids)
    assert len(set(ids)) == 4
    assert parameter_id_for("a b") == ids[0]


# --- trial flags -> overrides ---------------------------------------------------------------------------

MAP = parameter_map(
    parse_search_space(
        [
            "+lr=tag(log,interval(1e-5,1))",
            "layers=int(interval(1,8))",
            "bs=16,32,128",
            "f=range(0,1,0.25)",
            "mix=1,2.5",
            "opt=adam,'a b'",
        ]
    )
)


def test_parameter_map_declares_each_type() -> None:
    assert MAP == {
        "lr": ("+lr", DOUBLE),
        "layers": ("layers", INTEGER),
        "bs": ("bs", DISCRETE_INT),
        "f": ("f", DISCRETE),
        "mix": ("mix", DISCRETE_INT),
        "opt": ("opt", CATEGORICAL),
    }


def test_trial_flags_in_both_forms_are_cast_by_declared_type() -> None:
    argv = ["--opt='a b'", "--lr", "1e-05", "--layers=3.0", "--bs", "128.0", "--f=0.5", "--mix=1.0"]
    assert trial_overrides(MAP, argv) == ["+lr=1e-05", "layers=3", "bs=128", "f=0.5", "mix=1", "opt='a b'"]
    argv = ["--lr=0.5", "--layers", "8", "--bs=16", "--f", "0.0", "--mix", "2.5", "--opt", "adam"]
    assert trial_overrides(MAP, argv) == ["+lr=0.5", "layers=8", "bs=16", "f=0.0", "mix=2.5", "opt=adam"]


def test_trial_overrides_parse_back_with_the_right_types() -> None:
    argv = ["--lr=1e-05", "--layers=3.0", "--bs=128.0", "--f=0.25", "--mix=2.5", "--opt='a b'"]
    parser = OverridesParser.create()
    values = [parser.parse_override(o).value() for o in trial_overrides(MAP, argv)]
    assert values == [1e-05, 3, 128, 0.25, 2.5, "a b"]
    assert [type(v) for v in values] == [float, int, int, float, float, str]


def test_a_categorical_flag_value_may_look_like_a_flag() -> None:
    pmap = parameter_map(parse_search_space(["v=choice('--x', '=y')"]))
    assert pmap == {"v": ("v", CATEGORICAL)}
    texts = parse_search_space(["v=choice('--x', '=y')"]).parameters[0].spec["categoricalValueSpec"]["values"]
    assert trial_overrides(pmap, ["--v", texts[0]]) == [f"v={texts[0]}"]
    assert trial_overrides(pmap, [f"--v={texts[1]}"]) == [f"v={texts[1]}"]


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--lr=0.5", "--layers=3.5", "--bs=16", "--f=0", "--mix=1", "--opt=adam"], "fractional"),
        (["--lr=abc", "--layers=3", "--bs=16", "--f=0", "--mix=1", "--opt=adam"], "number"),
        (["--lr=0.5", "--layers=3", "--bs=16", "--f=0", "--mix=1"], "no value for opt"),
        (["--lr=0.5", "--layers=3", "--bs=16", "--f=0", "--mix=1", "--opt=adam", "--other=1"], "not a flag"),
        (["--lr=0.5", "--lr=0.6", "--layers=3", "--bs=16", "--f=0", "--mix=1", "--opt=adam"], "twice"),
        (["--lr=0.5", "--layers=3", "--bs=16", "--f=0", "--mix=1", "--opt"], "no value"),
        (["stray", "--lr=0.5", "--layers=3", "--bs=16", "--f=0", "--mix=1", "--opt=adam"], "not a flag"),
    ],
)
def test_bad_trial_flags_fail_clearly(argv: Any, reason: str) -> None:
    with pytest.raises(TrialValueError, match=reason):
        trial_overrides(MAP, argv)


def test_values_from_the_api_become_paste_ready_overrides() -> None:
    values = {"lr": 0.001, "layers": 4.0, "bs": 32.0, "f": 0.75, "mix": 1.0, "opt": "'a b'"}
    assert overrides_from_values(MAP, values) == ["+lr=0.001", "layers=4", "bs=32", "f=0.75", "mix=1", "opt='a b'"]
    assert overrides_from_values(MAP, {"layers": 2.0}) == ["layers=2"]
    with pytest.raises(TrialValueError, match="not a parameter"):
        overrides_from_values(MAP, {"nope": 1.0})
    with pytest.raises(TrialValueError, match="must be a string"):
        overrides_from_values(MAP, {"opt": 1.0})


def test_parameter_map_is_json_simple() -> None:
    import json
    import pickle

    assert json.loads(json.dumps(MAP)) == {k: list(v) for k, v in MAP.items()}
    assert pickle.loads(pickle.dumps(MAP)) == MAP
