"""`hydra.launcher.dry_run=true`: every job's CustomJob printed as REST JSON, nothing run or staged."""
import json
import re
from pathlib import Path
from typing import Any, Dict, List

from conftest import PROBE, VERTEX_LOCAL, run_app
from google.cloud import aiplatform_v1
from google.protobuf import json_format


def json_documents(text: str) -> List[Dict[str, Any]]:
    """Every JSON object that starts at the beginning of a line, among Hydra's log lines."""
    decoder, docs, end = json.JSONDecoder(), [], 0
    for match in re.finditer(r"^\{", text, re.MULTILINE):
        if match.start() >= end:
            doc, end = decoder.raw_decode(text, match.start())
            docs.append(doc)
    return docs


def test_dry_run_prints_every_custom_job_and_runs_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [
        "-m", *VERTEX_LOCAL, "hydra.launcher.dry_run=true",
        "hydra.launcher.job.machine_type=g2-standard-8", "hydra.launcher.job.accelerator_type=NVIDIA_L4",
        "hydra.launcher.job.accelerator_count=1",
        "+hydra.launcher.job.labels.team=vision", "hydra.launcher.job.scheduling.timeout_s=600",
        "tag=0,1,2", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr

    jobs = json_documents(proc.stdout)
    assert [job["labels"]["hydra_job"] for job in jobs] == ["0", "1", "2"]
    payloads = set()
    for job in jobs:
        assert "jobSpec" in job and "workerPoolSpecs" in job["jobSpec"]  # the REST shape, camelCase
        proto = json_format.ParseDict(job, aiplatform_v1.CustomJob.pb(aiplatform_v1.CustomJob()))
        [pool] = proto.job_spec.worker_pool_specs
        assert pool.machine_spec.accelerator_type == aiplatform_v1.AcceleratorType.NVIDIA_L4
        assert proto.job_spec.scheduling.timeout.seconds == 600
        assert proto.labels["team"] == "vision"
        payloads.update(pool.container_spec.args)
    assert len(payloads) == 3, "each job has its own payload"

    assert not (tmp_path / "rec").exists(), "a job ran"
    assert sorted(p.name for p in sweep.iterdir()) == ["multirun.yaml"], "something was staged or a job dir made"


def test_a_vertex_dry_run_names_the_project_and_region_it_would_submit_to(tmp_path: Path) -> None:
    """Project and location are not in a CustomJob's body (they are the request's parent): the dry run says them."""
    args = ["-m", "hydra/launcher=vertex_ai", "hydra.launcher.backend=vertex", "hydra.launcher.dry_run=true",
            "hydra.launcher.project=my-project", "hydra.launcher.location=europe-west4",
            "hydra.launcher.staging_dir=gs://my-bucket/hydra", "hydra.launcher.job.image_uri=europe-docker.pkg.dev/p/r/t:1",
            "tag=0,1", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "printed 2 CustomJob spec(s) for Vertex AI, projects/my-project/locations/europe-west4" in proc.stdout + proc.stderr
