"""The local backend gives each job what a Vertex container gets, and runs at most max_parallel at once."""
import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import PROBE, VERTEX_LOCAL, records, run_app

APPS = PROBE.parent.parent


def test_job_sees_a_vertex_container_environment(tmp_path: Path) -> None:
    sweep, outputs = tmp_path / "sweep", tmp_path / "outputs"
    args = [
        "-m", *VERTEX_LOCAL, "tag=0,1", "+hydra.launcher.job.env.MY_VAR=hello",
        f"hydra.launcher.job.base_output_dir={outputs}", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    # The submitting shell's PYTHONPATH does not exist in a container: a job must not depend on it.
    proc = run_app(PROBE, args, tmp_path, env={"PYTHONPATH": str(tmp_path / "host-only")})
    assert proc.returncode == 0, proc.stderr

    seen = records(tmp_path / "rec")
    assert sorted(seen) == [0, 1]
    assert seen[0]["env"]["CLOUD_ML_JOB_ID"] != seen[1]["env"]["CLOUD_ML_JOB_ID"]
    [manifest] = (sweep / ".vertex_ai").glob("*/manifest.json")
    base = f"{outputs}/{manifest.parent.name}"  # <base_output_dir>/<sweep id>: two runs never share a model dir
    for num, job in seen.items():
        env = job["env"]
        assert env["CLOUD_ML_JOB_ID"] == job["job_id"]  # hydra.job.id is the Vertex job id
        assert env["AIP_MODEL_DIR"] == f"{base}/{num}/model/"
        assert env["AIP_CHECKPOINT_DIR"] == f"{base}/{num}/checkpoints/"
        assert env["AIP_TENSORBOARD_LOG_DIR"] == f"{base}/{num}/logs/"
        cluster_spec = json.loads(env["CLUSTER_SPEC"])
        assert cluster_spec["task"] == {"type": "workerpool0", "index": 0}
        assert list(cluster_spec["cluster"]) == ["workerpool0"] and len(cluster_spec["cluster"]["workerpool0"]) == 1
        assert env["MY_VAR"] == "hello" and env["PYTHONPATH"] is None
        cwd = Path(job["cwd"])
        assert cwd != tmp_path and APPS not in cwd.parents and cwd != PROBE.parent
        _assert_usual_job_dir(sweep / str(num), job, num)


def _assert_usual_job_dir(job_dir: Path, job: Dict[str, Any], num: int) -> None:
    """hydra.sweep.dir/hydra.sweep.subdir with .hydra/ and the job's log, as with Hydra's own launcher."""
    assert job["output_dir"] == str(job_dir)
    assert {p.name for p in (job_dir / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert f"tag={num}" in (job_dir / ".hydra" / "overrides.yaml").read_text()
    assert f"job {num} started" in (job_dir / "my_app.log").read_text()


def _max_overlap(intervals: List[List[float]]) -> int:
    """The most jobs running at one moment (checked at each job's start)."""
    return max(sum(s <= start < e for s, e in intervals) for start, _ in intervals)


def test_max_parallel_bounds_running_jobs(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    # Each job holds its slot until 3 jobs have started (at most a few seconds): with no bound, 3+ would overlap.
    args = [
        "-m", *VERTEX_LOCAL, "hydra.launcher.max_parallel=2", "mode=hold", "hold_for=3", "tag=0,1,2,3",
        f"out_dir={out}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]  # fmt: skip
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr

    seen = records(out)
    intervals = [[seen[n]["start"], float((out / f"{n}.end").read_text())] for n in sorted(seen)]
    assert len(intervals) == 4
    assert _max_overlap(intervals) == 2


def test_a_job_whose_command_cannot_start_fails_alone(tmp_path: Path) -> None:
    import threading

    from hydra_plugins.hydra_vertex_ai._backends.processes import run_custom_job

    job = {"displayName": "x", "labels": {}, "jobSpec": {"workerPoolSpecs": [
        {"replicaCount": "1", "containerSpec": {"command": [str(tmp_path / "no-such-program")]}}]}}  # fmt: skip
    outcome = run_custom_job(job, job_id="1", workdir=tmp_path / "job", cancel=threading.Event())
    assert outcome.state == "JOB_STATE_FAILED"
    assert "could not start" in (outcome.error or "") and "no-such-program" in (outcome.error or "")


def test_a_job_ends_when_its_last_replica_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor reports the job's end as soon as its last replica has exited: it never pauses (polls)
    with no replica left to wait for (it did, for 50 ms, after every job and trial)."""
    import sys
    import threading

    from hydra_plugins.hydra_vertex_ai._backends import processes

    pauses: List[int] = []
    real_pause = processes._pause

    def counting_pause(running: Any) -> None:
        running = list(running)
        pauses.append(len(running))
        real_pause(running)

    monkeypatch.setattr(processes, "_pause", counting_pause)
    job = {"displayName": "x", "labels": {}, "jobSpec": {"workerPoolSpecs": [
        {"replicaCount": "2", "containerSpec": {"command": [sys.executable, "-c", "pass"]}}]}}  # fmt: skip
    outcome = processes.run_custom_job(job, job_id="1", workdir=tmp_path / "job", cancel=threading.Event())
    assert outcome.state == "JOB_STATE_SUCCEEDED"
    assert 0 not in pauses
