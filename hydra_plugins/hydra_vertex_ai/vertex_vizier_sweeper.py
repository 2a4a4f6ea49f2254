"""`hydra/sweeper=vertex_vizier`: a Hydra sweep becomes one Vertex AI HyperparameterTuningJob.

Thin on purpose: Hydra imports this module at start-up in every app, so the work lives in `_sweep`.
"""
from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class VertexVizierSweeper(Sweeper):
    def __init__(self, **params: Any) -> None:
        # The settings are read from hydra.sweeper in sweep(), as one typed VertexVizierSweeperConf.
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def sweep(self, arguments: List[str]) -> Any:
        from ._sweep import sweep

        return sweep(self, arguments)
