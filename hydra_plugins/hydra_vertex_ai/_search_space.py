"""Hydra sweep overrides <-> Vertex `StudySpec.ParameterSpec`s (REST/JSON shape) and trial flags.

Pure: hydra, omegaconf and the standard library only; no I/O, no SDK import.

Parameter ids. Vertex's only rules for `parameter_id` are "no whitespace" and "unique amongst all
ParameterSpecs". Hydra's key grammar admits only ASCII letters, digits and `_ - $ . / @ :`, so the id is
the override key itself without its `+`/`++` prefix (`model.lr`, `db@backup`), and uniqueness follows
from refusing duplicate keys. A key that ever broke the rule (not producible by Hydra 1.3's grammar) gets
its whitespace replaced and a hash of the full key appended, so ids stay deterministic and distinct.

Declared types (the payload's parameter map): DOUBLE, INTEGER, DISCRETE, CATEGORICAL, and DISCRETE_INT:
a DISCRETE parameter with int choices, whose integral values are cast back to int (`128.0` -> `128`).
"""
import hashlib
import logging
import math
import re
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
    Sweep,
    Transformer,
    ValueType,
)
from hydra.errors import CompactHydraException, HydraException

from ._errors import ConfigError
from ._vertex_facts import PARENT_CONDITIONS, in_value_spec, parent_value_matches, value_spec_kind
from .config import Algorithm

log = logging.getLogger(__name__)

DOUBLE, INTEGER, DISCRETE, CATEGORICAL = "DOUBLE", "INTEGER", "DISCRETE", "CATEGORICAL"
DISCRETE_INT = "DISCRETE_INT"
MAX_DISCRETE_VALUES = 1000
# Vertex returns every number as a double: ints beyond 2**53 would not come back exact.
_MAX_EXACT_INT = 2**53
_LINEAR, _LOG = "UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE"
_WHITESPACE = re.compile(r"\s+")


class SearchSpaceError(CompactHydraException):
    """A sweep Vertex cannot run; the message names the override."""

    _what = "Cannot sweep"

    def __init__(self, override: str, reason: str) -> None:
        super().__init__(f"{self._what} '{override}': {reason}")
        self.override = override


class TrialValueError(SearchSpaceError):
    """Trial flags or API values that do not match the study's parameter map; names the flag or value."""

    _what = "Bad trial value"


@dataclass(frozen=True)
class Parameter:
    parameter_id: str
    # The override key as the user wrote it, `+`/`++` prefix and `@package` included.
    key: str
    kind: str  # DOUBLE | INTEGER | DISCRETE | CATEGORICAL
    # DISCRETE with int choices: values come back as ints.
    integral: bool
    spec: Dict[str, Any]  # REST StudySpec.ParameterSpec
    # A conditional child: the parent's parameter id, and the parent values (as in its spec) that activate it.
    parent: Optional[str] = None
    parent_values: Tuple[Any, ...] = ()

    @property
    def declared_type(self) -> str:
        return DISCRETE_INT if self.integral else self.kind


@dataclass(frozen=True)
class SearchSpace:
    parameters: Tuple[Parameter, ...]
    # Plain overrides, passed to every trial unchanged.
    fixed: Tuple[str, ...]


ParameterMap = Mapping[str, Tuple[str, str]]
# child parameter id -> (parent parameter id, the parent's value spec kind, the parent values that activate it)
Conditions = Mapping[str, Tuple[str, str, List[Any]]]


def parameter_id_for(key: str) -> str:
    """The Vertex parameter id of a Hydra key (without `+`/`++` prefix); see the module docstring."""
    if key and not _WHITESPACE.search(key):
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"{_WHITESPACE.sub('_', key)}-{digest}"


def merge_params(params: Mapping[str, Any], cli: Sequence[str]) -> List[str]:
    """`hydra.sweeper.params` then the command line; a command-line override replaces a param of the same key."""
    parser = OverridesParser.create()
    from_cli = {_plain_key(_parse(parser, text)) for text in cli}
    merged = []
    for key, value in params.items():
        text = f"{key}={value if isinstance(value, str) else Transformer.str(value)}"
        if _plain_key(_parse(parser, text)) not in from_cli:
            merged.append(text)
    return merged + list(cli)


def parse_search_space(overrides: Sequence[str], algorithm: str = "bayesian") -> SearchSpace:
    """Sweep overrides -> ParameterSpecs, plain overrides -> fixed; raises SearchSpaceError before any submission.

    `algorithm` is the sweeper's (`grid` needs finite parameters)."""
    if algorithm not in [a.value for a in Algorithm]:
        raise ValueError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(a.value for a in Algorithm)}")
    parser = OverridesParser.create()
    seen: Dict[str, str] = {}
    parameters: List[Parameter] = []
    fixed: List[str] = []
    for text in overrides:
        override = _parse(parser, text)
        key = _plain_key(override)
        if key in seen:
            raise SearchSpaceError(text, f"'{key}' is already set by '{seen[key]}'")
        seen[key] = text
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        parameter = _parameter(parser, override, text)
        if algorithm == "grid" and parameter.kind == DOUBLE:
            raise SearchSpaceError(text, "grid search needs a finite set of values; use int(interval(...)), range() or choice()")
        parameters.append(parameter)
    return SearchSpace(tuple(parameters), tuple(fixed))


def parameter_map(space: SearchSpace) -> Dict[str, Tuple[str, str]]:
    """Parameter id -> (override key, declared type): what the trial container needs to rebuild overrides."""
    return {p.parameter_id: (p.key, p.declared_type) for p in space.parameters}


# --- conditional parameters (study.proto ParameterSpec.conditional_parameter_specs) ---------------------


def with_parent(space: SearchSpace, child_id: str, parent_id: str, values: Sequence[Any]) -> SearchSpace:
    """`child_id` becomes a conditional child of `parent_id`, active when the parent takes one of `values` (in the
    form of the parent's spec: category texts, DISCRETE doubles, INTEGER ints). Raises ValueError saying why not."""
    by_id = {p.parameter_id: p for p in space.parameters}
    parent = by_id[parent_id]
    _check_can_be_parent(parent)
    ancestor: Optional[str] = parent_id
    while ancestor is not None:
        if ancestor == child_id:
            raise ValueError(f"'{by_id[child_id].key}' cannot depend on itself through '{parent.key}'")
        ancestor = by_id[ancestor].parent
    if not values:
        raise ValueError("no parent value activates it")
    kind = value_spec_kind(parent.spec) or ""
    outside = [v for v in values if not in_value_spec(parent.spec, kind, v)]
    if outside:  # study.proto: "All values must exist in" the parent's value spec
        raise ValueError(f"{', '.join(map(str, outside))} not among the values of '{parent.key}'")
    child = replace(by_id[child_id], parent=parent_id, parent_values=tuple(values))
    return replace(space, parameters=tuple(child if p.parameter_id == child_id else p for p in space.parameters))


def apply_conditions(space: SearchSpace, conditions: Mapping[str, str], config_key: str) -> SearchSpace:
    """`hydra.sweeper.conditions`: {swept key: "parent=value" or "parent=choice(v1,v2)"}; refusals name the key."""
    parser = OverridesParser.create()
    by_id = {p.parameter_id: p for p in space.parameters}
    for key, text in conditions.items():
        where = f"{config_key}.{key}"
        child = by_id.get(parameter_id_for(key.lstrip("+")))
        if child is None:
            raise ConfigError(where, f"'{key}' is not a swept parameter; a condition applies to a swept key")
        try:
            override = _parse(parser, str(text))
        except SearchSpaceError as e:
            raise ConfigError(where, f"expected parent=value or parent=choice(...): {e}") from None
        parent = by_id.get(parameter_id_for(_plain_key(override)))
        if parent is None:
            raise ConfigError(where, f"the parent '{override.key_or_group}' is not a swept parameter")
        try:
            values = _condition_values(parser, parent, override, str(text))
            space = with_parent(space, child.parameter_id, parent.parameter_id, values)
        except (ValueError, SearchSpaceError) as e:
            raise ConfigError(where, str(e)) from None
    return space


def _check_can_be_parent(parent: Parameter) -> None:
    if parent.kind not in (CATEGORICAL, DISCRETE, INTEGER):  # study.proto: only these have a parent_value_condition
        raise ValueError(f"'{parent.key}' is {parent.kind}; a parent must be CATEGORICAL, DISCRETE or INTEGER")


def _condition_values(parser: OverridesParser, parent: Parameter, override: Override, text: str) -> List[Any]:
    _check_can_be_parent(parent)
    if override.value_type not in (ValueType.ELEMENT, ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP):
        raise ValueError("list the parent's values: parent=value or parent=choice(v1,v2)")
    value = override.value()
    elements: List[Any] = list(value.list) if isinstance(value, ChoiceSweep) else [value]
    if parent.kind == CATEGORICAL:
        return [_render_exact(parser, e, text) for e in elements]
    if not all(_is_number(e) for e in elements):
        raise ValueError(f"'{parent.key}' takes numbers, not {', '.join(map(str, elements))}")
    if parent.kind == DISCRETE:
        return [float(e) for e in elements]
    if not all(_integral(e) for e in elements):
        raise ValueError(f"'{parent.key}' is INTEGER; {', '.join(map(str, elements))} are not all integers")
    return [int(e) for e in elements]


def study_parameters(space: SearchSpace) -> List[Dict[str, Any]]:
    """StudySpec.parameters: the top-level specs, each child nested in its parent's `conditionalParameterSpecs`."""

    def spec_of(parameter: Parameter) -> Dict[str, Any]:
        spec = dict(parameter.spec)
        children = [c for c in space.parameters if c.parent == parameter.parameter_id]
        if children:
            condition = PARENT_CONDITIONS[value_spec_kind(spec) or ""]
            spec["conditionalParameterSpecs"] = [
                {condition: {"values": list(c.parent_values)}, "parameterSpec": spec_of(c)} for c in children
            ]
        return spec

    return [spec_of(p) for p in space.parameters if p.parent is None]


def conditions_of(space: SearchSpace) -> Dict[str, Tuple[str, str, List[Any]]]:
    """Child id -> (parent id, parent's value spec kind, activating values): what a trial needs to tell an
    inactive child (no flag, rightly) from a missing one."""
    by_id = {p.parameter_id: p for p in space.parameters}
    return {
        p.parameter_id: (p.parent, value_spec_kind(by_id[p.parent].spec) or "", list(p.parent_values))
        for p in space.parameters
        if p.parent is not None
    }


def is_active(conditions: Conditions, values: Mapping[str, Any], pid: str) -> bool:
    """Whether parameter `pid` is active given a trial's `values`: its parent (and theirs) active and matching."""
    if pid not in conditions:
        return True
    parent, kind, activating = conditions[pid]
    return (is_active(conditions, values, parent) and parent in values
            and parent_value_matches(kind, values[parent], activating))


def trial_overrides(parameters: ParameterMap, argv: Sequence[str], conditions: Optional[Conditions] = None) -> List[str]:
    """Vertex's trial flags (`--id=value` or `--id value`) -> overrides, in the parameter map's order.

    A conditional child whose parent does not take an activating value gets no flag, and no override."""
    conditions = conditions or {}
    values: Dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in parameters and not sep:
            if i + 1 >= len(args):
                raise TrialValueError(arg, "the flag has no value")
            value, i = args[i + 1], i + 1
        elif name not in parameters:  # kept strict: a flag we do not know would silently change nothing
            declared = " ".join(f"--{pid}" for pid in parameters)
            raise TrialValueError(arg, f"unexpected argument, not a flag of this study's declared parameters: {declared}")
        if name in values:
            raise TrialValueError(arg, "the parameter is given twice")
        values[name] = value
        i += 1
    missing = [pid for pid in parameters if pid not in values and is_active(conditions, values, pid)]
    if missing:
        raise TrialValueError(" ".join(argv), f"no value for {', '.join(missing)}")
    inactive = [pid for pid in values if not is_active(conditions, values, pid)]
    if inactive:  # Vertex sends only a trial's active parameters
        raise TrialValueError(" ".join(argv), f"{', '.join(inactive)} given, but inactive for its parent's value")
    return [_override(parameters[pid], values[pid], pid) for pid in parameters if pid in values]


def overrides_from_values(parameters: ParameterMap, values: Mapping[str, Any]) -> List[str]:
    """A trial's parameter values from the API (doubles, strings) -> paste-ready overrides, ints as ints.

    Ids absent from `values` are skipped (results reporting is best effort); unknown ids raise.
    """
    unknown = [pid for pid in values if pid not in parameters]
    if unknown:
        raise TrialValueError(", ".join(unknown), "not a parameter of this study")
    return [_override(parameters[pid], values[pid], pid) for pid in parameters if pid in values]


# --- parsing -------------------------------------------------------------------------------------------


def _parse(parser: OverridesParser, text: str) -> Override:
    try:
        return parser.parse_overrides([text])[0]
    except HydraException as e:
        raise SearchSpaceError(text, str(e)) from e


def _plain_key(override: Override) -> str:
    """The key without `+`/`++`/`~`: two overrides of one plain key set the same config node."""
    if override.package is None:
        return override.key_or_group
    return f"{override.key_or_group}@{override.package}"


def _parameter(parser: OverridesParser, override: Override, text: str) -> Parameter:
    if override.is_delete():
        raise SearchSpaceError(text, "a deletion cannot be swept")
    if override.value_type == ValueType.GLOB_CHOICE_SWEEP:
        raise SearchSpaceError(text, "glob() needs the config repository; list the choices with choice(...)")
    sweep = override.value()
    assert isinstance(sweep, Sweep), sweep
    unknown = sorted(sweep.tags - {"log"})
    if unknown:
        raise SearchSpaceError(text, f"unsupported tag(s) {', '.join(unknown)}; only tag(log, ...) sets a scale")
    key = override.get_key_element()
    pid = parameter_id_for(_plain_key(override))
    scale = _LOG if "log" in sweep.tags else _LINEAR
    if isinstance(sweep, IntervalSweep):
        return _interval(pid, key, sweep, scale, text)
    if isinstance(sweep, RangeSweep):
        values = _range_values(sweep, text)
        return _discrete_or_categorical(parser, pid, key, values, scale, text)
    assert isinstance(sweep, ChoiceSweep), sweep
    for element in sweep.list:
        if _holds_sweep(element):
            raise SearchSpaceError(text, "nested sweeps are not supported; use one flat choice(...)")
    return _discrete_or_categorical(parser, pid, key, list(sweep.list), scale, text)


def _holds_sweep(element: Any) -> bool:
    if isinstance(element, Sweep):
        return True
    if isinstance(element, list):
        return any(_holds_sweep(e) for e in element)
    if isinstance(element, dict):
        return any(_holds_sweep(e) for e in element.values())
    return False


def _interval(pid: str, key: str, sweep: IntervalSweep, scale: str, text: str) -> Parameter:
    low, high = sweep.start, sweep.end
    assert low is not None and high is not None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SearchSpaceError(text, "interval bounds must be finite")
    if low > high:
        raise SearchSpaceError(text, f"the lower bound {low} is above the upper bound {high}")
    if scale == _LOG and low <= 0:
        raise SearchSpaceError(text, "log scale needs bounds > 0")
    integer = isinstance(low, int) and isinstance(high, int)
    if integer and max(abs(low), abs(high)) > _MAX_EXACT_INT:
        raise SearchSpaceError(text, "INTEGER bounds must be within ±2**53: Vertex returns trial values as doubles")
    kind, field = (INTEGER, "integerValueSpec") if integer else (DOUBLE, "doubleValueSpec")
    spec = {"parameterId": pid, field: {"minValue": low, "maxValue": high}, "scaleType": scale}
    return Parameter(pid, key, kind, False, spec)


def _range_values(sweep: RangeSweep, text: str) -> List[Union[int, float]]:
    try:
        values = list(islice(iter(sweep.range()), MAX_DISCRETE_VALUES + 1))
    except (HydraException, ValueError) as e:  # a zero step
        raise SearchSpaceError(text, str(e)) from e
    if not values:
        raise SearchSpaceError(text, "the range yields no value")
    if len(values) > MAX_DISCRETE_VALUES:
        raise SearchSpaceError(text, f"more than {MAX_DISCRETE_VALUES} values; Vertex allows at most {MAX_DISCRETE_VALUES}")
    return values


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)  # bool is an int subclass but a categorical value here


def _discrete_or_categorical(
    parser: OverridesParser, pid: str, key: str, values: List[Any], scale: str, text: str
) -> Parameter:
    if values and all(_is_number(v) for v in values):
        problem = _inexact_as_double(values)
        if problem is None:
            return _discrete(pid, key, values, scale, text)
        log.warning("'%s': %s; sweeping it as CATEGORICAL so every value comes back exact", text, problem)
    if scale == _LOG:
        raise SearchSpaceError(text, "log scale applies to numbers; these choices are categorical")
    categories = list(dict.fromkeys(_render_exact(parser, v, text) for v in values))
    if len(categories) > MAX_DISCRETE_VALUES:  # the same cap as for DISCRETE values
        raise SearchSpaceError(text, f"{len(categories)} choices; Vertex allows at most {MAX_DISCRETE_VALUES}")
    spec = {"parameterId": pid, "categoricalValueSpec": {"values": categories}}
    return Parameter(pid, key, CATEGORICAL, False, spec)


def _inexact_as_double(values: List[Union[int, float]]) -> Optional[str]:
    """Why Vertex's doubles could not bring these numbers back with their value and type, if they could not."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return "inf and nan are not valid DISCRETE values"
    if any(isinstance(v, int) and abs(v) > _MAX_EXACT_INT for v in values):
        return "ints beyond 2**53 are not exact as doubles"
    has_int = any(isinstance(v, int) for v in values)
    if has_int and any(isinstance(v, float) and v.is_integer() for v in values):
        return "it mixes ints with integral floats, which come back indistinguishable"
    return None


def _discrete(pid: str, key: str, values: List[Union[int, float]], scale: str, text: str) -> Parameter:
    distinct = sorted(set(values))
    if len(distinct) > MAX_DISCRETE_VALUES:
        raise SearchSpaceError(text, f"{len(distinct)} values; Vertex allows at most {MAX_DISCRETE_VALUES}")
    if scale == _LOG and distinct[0] <= 0:
        raise SearchSpaceError(text, "log scale needs values > 0")
    integral = any(isinstance(v, int) for v in values)
    spec = {"parameterId": pid, "discreteValueSpec": {"values": [float(v) for v in distinct]}, "scaleType": scale}
    return Parameter(pid, key, DISCRETE, integral, spec)


# --- categorical values: Hydra override text that parses back to the same element -------------------


def _render_exact(parser: OverridesParser, element: Any, text: str) -> str:
    """The most readable override text that parses back to `element` (same types, same values)."""
    renderings: Iterable[Callable[[Any], str]] = (
        lambda e: _render(e, str),  # adam, hello world, ${a}
        Transformer.str,  # Hydra's own escaping: a\,b
        lambda e: _render(e, lambda s: QuotedString(text=s, quote=Quote.single).with_quotes()),  # '1', 'true'
    )
    reference = _plain(element)
    for render in renderings:
        candidate = render(element)
        try:
            parsed = parser.parse_rule(f"k={candidate}", "override")
        except HydraException:
            continue
        # value() is what the config receives (quoted strings become str); compare that, types included.
        if parsed.value_type == ValueType.ELEMENT and _same(parsed.value(), reference):
            return candidate
    raise SearchSpaceError(text, f"the choice {element!r} has no exact override text")


def _plain(element: Any) -> Any:
    """What the config receives for a parsed element: quoted strings become their text."""
    if isinstance(element, QuotedString):
        return element.text
    if isinstance(element, list):
        return [_plain(e) for e in element]
    if isinstance(element, dict):
        return {_plain(k): _plain(v) for k, v in element.items()}
    return element


def _render(element: Any, render_str: Callable[[str], str]) -> str:
    if isinstance(element, list):
        return "[" + ",".join(_render(e, render_str) for e in element) + "]"
    if isinstance(element, dict):
        items = (f"{Transformer.str(k)}:{_render(v, render_str)}" for k, v in element.items())
        return "{" + ",".join(items) + "}"
    if isinstance(element, str):
        return render_str(element)
    if isinstance(element, bool):
        return "true" if element else "false"  # Hydra writes True; the lowercase form reads the same
    return Transformer.str(element)


def _same(a: Any, b: Any) -> bool:
    """Equal with equal types all the way down (1 != 1.0 != True here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


# --- trial values -> overrides -------------------------------------------------------------------------


def _override(entry: Tuple[str, str], raw: Any, pid: str) -> str:
    key, declared = entry
    return f"{key}={_value_text(declared, raw, pid)}"


def _value_text(declared: str, raw: Any, pid: str) -> str:
    if declared == CATEGORICAL:
        if not isinstance(raw, str):
            raise TrialValueError(f"--{pid}={raw}", "a CATEGORICAL value must be a string")
        return raw  # already Hydra override text
    number = _number(raw, pid)
    if declared == INTEGER or (declared == DISCRETE_INT and _integral(number)):
        if not _integral(number):
            raise TrialValueError(f"--{pid}={raw}", "an INTEGER parameter got a fractional value")
        return str(int(number))
    if declared in (DOUBLE, DISCRETE, DISCRETE_INT):
        return repr(float(number))  # shortest text that reads back as the same double
    raise TrialValueError(f"--{pid}={raw}", f"unknown declared type {declared!r}")


def _number(raw: Any, pid: str) -> Union[int, float]:
    if _is_number(raw):
        return raw
    text = str(raw).strip()
    try:
        # An int literal is read exactly; anything else as the double Vertex sent.
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except ValueError:
        raise TrialValueError(f"--{pid}={raw}", "expected a number") from None


def _integral(number: Union[int, float]) -> bool:
    return isinstance(number, int) or number.is_integer()
