"""One place for where jobs run: with `hydra/launcher=vertex_ai` selected, the sweeper's trials take its settings.

The rule: each inherited key of `hydra.sweeper` that the user did not set reads the same key of
`hydra.launcher` when that launcher is ours, else the sweeper's own default; a key set under `hydra.sweeper`
(config file or command line) wins. "Not set" has to survive Hydra's composition, which merges config files and
overrides onto the registered node: so the registered sweeper node holds, in place of each inherited default,
an interpolation `${hydra_vertex_ai.launcher:KEY}`, which any value the user sets replaces. `--cfg hydra
--resolve` shows the values the trials get. Mappings (`job.env`, `job.labels`) merge key by key instead: an
interpolation there would let `hydra.sweeper.job.env.NAME=value` write into the launcher's mapping.

Imported by config.py at plugin discovery: standard library and omegaconf only at top level.
"""
import logging
from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Tuple, cast

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

RESOLVER = "hydra_vertex_ai.launcher"
# What the sweeper takes from hydra/launcher=vertex_ai: where trials run, what they run on and see, and how we talk
# to that service; all of VertexBackendConf but dry_run and max_parallel (the study has parallel_trial_count).
INHERITED = ("backend", "project", "location", "api_endpoint", "staging_dir", "job", "snapshot",
             "local_env_passthrough", "local_warm_start", "poll_interval_s", "create_rate_per_minute", "retry_initial_s",
             "retry_timeout_s", "sync_outputs", "sync_outputs_max_mb", "sync_outputs_include",
             "sync_outputs_exclude")
# merged key by key: the launcher's entries, then the sweeper's (which win)
MERGED = ("job.env", "job.labels")
_UNSET = object()


def register() -> None:
    """The resolver the registered sweeper node refers to; config.py registers it at plugin discovery."""
    OmegaConf.register_new_resolver(RESOLVER, from_launcher, replace=True)


def inherit_from_launcher(node: DictConfig) -> None:
    """Turn the inherited defaults of a freshly built sweeper node into launcher interpolations (a `prepare`
    step of _lazy_store)."""
    raw = OmegaConf.to_container(node, resolve=False)
    assert isinstance(raw, dict)
    for key, default in _leaves({k: raw[k] for k in INHERITED}):
        # a default that is itself an interpolation (staging_dir) travels as the resolver's second argument
        extra = f",'{default}'" if isinstance(default, str) and "${" in default else ""
        OmegaConf.update(node, key, f"${{{RESOLVER}:{key}{extra}}}", merge=False)


def _leaves(raw: Mapping[str, Any], prefix: str = "") -> List[Tuple[str, Any]]:
    """(dotted key, default) of the values inherited whole: scalars and lists, inside the nested settings
    (job, job.scheduling, snapshot), except the MERGED mappings."""
    found: List[Tuple[str, Any]] = []
    for key, value in raw.items():
        full = prefix + str(key)
        if full in MERGED:
            continue
        if isinstance(value, dict):
            found += _leaves(value, full + ".")
        else:
            found.append((full, value))
    return found


def from_launcher(key: str, default: Any = _UNSET, *, _root_: DictConfig) -> Any:
    """The resolver: hydra.launcher's KEY when hydra/launcher=vertex_ai is selected, else the sweeper's default."""
    if launcher_selected(_root_):
        return OmegaConf.select(_root_, f"hydra.launcher.{key}")
    if default is not _UNSET:
        return default
    value = OmegaConf.select(_defaults(), key)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def launcher_selected(root: DictConfig) -> bool:
    from .config import VertexAILauncherConf

    return OmegaConf.select(root, "hydra.launcher._target_", default=None) == VertexAILauncherConf._target_


@lru_cache(maxsize=1)
def _defaults() -> DictConfig:
    from .config import VertexBackendConf

    return OmegaConf.structured(VertexBackendConf)


def merged_mappings(config: DictConfig, sweeper: Any) -> None:
    """`job.env` and `job.labels` of the typed sweeper conf: the launcher's entries, then the sweeper's."""
    if not launcher_selected(config):
        return
    for key in MERGED:
        inherited = OmegaConf.select(config, f"hydra.launcher.{key}", default=None)
        name = key.split(".")[1]
        if inherited:
            theirs = cast(Dict[str, str], OmegaConf.to_container(inherited, resolve=True))
            setattr(sweeper.job, name, {**theirs, **getattr(sweeper.job, name)})


def differs_line(config: DictConfig, sweeper: Any) -> Optional[str]:
    """One line when the trials run on another backend or machine than the selected vertex_ai launcher says."""
    if not launcher_selected(config):
        return None
    launcher = config.hydra.launcher
    theirs = (_value(launcher.backend), machine(launcher.job))
    ours = (_value(sweeper.backend), machine(sweeper.job))
    if ours == theirs:
        return None
    return (f"The sweeper's trials run on the {ours[0]} backend, {ours[1]}, not as hydra.launcher says "
            f"({theirs[0]} backend, {theirs[1]}): hydra.sweeper sets its own")


def _value(choice: Any) -> str:
    return str(getattr(choice, "value", choice))  # an Enum member, typed or from a DictConfig


def machine(job: Any) -> str:
    """A job spec's chief machine in words, e.g. 'g2-standard-8 with 1 x NVIDIA_L4' (typed conf or DictConfig)."""
    text = str(job.machine_type)
    if job.accelerator_type:
        text += f" with {job.accelerator_count} x {job.accelerator_type}"
    if int(job.replica_count) > 1 or len(job.worker_pools):
        text += f", {int(job.replica_count)} replica(s) and {len(job.worker_pools)} more pool(s)"
    return text
