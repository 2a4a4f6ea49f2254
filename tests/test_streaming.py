"""Compose, stage and create as a stream (issue 24): the first job is created while later jobs are still being
composed; a job is created only once its payload is staged; a job that cannot be prepared stops the sweep with
nothing of it left running."""
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Sequence

import cloudpickle
import pytest
from conftest import VERTEX_LOCAL, VERTEX_OVERRIDES, emulator_backend, launch_in_process, trivial_job, wait_for
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.hydra_vertex_ai import _prewarm
from hydra_plugins.hydra_vertex_ai._backends.base import JobFeed
from hydra_plugins.hydra_vertex_ai._backends.processes import recorded_pids
from hydra_plugins.hydra_vertex_ai._compose_cache import SweepComposer
from hydra_plugins.hydra_vertex_ai._pids import pid_alive
from hydra_plugins.hydra_vertex_ai._vertex_facts import SUCCEEDED, TERMINAL_STATES
from hydra_plugins.hydra_vertex_ai.config import BackendKind, VertexAILauncherConf

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the jobs import nothing from tests/


def times_ten(cfg: DictConfig) -> int:
    return int(cfg.tag) * 10


def sleepy(cfg: DictConfig) -> int:
    time.sleep(300)  # still running when the sweep stops
    return 0


def _created(emulator: Any, sweep_id: str) -> List[str]:
    """The hydra_job numbers of the sweep's CustomJobs that exist, in creation order."""
    return [j["labels"]["hydra_job"] for j in emulator.jobs() if j.get("labels", {}).get("hydra_sweep") == sweep_id]


def test_the_vertex_backend_creates_a_job_only_once_the_feed_has_it(vertex_emulator: Any) -> None:
    sweep_id = "feed-gate"
    backend = emulator_backend(sweep_id)
    feed = JobFeed(3)
    outcomes: List[Any] = []
    jobs = [trivial_job(sweep_id, i, "pass") for i in range(3)]
    runner = threading.Thread(target=lambda: outcomes.extend(backend.run_jobs(jobs, None, feed)))
    runner.start()
    try:
        time.sleep(1.0)  # five poll intervals with nothing staged: nothing may exist
        assert _created(vertex_emulator, sweep_id) == []
        feed.advance(1)
        wait_for(lambda: _created(vertex_emulator, sweep_id) == ["0"], 30, "job 0 to be created")
        time.sleep(0.6)
        assert _created(vertex_emulator, sweep_id) == ["0"]  # job 1 is not staged yet
    finally:
        feed.advance(3)
        runner.join(120)
    assert sorted(_created(vertex_emulator, sweep_id)) == ["0", "1", "2"]
    assert [o.state for o in outcomes] == [SUCCEEDED] * 3


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_the_first_job_is_created_while_later_ones_are_composed(
    vertex_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Composing the last job waits until the first job exists: before streaming, every job was composed before
    any was created, so this launch could only time out."""
    compose = SweepComposer.compose

    def compose_after_first_create(self: SweepComposer, overrides: Sequence[str]) -> DictConfig:
        if "tag=5" in overrides:
            wait_for(lambda: any(j["displayName"] == "streamed-0" for j in vertex_emulator.jobs()), 60,
                     "job 0 to exist before job 5 is composed")
        return compose(self, overrides)

    monkeypatch.setattr(SweepComposer, "compose", compose_after_first_create)
    overrides = ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES, "hydra.job.name=streamed",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.launcher.max_parallel=2"]
    rets = launch_in_process(times_ten, [[f"tag={i}"] for i in range(6)], overrides)
    assert [r.return_value for r in rets] == [0, 10, 20, 30, 40, 50]
    mine = [j for j in vertex_emulator.jobs() if j["displayName"].startswith("streamed-")]
    assert sorted(j["displayName"] for j in mine) == [f"streamed-{i}" for i in range(6)]  # each once


@pytest.mark.usefixtures("hydra_restore_singletons")
@pytest.mark.parametrize("backend", ["vertex", "local"])
def test_a_job_that_cannot_be_composed_stops_the_sweep_with_nothing_left_running(
    backend: str, vertex_emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Job #3's override names no key: Hydra's error is raised; jobs created before it end (cancelled when
    still running), and neither it nor a later job is ever created."""
    compose = SweepComposer.compose
    composed: List[str] = []

    def slow_after_the_first(self: SweepComposer, overrides: Sequence[str]) -> DictConfig:
        composed.append(" ".join(overrides))
        if len(composed) > 1:
            time.sleep(0.5)  # the first jobs are created and run while later ones are composed
        return compose(self, overrides)

    monkeypatch.setattr(SweepComposer, "compose", slow_after_the_first)
    settings = [*VERTEX_OVERRIDES, "hydra.launcher.max_parallel=2"] if backend == "vertex" else VERTEX_LOCAL[1:]
    name = f"broken-{backend}"
    overrides = ["hydra/launcher=vertex_ai", *settings, f"hydra.job.name={name}",
                 f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    jobs = [["tag=0"], ["tag=1"], ["tag=2"], ["tag=3", "no_such_key=1"], ["tag=4"]]
    with pytest.raises(ConfigCompositionException, match="no_such_key"):
        launch_in_process(sleepy, jobs, overrides)
    assert not any("tag=4" in line for line in composed)  # preparing stopped at the broken job
    staging = tmp_path / "sweep" / ".vertex_ai"
    if backend == "vertex":
        mine = [j for j in vertex_emulator.jobs() if j["displayName"].startswith(f"{name}-")]
        assert {j["labels"]["hydra_job"] for j in mine} <= {"0", "1", "2"}
        wait_for(lambda: all(j["state"] in TERMINAL_STATES for j in vertex_emulator.jobs()
                             if j["displayName"].startswith(f"{name}-")), 60, "the created jobs to end")
    else:
        sweep = next(staging.glob(f"{name}-*"))
        assert not (sweep / "jobs" / "3" / "job.json").exists() and not (sweep / "jobs" / "4" / "job.json").exists()
        started = [pid for job in (sweep / "jobs").iterdir() for pid in recorded_pids(job).values()]
        assert started  # the first jobs ran while the broken one was composed
        # and were stopped (a process may take a moment to exit after the launcher has returned)
        wait_for(lambda: not any(pid_alive(*pid) for pid in started), 30, "the started jobs' processes to end")


@pytest.mark.parametrize("backend, dry_run, imports", [
    (BackendKind.vertex, False, True), (BackendKind.local, False, False), (BackendKind.vertex, True, False)])
def test_the_vertex_clients_are_imported_ahead_only_for_a_vertex_launch(
    backend: BackendKind, dry_run: bool, imports: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher's setup (before Hydra composes the batch) starts importing the clients launch() will use."""
    started: List[Sequence[str]] = []
    monkeypatch.setattr(_prewarm, "import_in_background", started.append)
    _prewarm.for_backend(OmegaConf.structured(VertexAILauncherConf(backend=backend, dry_run=dry_run)))
    assert started == ([_prewarm.VERTEX_CLIENT_MODULES] if imports else [])
