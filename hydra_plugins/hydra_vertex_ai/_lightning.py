"""The PyTorch Lightning callback of `metrics`; imported only when `metrics.ReportMetricCallback` is used."""
import logging
import sys
from typing import Any, Optional

from . import _metrics as metrics

log = logging.getLogger(__name__)


def _callback_base() -> Any:
    """Lightning's Callback class, from the package the user's Trainer comes from.

    A Trainer only accepts callbacks of its own package, so an app that imported only the older
    `pytorch_lightning` gets that one even when `lightning` is installed too.
    """
    if "pytorch_lightning" not in sys.modules or "lightning" in sys.modules:
        try:
            from lightning import pytorch

            return pytorch.Callback
        except ImportError:
            pass
    import pytorch_lightning

    return pytorch_lightning.Callback


_Callback: Any = _callback_base()


class ReportMetricCallback(_Callback):
    """Reports a logged metric to the Vertex AI trial after every validation run, for early stopping.

    `monitor` is a key of `trainer.callback_metrics` (what `self.log(...)` recorded, e.g. "val_acc");
    `metric_id` defaults to the study's metric id. The step is `trainer.global_step`. Outside a trial,
    during the sanity check, and on ranks other than 0 it reports nothing.
    """

    def __init__(self, monitor: str, metric_id: Optional[str] = None) -> None:
        super().__init__()
        self.monitor = monitor
        self.metric_id = metric_id
        self._warned_missing = False

    # on_validation_end, like ModelCheckpoint and EarlyStopping: by then callback_metrics also holds what
    # the LightningModule logged in its own on_validation_epoch_end (which runs after the callbacks' hook).
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # Rank 0 only: every DDP process of a replica would rewrite the same metric file.
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            self._warn_missing(trainer)
            return
        metrics.report_metric(value, step=int(trainer.global_step), metric_id=self.metric_id)

    def _warn_missing(self, trainer: Any) -> None:
        if not self._warned_missing:
            self._warned_missing = True
            log.warning(
                "ReportMetricCallback: %r was not logged; logged metrics: %s",
                self.monitor, sorted(trainer.callback_metrics),
            )
