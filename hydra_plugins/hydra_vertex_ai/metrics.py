"""Report metrics to a Vertex AI hyperparameter tuning trial (Vizier) from user code.

    from hydra_plugins.hydra_vertex_ai.metrics import report_metric
    report_metric(val_acc, step=epoch)           # no-op outside a trial

    from hydra_plugins.hydra_vertex_ai.metrics import ReportMetricCallback   # PyTorch Lightning
    trainer = Trainer(callbacks=[ReportMetricCallback(monitor="val_acc")])

This module is the only place that talks to `cloudml-hypertune`, so the process has one `HyperTune` (it
rewrites the whole metric file on every report, keeping the last 100: two instances would erase each
other's measurements). Hydra's plugin scan imports this module in every app, so its top level imports only
the standard library; hypertune is imported on the first report inside a trial, and the Lightning callback
(which needs torch) only when it is asked for.
"""
from typing import Any

from ._metrics import METRIC_FILE_ENV, METRIC_ID_ENV, TRIAL_ID_ENV, in_trial, report_metric, study_metric_id

# ReportMetricCallback stays out of __all__: `import *` would otherwise import torch and Lightning.
__all__ = ["in_trial", "report_metric", "study_metric_id", "METRIC_ID_ENV", "TRIAL_ID_ENV", "METRIC_FILE_ENV"]


def __getattr__(name: str) -> Any:
    # PEP 562: the Lightning callback is imported (with torch) only when someone asks for it.
    if name == "ReportMetricCallback":
        from ._lightning import ReportMetricCallback

        return ReportMetricCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

