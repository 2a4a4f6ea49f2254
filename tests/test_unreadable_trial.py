"""A trial whose result is truncated or unreadable is reported as failed (issue 21): on the console, and in
optimization_results.yaml, never as SUCCEEDED nor as the best trial."""
import logging
from pathlib import Path

import pytest
import yaml
from conftest import STAGING
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai import _payload, _storage, _sweep
from hydra_plugins.hydra_vertex_ai._backends.base import TuningOutcome
from hydra_plugins.hydra_vertex_ai._staging import Staging
from hydra_plugins.hydra_vertex_ai.config import VertexVizierSweeperConf


def _trial(trial_id: str, value: float) -> dict:
    return {"id": trial_id, "state": "SUCCEEDED", "parameters": [{"parameterId": "x", "value": float(trial_id)}],
            "finalMeasurement": {"metrics": [{"metricId": "loss", "value": value}]}}


@pytest.mark.usefixtures("bucket")
def test_a_truncated_trial_result_is_a_failed_trial_in_the_summary(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    staging = Staging.of(STAGING, "unreadable-trial")
    good = JobReturn(overrides=["x=1"], cfg=OmegaConf.create({}), hydra_cfg=OmegaConf.create({}), working_dir="",
                     task_name="t", status=JobStatus.COMPLETED, _return_value=0.5)
    whole = _payload.dump_result(good)
    _storage.write_bytes(staging.trial_result("1"), whole)
    _storage.write_bytes(staging.trial_result("2"), whole[: len(whole) // 2])  # cut short
    outcome = TuningOutcome("JOB_STATE_SUCCEEDED", [_trial("1", 0.5), _trial("2", 0.1)])
    config = OmegaConf.create({"hydra": {"job": {"name": "t"}}})
    pmap = {"x": ("x", "DOUBLE")}

    with caplog.at_level(logging.ERROR):
        returns = _sweep._trial_returns(staging, config, pmap, [], outcome, deadline_s=5)
        unreadable = _sweep.unreadable_results(outcome, returns)
    results = _sweep.write_results(tmp_path / "optimization_results.yaml", VertexVizierSweeperConf(metric_id="loss"),
                                   pmap, [], outcome, unreadable=unreadable)

    assert "Trial 2 failed" in caplog.text and staging.trial_result("2") in caplog.text
    saved = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert [t["state"] for t in saved["trials"]] == ["SUCCEEDED", "FAILED"]
    assert staging.trial_result("2") in saved["trials"][1]["infeasible_reason"]
    assert results["best_trial"] == "1"  # the better value of the unreadable trial is not the best
