"""Hydra's own launcher suites, run against `hydra/launcher=vertex_ai` on the local backend."""
import os
from pathlib import Path
from typing import List

from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from hydra.test_utils.test_utils import integration_test
from omegaconf import DictConfig, OmegaConf
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
class TestVertexAILauncherIntegration(IntegrationTestSuite):
    """Hydra's suite expects get_original_cwd() to name the launch dir on this machine; our jobs start in the
    snapshot's copy of it (README, "Shipping your code"), and the original cwd names that copy."""

    def test_get_orig_dir_multirun(self, tmpdir: Path, task_launcher_cfg: DictConfig, extra_flags: List[str]) -> None:
        integration_test(tmpdir=tmpdir, task_config=OmegaConf.create(), overrides=extra_flags,
                         prints="str(hydra.utils.get_original_cwd() == os.getcwd() != " + repr(os.path.realpath(tmpdir)) + ")",
                         expected_outputs="True")

    def test_to_absolute_path_multirun(self, tmpdir: Path, task_launcher_cfg: DictConfig,
                                       extra_flags: List[str]) -> None:
        overrides = extra_flags + ["hydra.job.chdir=True", f"hydra.sweep.dir={tmpdir / 'cli_dir'}",
                                   "hydra.sweep.subdir=cli_dir_${hydra.job.num}"]
        integration_test(tmpdir=tmpdir, task_config=OmegaConf.create(), overrides=overrides,
                         prints=["hydra.utils.to_absolute_path('/foo/bar')",
                                 "str(hydra.utils.to_absolute_path('foo/bar') == "
                                 "os.path.join(hydra.utils.get_original_cwd(), 'foo/bar'))", "os.getcwd()"],
                         expected_outputs=[str(Path("/foo/bar").absolute()), "True",
                                           str(Path(tmpdir) / "cli_dir" / "cli_dir_0")])


@mark.parametrize(
    "launcher_name, overrides",
    [("vertex_ai", ["hydra/sweeper=basic", "hydra.sweeper.max_batch_size=2"] + LOCAL)],
)
class TestVertexAILauncherWithBatchedSweeper(BatchedSweeperTestSuite):
    pass
