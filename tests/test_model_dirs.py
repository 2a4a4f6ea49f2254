"""Two runs never share a model dir (issue 21): with `job.base_output_dir` set, a job's AIP_MODEL_DIR & co live
under `<base>/<sweep id>/<num>` and a trial's under `<base>/<sweep id>/<trial id>`."""
from pathlib import Path
from typing import List

from conftest import PROBE, VERTEX_LOCAL, run_app
from test_dry_run import json_documents

from hydra_plugins.hydra_vertex_ai._staging import Staging
from hydra_plugins.hydra_vertex_ai._vertex_facts import output_dirs


def _model_prefixes(tmp_path: Path, run: str) -> List[str]:
    args = ["-m", *VERTEX_LOCAL, "hydra.launcher.dry_run=true", "hydra.launcher.job.base_output_dir=gs://b/models",
            "tag=0,1", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / run}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = json_documents(proc.stdout)
    sweep_id = jobs[0]["labels"]["hydra_sweep"]
    prefixes = [job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"] for job in jobs]
    assert prefixes == [f"gs://b/models/{sweep_id}/0", f"gs://b/models/{sweep_id}/1"]
    return prefixes


def test_two_launches_with_one_base_output_dir_write_different_model_dirs(tmp_path: Path) -> None:
    first, second = _model_prefixes(tmp_path, "first"), _model_prefixes(tmp_path, "second")
    assert not set(first) & set(second)


def test_a_studys_trials_write_under_the_sweep_id() -> None:
    # Vertex appends the trial id to a tuning job's base output directory (AIP_MODEL_DIR = <base>/<trial>/model)
    base = Staging.of("gs://b/staging", "study-1").outputs("gs://b/models")
    assert base == "gs://b/models/study-1"
    assert output_dirs(f"{base}/7")["AIP_MODEL_DIR"] == "gs://b/models/study-1/7/model/"
