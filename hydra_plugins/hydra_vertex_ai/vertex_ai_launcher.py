"""`hydra/launcher=vertex_ai`: every Hydra job becomes a Vertex AI CustomJob.

Thin on purpose: Hydra imports this module at start-up in every app, so the work lives in `_launch`.
"""
import logging
from typing import Any, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class VertexAILauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        # The settings are read from hydra.launcher in launch(), as one typed VertexAILauncherConf.
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None
        # One id per sweep, shared by the batches a sweeper launches: it labels every job.
        self.sweep_id: Optional[str] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        from ._prewarm import for_backend  # light: starts a thread only for the vertex backend

        for_backend(config.hydra.launcher)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from ._launch import launch

        return launch(self, job_overrides, initial_job_idx)
