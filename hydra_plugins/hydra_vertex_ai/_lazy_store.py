"""ConfigStore entries built on first use, so plugin discovery stays cheap for apps that never use ours.

`ConfigStore.store()` turns a dataclass into a DictConfig at once; for our two configs that took about 40 ms,
paid at plugin discovery by every Hydra app of the environment even when it never selects them
(benchmarks/bench_startup.py). Hydra reads an entry through `ConfigStore.load()`, which shallow-copies the
stored ConfigNode and then reads its `.node`: so the node is built on that first read.

Hydra also deep-copies its whole ConfigStore before each composition (`CachingConfigRepository` copies the
repository, whose structured config source holds the store). A deep copy of an unbuilt entry would be built
again in every copy: 5.8 ms per composition, 3 s for a 500-job sweep. The entry is never changed once
built (every `load()` hands out a deep copy of its node), so its deep copies are the entry itself: built
once per process.
"""
from typing import Any, Callable, Dict, Sequence, Tuple

from hydra.core.config_store import ConfigNode, ConfigStore
from omegaconf import DictConfig, OmegaConf

PROVIDER = "hydra_vertex_ai"
# rewrites a freshly built node in place, e.g. defaults into interpolations (see _inherit, _optuna_port)
Prepare = Callable[[DictConfig], None]


class _LazyConfigNode(ConfigNode):
    """A ConfigStore entry whose DictConfig is built on first use."""

    def __init__(self, name: str, schema: type, group: str, provider: str, open_dicts: Tuple[str, ...] = (),
                 prepare: Sequence[Prepare] = ()) -> None:
        self.name, self.group, self.package, self.provider = name, group, None, provider
        self._schema, self._open_dicts, self._prepare = schema, open_dicts, prepare

    def __getattr__(self, attr: str) -> Any:  # only called while `node` is not built yet
        if attr != "node":
            raise AttributeError(attr)
        node = build(self._schema, self._open_dicts, self._prepare)
        self.node = node
        return node

    def __copy__(self) -> ConfigNode:  # build once here, not in every copy load() makes
        return ConfigNode(name=self.name, node=self.node, group=self.group, package=None, provider=self.provider)

    def __deepcopy__(self, memo: Dict[int, Any]) -> "_LazyConfigNode":  # shared: read only through load()
        return self


def build(schema: type, open_dicts: Sequence[str] = (), prepare: Sequence[Prepare] = ()) -> DictConfig:
    """The DictConfig of `schema`; the mappings at `open_dicts` accept new keys (no `+` on the command line)."""
    node: DictConfig = OmegaConf.structured(schema)
    for key in open_dicts:
        OmegaConf.set_struct(OmegaConf.select(node, key), False)
    for step in prepare:
        step(node)
    return node


def store_lazily(group: str, name: str, schema: type, open_dicts: Sequence[str] = (),
                 prepare: Sequence[Prepare] = ()) -> None:
    """Register `schema` as `group/name`, built when Hydra first loads it (eagerly if the store looks unfamiliar)."""
    store = ConfigStore.instance()
    store.store(group=group, name=name, node={}, provider=PROVIDER)  # creates the group's folders
    folder = store._open(group)
    if isinstance(folder, dict) and isinstance(folder.get(f"{name}.yaml"), ConfigNode):
        folder[f"{name}.yaml"] = _LazyConfigNode(f"{name}.yaml", schema, group, PROVIDER, tuple(open_dicts), tuple(prepare))
    else:  # a ConfigStore laid out differently from hydra-core 1.3's: store eagerly, as Hydra intends
        store.store(group=group, name=name, node=build(schema, open_dicts, prepare), provider=PROVIDER)
