"""Composition shortcuts that change no result: our ConfigStore entries are built once per process."""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import pytest
from hydra import compose, initialize_config_dir

from hydra_plugins.hydra_vertex_ai import _lazy_store


@dataclass
class _Entry:
    a: int = 1
    b: str = "x"


def _compose(config_dir: Path, overrides: List[str]) -> Any:
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("config", overrides=overrides)


def test_lazy_entry_is_built_once_for_many_compositions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra deep-copies its ConfigStore before every composition; the entry must not be rebuilt in each copy,
    and no composition may change what the next one reads."""
    (tmp_path / "config.yaml").write_text("x: 1\n")
    builds: List[type] = []
    real_build = _lazy_store.build

    def counting_build(schema: type, open_dicts: Any = ()) -> Any:
        builds.append(schema)
        return real_build(schema, open_dicts)

    monkeypatch.setattr(_lazy_store, "build", counting_build)
    _lazy_store.store_lazily("test_lazy_once", "entry", _Entry)
    first = _compose(tmp_path, ["+test_lazy_once=entry", "test_lazy_once.a=5"])
    second = _compose(tmp_path, ["+test_lazy_once=entry"])
    third = _compose(tmp_path, ["+test_lazy_once=entry", "test_lazy_once.b=y"])
    assert builds == [_Entry]
    assert (first.test_lazy_once.a, second.test_lazy_once.a, third.test_lazy_once.a) == (5, 1, 1)
    assert (second.test_lazy_once.b, third.test_lazy_once.b) == ("x", "y")
