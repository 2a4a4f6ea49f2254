"""Hydra's own launcher suites, run against `hydra/launcher=vertex_ai` on the local backend."""
from pathlib import Path

from conftest import SnapshotCwdSuite
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from pytest import mark, param

from hydra_plugins.hydra_vertex_ai.vertex_ai_launcher import VertexAILauncher

# Two job processes at a time: the CI machine is small.
LOCAL = ["hydra.launcher.backend=local", "hydra.launcher.max_parallel=2"]


def test_discovery() -> None:
    assert VertexAILauncher.__name__ in [x.__name__ for x in Plugins.instance().discover(Launcher)]


@mark.parametrize("launcher_name, overrides", [("vertex_ai", LOCAL)])
class TestVertexAILauncher(LauncherTestSuite):
    pass


@mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        param(
            {},
            ["-m", "hydra/launcher=vertex_ai", "hydra/hydra_logging=disabled", "hydra/job_logging=disabled"]
            + LOCAL,
            id="vertex_ai_local",
        )
    ],
)
class TestVertexAILauncherIntegration(SnapshotCwdSuite, IntegrationTestSuite):
    def job_dir(self, tmpdir: Path) -> Path:
        return tmpdir / "cli_dir"  # the local backend writes the sweep dir in place


@mark.parametrize(
    "launcher_name, overrides",
    [("vertex_ai", ["hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2"] + LOCAL)],
)
class TestVertexAILauncherWithBatchedSweeper(BatchedSweeperTestSuite):
    pass
