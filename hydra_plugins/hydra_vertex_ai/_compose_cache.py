"""The jobs of a sweep composed as Hydra's `load_sweep_config` composes them, most of them without composing.

Composing one job's config takes Hydra 40-50 ms (defaults tree, config files, merges); a 500-job sweep spent
30 s there. Most sweeps vary plain values (`lr=0.1,0.01`, `seed=1,2,3`): two jobs whose overrides differ only
in such values have the same defaults tree, the same files and the same merges, and differ in exactly what
Hydra's last step, `_apply_overrides_to_config`, writes: those keys (`OmegaConf.update(cfg, key, value,
merge=True)`), `hydra.overrides.task` and `hydra.job.override_dirname`. So a job is derived from a composed
job of the same shape by redoing that step for the values that differ.

A value counts as plain only where Hydra itself treated it as a value: a `key=value` override (no `+`, `~`,
`++`, `@package`, no sweep, not `hydra.*`) whose key is no config group choice and names a leaf of the
composed config, with a scalar value. Anything else is part of the shape, and a new shape is composed by
Hydra. The first job derived for each shape is also composed by Hydra and compared (YAML, byte for byte); on
any difference, or any error while deriving, that shape is always composed by Hydra from then on.

What Hydra's composition takes from where it runs rather than from files and overrides (the working dir, the
config sources, `hydra.job.env_copy`'s values, Hydra's version and version base) is taken again for a job
derived from a template composed in another process; the master's resolver cache is copied for every derived
job, as `load_sweep_config` copies it. That is what lets a study's trials derive their configs from the shapes
the sweeper verified (`TrialTemplate`): a trial runs in its own environment, from the shipped source's config
files, which hold what the sweeper's did.
"""
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class TrialTemplate:
    """A verified shape, shipped to a study's trials: the override lines it was composed with, which of them are
    plain values, and the composed config, pickled."""

    lines: Tuple[str, ...]
    plain: Tuple[int, ...]
    template: bytes


@dataclass
class _Shape:
    """A composed job, the template of every job of its shape."""

    parsed: List[Any]
    template: Optional[bytes]  # the composed config, pickled: unpickling copies it 3x faster than deepcopy
    plain: List[int]  # indexes of the overrides that are plain values
    broken: bool = False
    verified: bool = False


class SweepComposer:
    """`compose(overrides)` == `config_loader.load_sweep_config(master_config, overrides)`, memoized by shape."""

    def __init__(self, config_loader: Any, master_config: DictConfig, elsewhere: bool = False) -> None:
        self.loader, self.master = config_loader, master_config
        # deriving from templates composed in another process (a trial's): see _take_runtime
        self.elsewhere = elsewhere
        self.hydra_overrides: List[str] = list(OmegaConf.to_container(master_config.hydra.overrides.hydra))  # type: ignore[arg-type]
        self.plain_of: Dict[Tuple[Any, ...], List[int]] = {}  # look-alike overrides -> which are plain values
        self.shapes: Dict[Tuple[Any, ...], _Shape] = {}
        self.composed = self.derived = 0  # how many jobs Hydra composed, how many were derived
        # each override line parsed once: the sweep's hydra.* overrides come with every job (parsing them
        # again per job was half the launcher's CPU at 500 jobs); an Override is only read once parsed
        self._parsed: Dict[str, Any] = {}

    @classmethod
    def with_templates(cls, config_loader: Any, master_config: DictConfig,
                       templates: Sequence[TrialTemplate]) -> "SweepComposer":
        """A composer that derives jobs of the shapes another composer verified (the sweeper's, for a trial)."""
        composer = cls(config_loader, master_config, elsewhere=True)
        for shipped in templates:
            try:
                parsed = composer._parse(list(shipped.lines))
            except Exception:  # not parseable here: jobs of this shape are composed by Hydra
                continue
            plain = list(shipped.plain)
            composer.plain_of[_rough_key(parsed)] = plain
            composer.shapes[_key(parsed, plain)] = _Shape(parsed, shipped.template, plain, verified=True)
        return composer

    def templates(self) -> List[TrialTemplate]:
        """The shapes whose derived job Hydra's composition has confirmed, for trials to derive from."""
        return [TrialTemplate(tuple(o.input_line for o in shape.parsed), tuple(shape.plain), shape.template)
                for shape in self.shapes.values() if shape.verified and not shape.broken and shape.template]

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        try:
            parsed = self._parse(self.hydra_overrides + list(overrides))
        except Exception:  # Hydra's own composition says what is wrong with them
            return self._full(overrides)
        plain = self.plain_of.get(_rough_key(parsed))
        shape = None if plain is None else self.shapes.get(_key(parsed, plain))
        if shape is None or shape.broken:
            return self._remember(overrides, parsed, plain)
        derived = self._derive(shape, parsed)
        if shape.verified and derived is not None:
            self.derived += 1
            return derived
        config = self._full(overrides)
        shape.verified = derived is not None and OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(config)
        shape.broken = not shape.verified
        if shape.broken:
            log.debug("composition shortcut off for overrides like %s: derived config differs", list(overrides))
        return config

    def _parse(self, lines: List[str]) -> List[Any]:
        new = [line for line in dict.fromkeys(lines) if line not in self._parsed]
        if new:
            self._parsed.update(zip(new, _parse(new)))
        return [self._parsed[line] for line in lines]

    def _full(self, overrides: Sequence[str]) -> DictConfig:
        self.composed += 1
        config: DictConfig = self.loader.load_sweep_config(self.master, list(overrides))
        return config

    def _remember(self, overrides: Sequence[str], parsed: List[Any], plain: Optional[List[int]]) -> DictConfig:
        """Compose with Hydra; a new shape's config becomes its template. Which overrides are plain values is
        settled by the first composition of overrides that look alike: a template that disagrees is not used."""
        config = self._full(overrides)
        found = _plain_positions(parsed, config)
        if plain is None:
            plain = self.plain_of[_rough_key(parsed)] = found
        key = _key(parsed, plain)
        if key not in self.shapes:
            template = _pickled(config)
            self.shapes[key] = _Shape(parsed, template, plain, broken=found != plain or template is None)
        return config

    def _derive(self, shape: _Shape, parsed: List[Any]) -> Optional[DictConfig]:
        """Hydra's last composition step redone on a copy of the template for the values that differ."""
        try:
            assert shape.template is not None
            config: DictConfig = pickle.loads(shape.template)
            for i in shape.plain:
                if parsed[i].input_line != shape.parsed[i].input_line:
                    OmegaConf.update(config, parsed[i].key_or_group, parsed[i].value(), merge=True)
            app = [o for o in parsed if not o.is_hydra_override()]
            task = config.hydra.overrides.task
            for i, override in enumerate(app):
                if task[i] != override.input_line:
                    task[i] = override.input_line
            dirname = config.hydra.job.config.override_dirname
            with open_dict(config.hydra):
                config.hydra.job.override_dirname = _overrides_dirname(
                    app, exclude_keys=list(dirname.exclude_keys), item_sep=dirname.item_sep, kv_sep=dirname.kv_sep)
            if self.elsewhere:  # in the process that composed the template, they are the template's (2 ms a job)
                self._take_runtime(config)
            OmegaConf.copy_cache(from_config=self.master, to_config=config)  # as load_sweep_config does, as of now
            return config
        except Exception:  # Hydra's composition raises the error the user should see
            return None


    def _take_runtime(self, config: DictConfig) -> None:
        """What Hydra's composition (`_load_configuration_impl`) takes from the process it runs in, taken from
        this one, as Hydra takes it."""
        from hydra import __version__, version
        from hydra.conf import ConfigSourceInfo

        with open_dict(config.hydra):
            for key in config.hydra.job.env_copy:
                config.hydra.job.env_set[key] = os.environ[key]
        config.hydra.runtime.version = __version__
        config.hydra.runtime.version_base = version.getbase()
        config.hydra.runtime.cwd = os.getcwd()
        config.hydra.runtime.config_sources = [ConfigSourceInfo(path=x.path, schema=x.scheme(), provider=x.provider)
                                               for x in self.loader.get_sources()]


def _pickled(config: DictConfig) -> Optional[bytes]:
    try:
        return pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # a value that does not pickle: this shape is always composed by Hydra
        return None


def _parse(overrides: List[str]) -> List[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return list(OverridesParser.create().parse_overrides(overrides=overrides))


def _overrides_dirname(overrides: List[Any], **kwargs: Any) -> str:
    from hydra._internal.config_loader_impl import get_overrides_dirname

    return str(get_overrides_dirname(overrides=overrides, **kwargs))


def _is_plain(override: Any) -> bool:
    """Syntactically a plain value: `key=scalar`, no prefix, no package, no sweep, not Hydra's own."""
    from hydra.core.override_parser.types import OverrideType

    return (override.type == OverrideType.CHANGE and override.package is None and not override.is_hydra_override()
            and not override.is_sweep_override() and isinstance(override.value(), _SCALARS))


def _plain_positions(parsed: List[Any], config: DictConfig) -> List[int]:
    """The overrides Hydra applied as plain values to this composed config: a leaf there, no group choice."""
    choices = config.hydra.runtime.choices
    plain = []
    for i, override in enumerate(parsed):
        if not _is_plain(override) or override.key_or_group in choices:
            continue
        try:
            node = OmegaConf.select(config, override.key_or_group, default=KeyError, throw_on_missing=False)
        except Exception:  # e.g. an interpolation that cannot be resolved here: not shown to be a leaf
            continue
        if node is KeyError or isinstance(node, (DictConfig, ListConfig)):
            continue
        plain.append(i)
    return plain


def _rough_key(parsed: List[Any]) -> Tuple[Any, ...]:
    """The shape as the syntax alone shows it: every override but plain-looking values, which may vary."""
    return tuple((o.key_or_group, "*") if _is_plain(o) else o.input_line for o in parsed)


def _key(parsed: List[Any], plain: List[int]) -> Tuple[Any, ...]:
    """The shape given which overrides the template's composition showed to be plain values."""
    return tuple(o.key_or_group if i in plain else o.input_line for i, o in enumerate(parsed))
