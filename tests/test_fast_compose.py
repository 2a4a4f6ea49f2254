"""Composition shortcuts that change no result: our ConfigStore entries are built once per process, a sweep's
jobs of one shape are derived from one composition, and so are a local study's trials."""
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest
from hydra import compose, initialize_config_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai import _lazy_store
from hydra_plugins.hydra_vertex_ai._compose_cache import SweepComposer


@dataclass
class _Entry:
    a: int = 1
    b: str = "x"


@pytest.fixture(scope="module", autouse=True)
def _hydra_singletons_restored() -> Iterator[None]:
    """initialize_config_dir sets Hydra's process-wide version base (and so hydra.job.chdir's default): restore
    every Hydra singleton after this module, or later apps in this process compose differently."""
    from hydra.core.singleton import Singleton

    state = Singleton.get_state()
    yield
    Singleton.set_state(state)


def _compose(config_dir: Path, overrides: List[str]) -> Any:
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("config", overrides=overrides)


def test_lazy_entry_is_built_once_for_many_compositions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra deep-copies its ConfigStore before every composition; the entry must not be rebuilt in each copy,
    and no composition may change what the next one reads."""
    (tmp_path / "config.yaml").write_text("x: 1\n")
    builds: List[type] = []
    real_build = _lazy_store.build

    def counting_build(schema: type, open_dicts: Any = (), prepare: Any = ()) -> Any:
        builds.append(schema)
        return real_build(schema, open_dicts, prepare)

    monkeypatch.setattr(_lazy_store, "build", counting_build)
    _lazy_store.store_lazily("test_lazy_once", "entry", _Entry)
    first = _compose(tmp_path, ["+test_lazy_once=entry", "test_lazy_once.a=5"])
    second = _compose(tmp_path, ["+test_lazy_once=entry"])
    third = _compose(tmp_path, ["+test_lazy_once=entry", "test_lazy_once.b=y"])
    assert builds == [_Entry]
    assert (first.test_lazy_once.a, second.test_lazy_once.a, third.test_lazy_once.a) == (5, 1, 1)
    assert (second.test_lazy_once.b, third.test_lazy_once.b) == ("x", "y")


# --- the composition shortcut: byte-identical to Hydra's own composition --------------------------------------

CONFIGS = {
    "config.yaml": """\
        defaults:
          - db: mysql
          - server@srv: apache
          - optional extra: null
          - _self_
        port: 8080
        name: app
        flag: false
        ratio: 0.5
        url: ${db.host}:${port}
        twice: ${times2:${port}}
        nested:
          a: 1
          b: two
        to_delete: 3
        """,
    "db/mysql.yaml": "host: mysql.local\nuser: root\n",
    "db/postgres.yaml": "host: pg.local\nuser: admin\npool: 5\n",
    "server/apache.yaml": "port: 80\nthreads: 4\n",
    "server/nginx.yaml": "port: 81\nworkers: 2\n",
    "extra/on.yaml": "enabled: true\nlevel: ${port}\n",
    "opt/on.yaml": "# @package _global_\nopt_enabled: true\n",
}

# (override prefix and key, value texts); a sweep picks some slots, each job one value per slot
_TEXT = st.sampled_from(["abc", "'a b'", "'1'", "x-y_z", "\"q,uoted\"", "${port}", "${name}_2", "null", "''", "é"])
SLOTS = {
    "port": st.one_of(st.integers(-5, 70000).map(str), _TEXT),
    "name": _TEXT,
    "flag": st.sampled_from(["true", "false", "True", "1", "yes"]),
    "ratio": st.one_of(st.floats(-1e6, 1e6, allow_nan=False).map(repr), st.sampled_from(["1e-3", "inf", "-0.0"])),
    "nested.a": st.one_of(st.integers(-3, 3).map(str), _TEXT),
    "nested.b": _TEXT,
    "db": st.sampled_from(["mysql", "postgres"]),
    "db.user": _TEXT,
    "srv.port": st.integers(1, 99).map(str),
    "server@srv": st.sampled_from(["apache", "nginx"]),
    "extra": st.sampled_from(["on", "null"]),
    "+opt": st.just("on"),
    "+new_key": st.integers(0, 3).map(str),
    "++name": _TEXT,
    "~to_delete": st.sampled_from(["", "3", "4"]),
    "nested": st.sampled_from(["{a: 5, b: six}", "[1,2]"]),
    "missing_key": st.just("1"),
}


@st.composite
def sweeps(draw: Any) -> List[List[str]]:
    slots = draw(st.lists(st.sampled_from(sorted(SLOTS)), min_size=1, max_size=5, unique=True))
    jobs = draw(st.integers(1, 5))
    sweep = []
    for _ in range(jobs):
        job = []
        for slot in slots:
            value = draw(SLOTS[slot])
            job.append(slot if slot.startswith("~") and not value else f"{slot}={value}")
        sweep.append(job)
    return sweep


@pytest.fixture(scope="module")
def hydra_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Any]]:
    """Hydra initialised on CONFIGS as for a multirun: (its config loader, the sweep's master config)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    root = tmp_path_factory.mktemp("configs")
    for name, text in CONFIGS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    if not OmegaConf.has_resolver("times2"):
        OmegaConf.register_new_resolver("times2", lambda x: 2 * x)
    with initialize_config_dir(config_dir=str(root), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        yield hydra.config_loader, hydra.compose_config("config", [], run_mode=RunMode.MULTIRUN)


def _outcome(compose: Callable[[List[str]], Any], overrides: List[str]) -> str:
    try:
        return OmegaConf.to_yaml(compose(overrides))
    except Exception as e:
        return f"error {type(e).__name__}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sweep=sweeps())
def test_memoized_composition_is_byte_identical_to_hydras(hydra_app: Tuple[Any, Any], sweep: List[List[str]]) -> None:
    loader, master = hydra_app
    composer = SweepComposer(loader, master)
    for overrides in sweep:
        expected = _outcome(lambda o: loader.load_sweep_config(master, o), overrides)
        assert _outcome(composer.compose, overrides) == expected, overrides


def test_a_sweep_of_plain_values_is_composed_once_per_shape(hydra_app: Tuple[Any, Any]) -> None:
    """The shortcut is taken: Hydra composes the first job of each shape and one more to check the derivation."""
    loader, master = hydra_app
    composer = SweepComposer(loader, master)
    sweep = [[f"port={p}", f"name=n{p}", f"db={db}"] for db in ("mysql", "postgres") for p in range(10)]
    configs = [composer.compose(o) for o in sweep]
    assert (composer.composed, composer.derived) == (4, 16)
    assert [OmegaConf.to_yaml(c) for c in configs] == [OmegaConf.to_yaml(loader.load_sweep_config(master, o))
                                                       for o in sweep]
    assert configs[15].url == "pg.local:5" and configs[15].hydra.job.override_dirname == "db=postgres,name=n5,port=5"


TRIAL_APP = Path(__file__).parent / "apps" / "trial_template" / "app.py"


def _trial_files(sweep: Path) -> Dict[str, str]:
    """Every trial's .hydra files, with what differs between two runs of one study by design masked: the sweep
    dir, the sweep id in the job id, and the warm start setting itself."""
    import re

    files = {}
    for path in sorted(sweep.glob("*/.hydra/*.yaml")):
        text = path.read_text().replace(str(sweep), "SWEEP")
        text = re.sub(r"id: \S+-study-(\d+)", r"id: STUDY-\1", text)
        files[str(path.relative_to(sweep))] = re.sub(r"local_warm_start[:=] ?(true|false)", "WARM", text)
    return files


def _templates_shipped(sweep: Path) -> List[Any]:
    from hydra_plugins.hydra_vertex_ai import _payload

    [payload] = list(sweep.glob(".vertex_ai/*/study/payload.pkl"))
    return list(_payload.loads(payload.read_bytes()).trial_templates)


def test_trials_derive_their_configs_exactly_as_hydra_composes_them(tmp_path: Path) -> None:
    """With local warm start the sweeper ships the trial shapes it verified (`_compose_cache`), and trials derive
    their configs from them instead of composing: every file Hydra writes for every trial is the one Hydra's own
    composition gives (local_warm_start=false: each trial composes). The study varies a plain value, a plain
    choice and a config group (two shapes), with a fixed `+key`, interpolations, a script's resolver, and an
    env_copy of a variable whose value differs in every trial from the launching process's."""
    args = ["-m", "hydra/sweeper=vertex_vizier", "hydra.sweeper.backend=local", "hydra.sweeper.algorithm=grid",
            "hydra.sweeper.max_trial_count=12", "hydra.sweeper.parallel_trial_count=2",
            f"hydra.sweeper.snapshot.root={TRIAL_APP.parent}", "hydra.job.env_copy=[CLOUD_ML_TRIAL_ID]", "+extra=1",
            "n=3", "lr=choice(0.001,0.01,0.1)", "model=choice(small,large)", "opt=choice(adam,sgd)"]
    files = {}
    for warm in ("true", "false"):
        sweep = tmp_path / warm
        done = subprocess.run(
            [sys.executable, str(TRIAL_APP), *args, f"hydra.sweep.dir={sweep}", f"hydra.sweeper.local_warm_start={warm}"],
            cwd=TRIAL_APP.parent, capture_output=True, text=True, timeout=300,
            env={**os.environ, "CLOUD_ML_TRIAL_ID": "launcher"})
        assert done.returncode == 0, done.stderr[-3000:]
        files[warm] = _trial_files(sweep)
    shipped = _templates_shipped(tmp_path / "true")
    assert len(shipped) == 2, "both shapes (model=small, model=large) verified and shipped"
    assert _templates_shipped(tmp_path / "false") == []
    assert len(files["true"]) == 12 * 3
    assert files["true"] == files["false"]
    hydra_yaml = files["true"]["4/.hydra/hydra.yaml"]
    assert "env_set:\n      CLOUD_ML_TRIAL_ID: '5'\n" in hydra_yaml  # the trial's own environment, not the launcher's
