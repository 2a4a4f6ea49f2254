"""The Lightning example trains unchanged, and through the launcher on the local backend."""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning_classifier"
ACCURACY = re.compile(r"validation accuracy: ([0-9.]+)")


def run_example(args: List[str]) -> subprocess.CompletedProcess:
    # One thread per process: the machine is shared; nothing of a Vertex container leaks in from outside.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "CLOUD_ML_", "HYDRA_VERTEX_AI_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def logged_accuracy(job_dir: Path) -> float:
    found = ACCURACY.findall((job_dir / "train.log").read_text())
    assert len(found) == 1, f"no single accuracy line in {job_dir / 'train.log'}"
    return float(found[0])


def csv_val_acc(job_dir: Path) -> List[float]:
    with open(job_dir / "csv" / "version_0" / "metrics.csv") as f:
        return [float(row["val_acc"]) for row in csv.DictReader(f) if row.get("val_acc")]


def test_trains_one_epoch_unchanged(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_example(["trainer.max_epochs=1", f"hydra.run.dir={run_dir}"])
    accuracy = logged_accuracy(run_dir)
    assert f"validation accuracy: {accuracy:.4f}" in proc.stdout  # Hydra's job log on the console too
    assert 0.6 <= accuracy <= 1.0  # 10 classes: chance is 0.1; the seeded MLP reaches ~0.88 in one epoch
    assert csv_val_acc(run_dir) == [pytest.approx(accuracy, abs=5e-5)]  # the log line rounds
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert (config["data"]["name"], config["model"]["name"], config["trainer"]["max_epochs"]) == ("digits", "mlp", 1)
    assert [p.suffix for p in (run_dir / "checkpoints").iterdir()] == [".ckpt"]  # no AIP_CHECKPOINT_DIR here
    assert list((run_dir / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


def test_runs_through_the_launcher_on_the_local_backend(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "multirun"
    proc = run_example(
        [
            "-m",
            "hydra/launcher=vertex_ai",
            "hydra.launcher.backend=local",
            "hydra.launcher.max_parallel=2",
            "model.lr=0.01,0.1",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    output = proc.stdout + proc.stderr
    assert output.count(": SUCCEEDED") == 2, output[-3000:]
    for num, lr in (("0", 0.01), ("1", 0.1)):
        job_dir = sweep_dir / num
        accuracy = logged_accuracy(job_dir)
        assert 0.0 <= accuracy <= 1.0
        assert csv_val_acc(job_dir) == [pytest.approx(accuracy, abs=5e-5)]
        hparams = yaml.safe_load((job_dir / "csv" / "version_0" / "hparams.yaml").read_text())
        assert hparams["lr"] == lr
        # The job ran with Vertex's AIP_CHECKPOINT_DIR, so its checkpoint is not in the Hydra job dir.
        assert not (job_dir / "checkpoints").exists()
    checkpoints = sorted(p.parent.parent.name for p in sweep_dir.glob(".vertex_ai/*/outputs/*/checkpoints/*.ckpt"))
    assert checkpoints == ["0", "1"]


def test_four_trial_local_sweep_best_beats_worst(tmp_path: Path) -> None:
    """The README's demo, shortened: a Vizier-style sweep of the example on the local backend."""
    sweep_dir = tmp_path / "sweep"
    proc = run_example(
        [
            "-m",
            "hydra/sweeper=vertex_vizier",
            "hydra.sweeper.goal=maximize",
            "hydra.sweeper.metric_id=val_acc",
            "hydra.sweeper.max_trial_count=4",
            "hydra.sweeper.parallel_trial_count=2",
            "hydra.sweeper.algorithm=grid",
            "model.lr=choice(0.0001,0.3)",  # a learning rate that barely moves, and a good one
            "optimizer=adam,sgd",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={sweep_dir}",
        ]
    )
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = [t["value"] for t in results["trials"]]
    assert [t["state"] for t in results["trials"]] == ["SUCCEEDED"] * 4
    assert results["best_value"] == max(values) > min(values)
    assert "Best val_acc" in proc.stdout
    for trial in results["trials"]:  # each trial's own output dir (hydra.job.num = Vertex's id - 1), its accuracy
        assert logged_accuracy(sweep_dir / str(int(trial["id"]) - 1)) == pytest.approx(trial["value"], abs=5e-5)
