"""Trains a one-layer regression with Lightning DDP on gloo, then proves every replica shared one process group.

Every replica returns its rank, the world size, the sum of rank+1 over the group (an all_reduce) and how far
the replicas' weights differ after training (DDP keeps them equal although each replica saw different
batches); only the chief's return comes back.
"""
import os
import time
from pathlib import Path
from typing import Any, Dict, Tuple

import hydra
import lightning as L
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch.utils.data import DataLoader, TensorDataset


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _group_spread(values: torch.Tensor) -> float:
    """Largest difference of `values` between any two members of the process group."""
    high, low = values.clone(), values.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def _wait_for_chief_result(limit_s: float = 60.0) -> None:
    """Block until the chief has written the job's result (local backend: staging is under the sweep dir)."""
    staging = Path(HydraConfig.get().sweep.dir) / ".vertex_ai"
    deadline = time.monotonic() + limit_s
    while not any(staging.glob("*/jobs/*/result.pkl")) and time.monotonic() < deadline:
        time.sleep(0.1)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Dict[str, Any]:
    torch.manual_seed(0)
    x = torch.randn(cfg.samples, 4)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=cfg.batch_size)
    exported = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "NODE_RANK", "LOCAL_RANK")}
    trainer = L.Trainer(**cfg.trainer)
    model = Regression()
    trainer.fit(model, data)

    ranks = torch.tensor([trainer.global_rank + 1.0])
    dist.all_reduce(ranks)  # over the process group Lightning set up from the exported variables
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    result = {
        "global_rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "rank_sum": int(ranks.item()),
        "weight_spread": _group_spread(weights),
        "global_step": trainer.global_step,
        "env": exported,
    }
    print(f"ddp_app: rank {trainer.global_rank} of {trainer.world_size} done", flush=True)
    if cfg.fail_rank == trainer.global_rank:  # after the last collective: the others finish normally
        if trainer.global_rank != 0:
            _wait_for_chief_result()  # the chief completes first: the job must fail all the same
        raise RuntimeError(f"ddp_app: rank {trainer.global_rank} fails on purpose")
    return result


if __name__ == "__main__":
    main()
