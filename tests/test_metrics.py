"""`metrics`: report_metric through the real cloudml-hypertune, and the Lightning callback on a tiny model."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from hydra_plugins.hydra_vertex_ai import _metrics, metrics


def read_measurements(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def outside_trial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in (metrics.TRIAL_ID_ENV, metrics.METRIC_ID_ENV):
        monkeypatch.delenv(var, raising=False)
    metric_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv(metrics.METRIC_FILE_ENV, str(metric_file))
    return metric_file


@pytest.fixture
def trial(outside_trial: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment the entry module runs a trial in: trial id, study metric id, metric file."""
    monkeypatch.setenv(metrics.TRIAL_ID_ENV, "7")
    monkeypatch.setenv(metrics.METRIC_ID_ENV, "accuracy")
    return outside_trial


def test_noop_outside_a_trial(outside_trial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not metrics.in_trial()
    monkeypatch.setenv(metrics.METRIC_ID_ENV, "accuracy")
    assert metrics.report_metric(0.5, step=1) is False
    assert metrics.report_metric(0.5, metric_id="accuracy") is False
    assert not outside_trial.exists()


def test_noop_in_a_trial_without_a_metric_id(outside_trial: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.TRIAL_ID_ENV, "3")
    assert metrics.in_trial()
    assert metrics.report_metric(0.5) is False
    assert not outside_trial.exists()


def test_reports_under_the_study_metric_id(trial: Path) -> None:
    assert metrics.report_metric(0.25, step=10) is True
    assert metrics.report_metric(0.75, step=20) is True
    rows = read_measurements(trial)
    assert [(r["accuracy"], r["global_step"], r["trial"]) for r in rows] == [("0.25", "10", "7"), ("0.75", "20", "7")]


def test_without_a_step_the_last_step_is_kept(trial: Path) -> None:
    """The entry module reports the final objective without a step: it must not go back to step 0."""
    metrics.report_metric(0.5)
    metrics.report_metric(0.6, step=46)
    metrics.report_metric(0.7)
    assert [(r["accuracy"], r["global_step"]) for r in read_measurements(trial)] == [
        ("0.5", "0"), ("0.6", "46"), ("0.7", "46")
    ]


def test_explicit_metric_id_and_numeric_like_values(trial: Path) -> None:
    class Scalar:  # stands for a one-element tensor: anything float() accepts
        def __float__(self) -> float:
            return 0.5

    assert metrics.report_metric(Scalar(), step=2, metric_id="loss") is True  # type: ignore[arg-type]
    assert metrics.report_metric(3) is True
    rows = read_measurements(trial)
    assert rows[0]["loss"] == "0.5" and rows[0]["global_step"] == "2"
    assert rows[1]["accuracy"] == "3.0" and "loss" not in rows[1]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "high", None])
def test_refuses_values_that_are_not_finite_numbers(
    trial: Path, bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert metrics.report_metric(bad, step=1) is False
    assert not trial.exists()
    assert "not a finite number" in caplog.text


def test_one_hypertune_per_metric_file(trial: Path) -> None:
    metrics.report_metric(0.1)
    first = _metrics._instance()
    metrics.report_metric(0.2)
    assert _metrics._instance() is first
    # hypertune keeps the last 100 measurements of its own queue: a second instance would have dropped 0.1
    assert [r["accuracy"] for r in read_measurements(trial)] == ["0.1", "0.2"]


def test_import_and_plugin_scan_stay_light() -> None:
    """Hydra imports `metrics` in every app: it must not pull in torch, Lightning or even hypertune."""
    code = (
        "import json, sys\n"
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.launcher import Launcher\n"
        "Plugins.instance().discover(Launcher)\n"
        "import hydra_plugins.hydra_vertex_ai.metrics as m\n"
        "assert 'hydra_plugins.hydra_vertex_ai.metrics' in sys.modules\n"
        "m.report_metric(0.5)\n"  # outside a trial
        "dir(m)\n"
        "heavy = ('torch', 'lightning', 'pytorch_lightning', 'hypertune')\n"
        "print(json.dumps(sorted(k for k in heavy if k in sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != metrics.TRIAL_ID_ENV}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        metrics.NoSuchThing  # noqa: B018


# --- the Lightning callback ------------------------------------------------------------------------


def test_lightning_callback_reports_once_per_validation_epoch(trial: Path, tmp_path: Path) -> None:
    import lightning.pytorch as L
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x.sum(dim=1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)  # 4 batches an epoch

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)
            self.accuracies: List[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            acc = (self.layer(batch[0]).argmax(1) == batch[1]).float().mean()
            self.log("val_acc", acc)

        def on_validation_end(self) -> None:
            if not self.trainer.sanity_checking:
                self.accuracies.append(float(self.trainer.callback_metrics["val_acc"]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    model = Tiny()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        num_sanity_val_steps=2,  # the sanity pass runs, and must not be reported
        callbacks=[metrics.ReportMetricCallback(monitor="val_acc")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)

    rows = read_measurements(trial)
    assert [r["global_step"] for r in rows] == ["4", "8", "12"]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx(model.accuracies)
    assert all(r["trial"] == "7" for r in rows)


def test_lightning_callback_is_a_lightning_callback() -> None:
    from lightning.pytorch import Callback

    from hydra_plugins.hydra_vertex_ai.metrics import ReportMetricCallback

    callback = ReportMetricCallback(monitor="val_loss", metric_id="loss")
    assert isinstance(callback, Callback)
    assert (callback.monitor, callback.metric_id) == ("val_loss", "loss")
