"""Property-based: override -> Vertex flag -> override is exact, and quote_value round-trips any text.

"Exact" means the value Hydra parses from the trial's override has the same type and value (recursively)
as the value it parsed from the user's sweep override.
"""
import math
from typing import Any, List, Tuple

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.grammar.utils import escape_special_characters
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Quote, QuotedString
from hydra.errors import HydraException
from hypothesis import HealthCheck, assume, example, given, reject, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai._overrides import escape_interpolations, quote_value
from hydra_plugins.hydra_vertex_ai._search_space import (
    CATEGORICAL,
    SearchSpaceError,
    overrides_from_values,
    parameter_map,
    parse_search_space,
    trial_overrides,
)

PARSER = OverridesParser.create()
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that stress both grammars, mixed with arbitrary unicode.
TRICKY = " ,'\"\\$${}[]()=:\t\n@%*|~#é中😀"
texts = st.text(alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=("Cs",))), max_size=12)


def canonical(value: Any) -> Any:
    """A hashable form that tells types apart all the way down (1, 1.0 and True differ)."""
    if isinstance(value, list):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def parsed_value(override: str) -> Any:
    return PARSER.parse_override(override).value()


# --- element override texts a user may type ---------------------------------------------------------------

floats = st.floats(allow_nan=False, allow_infinity=False).map(lambda f: f + 0.0)  # no -0.0: Vertex keeps one zero
ints = st.integers(min_value=-(2**53), max_value=2**53)
float_texts = st.one_of(
    floats.map(repr),
    floats.map(lambda f: f"{f:e}"),
    floats.map(lambda f: f"{f:.3E}"),
    st.integers(-99, 99).map(lambda e: f"1e{e}"),
)
int_texts = st.one_of(ints.map(str), st.integers(1000, 99_999).map(lambda i: f"{i:_}"))
quoted_texts = st.one_of(
    st.builds(lambda t, q: QuotedString(text=t, quote=q).with_quotes(), texts, st.sampled_from(Quote)),
    texts.map(quote_value),
)
primitive_texts = st.one_of(
    quoted_texts,
    int_texts,
    float_texts,
    st.sampled_from(["null", "NULL", "true", "false", "True", "FALSE", "inf", "-inf", "nan"]),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,6}( [a-z]{1,3})?", fullmatch=True),  # adam, foo bar, null-ish ids
    st.from_regex(r"\$\{[a-z]{1,4}(\.[a-z]{1,3})?\}", fullmatch=True),  # ${model.lr}
    st.text(alphabet="ab ,=()[]{}:\\", min_size=1, max_size=6).map(escape_special_characters),
)
element_texts = st.one_of(
    primitive_texts,
    st.lists(primitive_texts, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True), primitive_texts, max_size=2).map(
        lambda d: "{" + ",".join(f"{k}:{v}" for k, v in d.items()) + "}"
    ),
)


def sweep_override(key: str, elements: List[str], explicit: bool) -> Tuple[str, List[Any]]:
    """`key=choice(...)` or `key=a,b`, and the values Hydra parses for each choice (rejected if not Hydra)."""
    body = f"choice({','.join(elements)})" if explicit else ",".join(elements)
    override = f"{key}={body}"
    try:
        sweep = PARSER.parse_override(override).value()
    except HydraException:
        assume(False)  # e.g. null is not an allowed argument of choice() in Hydra 1.3
        raise
    return override, [Override._convert_value(e) for e in sweep.list]  # type: ignore[union-attr]


def vertex_flag_values(spec: dict) -> List[str]:
    """What Vertex passes for each value of the spec: categories verbatim, numbers as doubles."""
    if "categoricalValueSpec" in spec:
        return list(spec["categoricalValueSpec"]["values"])
    return [repr(float(v)) for v in spec["discreteValueSpec"]["values"]]


KEYS = st.sampled_from(["x", "+model.opt", "++a.b_c", "db@pkg"])


@SETTINGS
@given(key=KEYS, elements=st.lists(element_texts, min_size=2, max_size=4), explicit=st.booleans())
@example(key="x", elements=["'a b'", '"c,d"', "'it\\'s'"], explicit=False)
@example(key="x", elements=["null", "true", "-1.5e-3", "7", "'${a}'", "${a}", "'[1]'", "[1,'x y']"], explicit=False)
@example(key="x", elements=["1.0", "2"], explicit=True)
@example(key="x", elements=["'trailing\\\\'", "'中文 😀'", "'\\\\\\''"], explicit=True)
def test_choice_round_trips_through_vertex_flags(key: str, elements: List[str], explicit: bool) -> None:
    check_choice_round_trip(key, elements, explicit)


@SETTINGS
@given(key=KEYS, elements=st.lists(st.one_of(int_texts, float_texts), min_size=2, max_size=6), explicit=st.booleans())
@example(key="x", elements=["1", "2.5", "-3"], explicit=True)
@example(key="x", elements=["128", "16", "1e-05", "-2.5E+3"], explicit=False)
def test_numeric_choice_round_trips_through_vertex_flags(key: str, elements: List[str], explicit: bool) -> None:
    check_choice_round_trip(key, elements, explicit)


def check_choice_round_trip(key: str, elements: List[str], explicit: bool) -> None:
    override, originals = sweep_override(key, elements, explicit)
    try:
        space = parse_search_space([override])
    except SearchSpaceError as e:
        if "closer than Vertex allows" in str(e):  # DISCRETE values under 1e-10 apart: refused, as Vertex does
            reject()
        raise
    (parameter,) = space.parameters
    pmap = parameter_map(space)
    back = []
    for value in vertex_flag_values(parameter.spec):
        (trial,) = trial_overrides(pmap, [f"--{parameter.parameter_id}={value}"])
        assert trial.startswith(f"{key}=")
        back.append(parsed_value(trial))
        # The space form of the flag and the API's values give the same override.
        assert trial_overrides(pmap, [f"--{parameter.parameter_id}", value]) == [trial]
        api_value = value if parameter.kind == CATEGORICAL else float(value)
        assert overrides_from_values(pmap, {parameter.parameter_id: api_value}) == [trial]
    assert {canonical(v) for v in back} == {canonical(v) for v in originals}


@SETTINGS
@given(
    bounds=st.tuples(floats, floats).map(sorted),
    fraction=st.floats(0, 1),
    style=st.sampled_from(["{!r}", "{:.17e}", "{:.17g}"]),
)
def test_double_round_trips(bounds: List[float], fraction: float, style: str) -> None:
    low, high = bounds
    assume(math.isfinite(high - low) and low < high)  # interval(a,a) is empty: refused, as Vertex does
    override = f"lr=interval({low!r},{high!r})"
    pmap = parameter_map(parse_search_space([override]))
    value = min(max(low + (high - low) * fraction, low), high)
    (trial,) = trial_overrides(pmap, [f"--lr={style.format(value)}"])
    parsed = parsed_value(trial)
    assert type(parsed) is float and parsed == value
    assert overrides_from_values(pmap, {"lr": value}) == [trial]


@SETTINGS
@given(bounds=st.tuples(ints, ints).map(sorted), fraction=st.floats(0, 1), log=st.booleans())
def test_integer_round_trips(bounds: List[int], fraction: float, log: bool) -> None:
    low, high = bounds
    if log:  # log scale needs bounds >= 1
        low, high = max(low, 1), max(high, 1)
    assume(low < high)  # int(interval(a,a)) is empty: refused, as Vertex does
    sweep = f"int(interval({low},{high}))"
    pmap = parameter_map(parse_search_space([f"+n={f'tag(log,{sweep})' if log else sweep}"]))
    value = low + round((high - low) * fraction)
    (trial,) = trial_overrides(pmap, [f"--n={float(value)!r}"])  # Vertex sends 3.0
    parsed = parsed_value(trial)
    assert trial.startswith("+n=") and type(parsed) is int and parsed == value


@SETTINGS
@given(
    start=st.integers(-50, 50),
    count=st.integers(1, 30),
    step=st.sampled_from(["1", "3", "-2", "0.1", "0.25", "-0.5", "1e-2"]),
)
def test_range_round_trips_exactly_hydras_values(start: int, count: int, step: str) -> None:
    stop = start + count * float(step) if "." in step or "e" in step else start + count * int(step)
    override = f"r=range({start},{stop},{step})"
    expected = list(PARSER.parse_override(override).sweep_iterator())
    assume(expected)
    space = parse_search_space([override])
    pmap = parameter_map(space)
    back = [parsed_value(trial_overrides(pmap, [f"--r={v}"])[0]) for v in vertex_flag_values(space.parameters[0].spec)]
    assert sorted(canonical(v) for v in back) == sorted(canonical(v) for v in expected)


# --- quote_value -------------------------------------------------------------------------------------------


def config_value(override: str, existing: bool) -> Any:
    """The value Hydra's config loader puts in a config for `override`, resolved by OmegaConf."""
    cfg = OmegaConf.create({"k": "old", "other": "OTHER"} if existing else {"other": "OTHER"})
    ConfigLoaderImpl._apply_overrides_to_config([PARSER.parse_override(override)], cfg)
    return cfg.k


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(texts, st.text()), existing=st.booleans())
@example(text="", existing=False)
@example(text="null", existing=True)
@example(text="true", existing=False)
@example(text="1e3", existing=False)
@example(text="-5", existing=True)
@example(text="a\\", existing=False)
@example(text="\\\\'\"", existing=False)
@example(text="${other}", existing=False)
@example(text="\\${other}", existing=True)
@example(text="x=${oc.env:HOME}, [y]", existing=False)
def test_quote_value_round_trips_any_text(text: str, existing: bool) -> None:
    quoted = quote_value(text)
    override = f"{'k' if existing else '+k'}={quoted}"
    parsed = PARSER.parse_override(override)
    # A plain (quoted) string; `${` comes back escaped for OmegaConf and nothing else changes.
    assert parsed.value() == escape_interpolations(text)
    assert parsed.get_value_element_as_str() == quoted
    # Through the config loader and OmegaConf resolution: exactly the text, never an interpolation.
    assert config_value(override, existing) == text


def test_quote_value_keeps_simple_text_readable() -> None:
    assert quote_value("adam") == "'adam'"
    assert quote_value("it's") == '"it\'s"'
    assert quote_value("") == "''"
    assert quote_value("${x}") == "'\\${x}'"
