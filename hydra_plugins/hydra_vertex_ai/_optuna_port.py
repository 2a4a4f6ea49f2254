"""Hydra's Optuna sweeper keys, read by vertex_vizier: a ported config changes only its two sweeper lines.

`direction`, `n_trials`, `n_jobs` and `sampler` become `goal`, `max_trial_count`, `parallel_trial_count` and
`algorithm` unless those are set themselves (the Vizier key wins, and a line says so). As in _inherit, "not set"
survives composition as an interpolation: the registered node holds `${hydra_vertex_ai.optuna:goal}` in place
of goal's default, and any value the user gives replaces it. `storage` and `study_name` are noted as not needed,
`custom_search_space` and a list of directions (a multi-objective study) are refused, naming the key.

Imported by config.py at plugin discovery: standard library and omegaconf only at top level.
"""
import logging
from typing import Any, Callable, Dict, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RESOLVER = "hydra_vertex_ai.optuna"
# Optuna's sampler classes, by class name -> our algorithm; TPE and Optuna's default (no sampler) are Vizier's default
SAMPLERS = {"TPESampler": "bayesian", "RandomSampler": "random", "GridSampler": "grid"}
DIRECTIONS = ("minimize", "maximize")
# keys of the Optuna sampler config that the port uses
SAMPLER_USED = ("_target_", "seed")
NOT_NEEDED = ("storage", "study_name")


def _goal(direction: Any) -> Optional[str]:
    return direction.lower() if isinstance(direction, str) and direction.lower() in DIRECTIONS else None


def _count(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, int) else None


def _algorithm(sampler: Any) -> Optional[str]:
    return SAMPLERS.get(sampler_class(sampler), "bayesian")


def _failed_trials(rate: Any, node: DictConfig) -> Optional[int]:
    """Optuna stops a sweep once its failed trials exceed `max_failure_rate` of those run; Vizier once
    `max_failed_trial_count` trials have failed: the first count above that rate of the whole study."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        return None
    return int(rate * int(node.max_trial_count)) + 1


# Vizier key -> (the Optuna key it is read from while unset, its translation from the value and the sweeper
# node; None: leave the default)
FROM_OPTUNA: Dict[str, Tuple[str, Callable[[Any, DictConfig], Optional[Any]]]] = {
    "goal": ("direction", lambda value, _: _goal(value)),
    "max_trial_count": ("n_trials", lambda value, _: _count(value)),
    "parallel_trial_count": ("n_jobs", lambda value, _: _count(value)),
    "algorithm": ("sampler", lambda value, _: _algorithm(value)),
    "max_failed_trial_count": ("max_failure_rate", _failed_trials),
}


# hydra-optuna-sweeper's `hydra/sweeper/sampler` options (Hydra's own Optuna example selects one with
# `override hydra/sweeper/sampler: tpe`) -> the Optuna class each names
SAMPLER_OPTIONS = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler", "cmaes": "CmaEsSampler",
                   "nsgaii": "NSGAIISampler", "motpe": "MOTPESampler", "qmc": "QMCSampler"}
SAMPLER_GROUP = "hydra/sweeper/sampler"


def register() -> None:
    """What the registered sweeper node refers to, registered at plugin discovery by config.py: the resolver,
    and the sampler options a ported config may select (unless hydra-optuna-sweeper registered its own)."""
    from hydra.core.config_store import ConfigStore

    OmegaConf.register_new_resolver(RESOLVER, from_optuna, replace=True)
    store = ConfigStore.instance()
    if store.repo.get("hydra", {}).get("sweeper", {}).get("sampler"):
        return
    for name, cls in SAMPLER_OPTIONS.items():
        store.store(group=SAMPLER_GROUP, name=name, node={"_target_": f"optuna.samplers.{cls}", "seed": None},
                    provider="hydra_vertex_ai")


def read_optuna_keys(node: DictConfig) -> None:
    """Make the Vizier keys of a freshly built sweeper node read their Optuna keys while unset (a `prepare` step)."""
    for key in FROM_OPTUNA:
        node[key] = f"${{{RESOLVER}:{key}}}"


def from_optuna(key: str, *, _parent_: DictConfig) -> Any:
    """The resolver: the Vizier setting KEY from its Optuna key, or its default when that is unset or unusable."""
    optuna_key, translate = FROM_OPTUNA[key]
    value = _parent_.get(optuna_key)
    translated = translate(value, _parent_) if value is not None else None
    if translated is not None:
        return translated
    from .config import VertexVizierSweeperConf

    return getattr(VertexVizierSweeperConf, key)


def sampler_class(sampler: Any) -> str:
    """The class name an Optuna sampler config's `_target_` names ('' for none)."""
    target = sampler.get("_target_") if hasattr(sampler, "get") else None
    return str(target).rsplit(".", 1)[-1] if target else ""


def check(node: DictConfig, key: str) -> None:
    """Refuse what cannot port and say, one line each, what a ported config's keys do not do; before any staging."""
    from ._errors import ConfigError

    if node.get("custom_search_space") is not None:
        raise ConfigError(f"{key}.custom_search_space", "a Python function defining the search space has no Vizier "
                          "equivalent: write the space in params (conditional spaces included)")
    direction = node.get("direction")
    if direction is not None and _goal(direction) is None:
        why = ("a list of directions is a multi-objective study; vertex_vizier tunes one metric"
               if OmegaConf.is_list(direction) else f"got {direction!r}")
        raise ConfigError(f"{key}.direction", f"{why}: give minimize or maximize")
    for vizier, (optuna_key, _) in FROM_OPTUNA.items():
        if node.get(optuna_key) is not None and not OmegaConf.is_interpolation(node, vizier):
            log.info("%s.%s wins over the Optuna key %s.%s", key, vizier, key, optuna_key)
    noted = [f"{key}.{k}" for k in NOT_NEEDED if node.get(k) is not None]
    if noted:
        log.info("%s: not needed, ignored: the study lives in Vertex AI (or in the sweep dir on the local backend); "
                 "hydra.sweeper.resume reattaches to it", ", ".join(noted))
    sampler = node.get("sampler")
    if sampler is None:
        return
    name = sampler_class(sampler)
    if name not in SAMPLERS:
        log.info("%s.sampler: %s has no Vizier counterpart; Vizier's default algorithm runs", key,
                 name or "no _target_")
    unused = [str(k) for k in sampler if k not in SAMPLER_USED]
    if unused:
        log.info("%s.sampler: unused by Vizier: %s", key, ", ".join(unused))


def seed(node: DictConfig) -> Optional[int]:
    """The Optuna sampler's seed: it seeds the local study engine (a Vertex study has no seed)."""
    sampler = node.get("sampler")
    value = sampler.get("seed") if sampler is not None else None
    return int(value) if value is not None else None
