"""Vertex's CLUSTER_SPEC -> the environment torch.distributed and PyTorch Lightning read (no torch import)."""
from typing import Dict, Mapping


def torch_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """Variables to add to this replica's environment; empty outside a multi-replica job."""
    return {}
