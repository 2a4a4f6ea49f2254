"""Conditional parameters inferred from config groups, as Vizier's `conditionalParameterSpecs`.

For `optimizer=choice(adam,sgd) optimizer.beta1=interval(0.8,0.99) optimizer.momentum=interval(0,0.99)` each
option of every swept config group is composed the way a trial composes it (the sweeper's config loader, with the
study's fixed overrides). A swept key held by only some options of a group becomes a child of that group's
parameter, active for those options; a key held by every option stays a plain parameter; a key held by no
composition is an error naming it. A swept group that exists only under some options of another group (a nested
group) is itself such a child, and so are its own children: children nest as deep as the groups do, which the
recursive ConditionalParameterSpec.parameter_spec of study.proto allows (no depth limit is documented).
"""
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from . import _search_space
from ._errors import ConfigError
from ._search_space import CATEGORICAL, Parameter, SearchSpace

log = logging.getLogger(__name__)

# A swept group with more options than this is not composed option by option (state its conditions instead).
MAX_GROUP_OPTIONS = 64

Compose = Callable[[List[str]], DictConfig]


def infer(
    space: SearchSpace,
    compose: Compose,
    is_group: Callable[[str], bool],
    explicit: Sequence[str],
    config_key: str,
) -> SearchSpace:
    """`space` with each swept key found in only some options of a swept config group made a child of that group's
    parameter. Keys in `explicit` (parameter ids with a stated condition) are left as they are."""
    groups = {p.parameter_id: _group_values(p) for p in space.parameters if _is_group_parameter(p, is_group)}
    groups = {pid: values for pid, values in groups.items() if values}
    if not groups:
        return space
    by_id = {p.parameter_id: p for p in space.parameters}
    present = _compose_options(space, groups, compose, config_key)
    parents: Dict[str, Optional[Tuple[str, List[Any]]]] = {}

    def parent_of(pid: str, visiting: Set[str]) -> Optional[Tuple[str, List[Any]]]:
        if pid not in parents:
            if pid in visiting:
                raise ConfigError(f"{config_key}.conditions", f"the config groups of '{by_id[pid].key}' nest in a "
                                                              "cycle; state its condition")
            parents[pid] = _parent(pid, by_id, groups, present, lambda p: parent_of(p, visiting | {pid}), config_key)
        return parents[pid]

    for parameter in space.parameters:
        if parameter.parameter_id in explicit or parameter.key.startswith("+"):  # an added key is in every option
            continue
        found = parent_of(parameter.parameter_id, set())
        if found is not None:
            parent_id, values = found
            log.info("'%s' is a conditional parameter: active when %s is %s", parameter.key, by_id[parent_id].key,
                     ", ".join(map(str, values)))
            try:
                space = _search_space.with_parent(space, parameter.parameter_id, parent_id, values)
            except ValueError as e:  # a stated condition runs the other way
                raise ConfigError(f"{config_key}.conditions", f"'{parameter.key}' depends on '{by_id[parent_id].key}' "
                                                              f"through its config groups, but: {e}") from None
    return space


def _is_group_parameter(parameter: Parameter, is_group: Callable[[str], bool]) -> bool:
    # Hydra composes a group option only from a string, so a swept group is CATEGORICAL (numbers: state conditions)
    if parameter.kind != CATEGORICAL or "@" in parameter.key:
        return False
    try:
        return is_group(parameter.key.lstrip("+"))
    except Exception:  # a key the config repository cannot look up is no group of it
        return False


def _group_values(parameter: Parameter) -> List[Any]:
    """The options of a swept group (its categorical values); [] when too many to compose one by one."""
    values = list(parameter.spec["categoricalValueSpec"]["values"])
    if len(values) > MAX_GROUP_OPTIONS:
        log.warning("'%s' has more than %d options: its conditional keys are not inferred; state them in "
                    "hydra.sweeper.conditions", parameter.key, MAX_GROUP_OPTIONS)
        return []
    return values


def _compose_options(
    space: SearchSpace, groups: Mapping[str, List[Any]], compose: Compose, config_key: str
) -> Dict[Tuple[str, Any], Set[str]]:
    """(group parameter id, value) -> the parameter ids present in that option's composed config.

    A nested group (one that exists under some options of another group only) cannot be composed on its own: it
    is composed with the first option of its enclosing group that holds it, once that group is composed."""
    parameter_map = _search_space.parameter_map(space)
    present: Dict[Tuple[str, Any], Set[str]] = {}
    context: Dict[str, List[str]] = {pid: [] for pid in groups}
    errors: Dict[str, Exception] = {}
    pending = list(groups)
    while pending:
        progressed = False
        for pid in list(pending):
            try:
                for value in groups[pid]:
                    option = _search_space.overrides_from_values(parameter_map, {pid: value})
                    config = compose(list(space.fixed) + context[pid] + option)
                    present[(pid, value)] = {p.parameter_id for p in space.parameters if _holds(config, p)}
            except Exception as e:  # a nested group, or a broken option: told apart below
                errors[pid] = e
                continue
            pending.remove(pid)
            progressed = True
        for pid in pending:  # a nested group is composed again within the first option that holds it
            enclosing = next(((g, v) for (g, v), ids in present.items() if pid in ids), None)
            if enclosing is not None and not context[pid]:
                context[pid] = context[enclosing[0]] + _search_space.overrides_from_values(parameter_map, {
                    enclosing[0]: enclosing[1]})
                progressed = True
        if not progressed:
            raise ConfigError(f"{config_key}.params",
                              f"the options of '{_key(space, pending[0])}' cannot be composed: {errors[pending[0]]}")
    return present


def _key(space: SearchSpace, pid: str) -> str:
    return next(p.key for p in space.parameters if p.parameter_id == pid)


def _parent(
    pid: str,
    by_id: Mapping[str, Parameter],
    groups: Mapping[str, List[Any]],
    present: Mapping[Tuple[str, Any], Set[str]],
    parent_of: Callable[[str], Optional[Tuple[str, List[Any]]]],
    config_key: str,
) -> Optional[Tuple[str, List[Any]]]:
    """The group parameter `pid` depends on and the options holding it; None when every option holds it."""
    holding = {g: [v for v in values if pid in present[(g, v)]] for g, values in groups.items() if g != pid}
    if not any(holding.values()) and pid not in groups:
        names = ", ".join(f"'{by_id[g].key}'" for g in groups)
        raise ConfigError(f"{config_key}.params", f"'{by_id[pid].key}' is in no option of {names}: no trial could "
                                                  "set it (a typo, or a key of an option not swept?)")
    candidates = [g for g, values in holding.items() if values and len(values) < len(groups[g])]
    # The innermost group wins: a key of a nested group's option is also missing from the enclosing group's other
    # options, and depends on the enclosing group through the nested one.
    innermost = [c for c in candidates if all(o == c or o in _ancestors(c, parent_of) for o in candidates)]
    if not candidates:
        return None
    if len(innermost) != 1:
        names = " and ".join(f"'{by_id[c].key}'" for c in candidates)
        raise ConfigError(f"{config_key}.conditions", f"'{by_id[pid].key}' depends on both {names}; state which "
                                                      f"one in hydra.sweeper.conditions")
    return innermost[0], holding[innermost[0]]


def _ancestors(pid: str, parent_of: Callable[[str], Optional[Tuple[str, List[Any]]]]) -> List[str]:
    chain = []
    found = parent_of(pid)
    while found is not None:
        chain.append(found[0])
        found = parent_of(found[0])
    return chain


def _holds(config: DictConfig, parameter: Parameter) -> bool:
    """Whether a composed config has the parameter: a config group among its choices, or the key's node
    (a `???` value counts: the key is there to be set)."""
    key = parameter.key.lstrip("+")
    choices = config.hydra.runtime.choices
    if key in choices:
        return choices[key] is not None
    path, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, path, throw_on_missing=False, throw_on_resolution_failure=False) if path else config
    if isinstance(node, DictConfig):
        return leaf in node.keys()
    return isinstance(node, ListConfig) and leaf.isdigit() and int(leaf) < len(node)
