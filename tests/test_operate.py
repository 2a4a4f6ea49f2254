"""A sweep outlives its terminal: re-attach after kill -9, detach (wait=false) and collect, the
`hydra-vertex-ai` command on both backends, and a clean Ctrl-C of the sweeper."""
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cloudpickle
import pytest
from conftest import PROBE, STAGING, TESTS, VERTEX_OVERRIDES, finish, launch_in_process, run_app, wait_for
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai import _storage
from hydra_plugins.hydra_vertex_ai._staging import Staging

_spec = importlib.util.spec_from_file_location("operate_driver", TESTS / "apps" / "operate" / "driver.py")
assert _spec and _spec.loader
driver = importlib.util.module_from_spec(_spec)
sys.modules["operate_driver"] = driver  # cloudpickle ships a module by value only if it is importable by name
_spec.loader.exec_module(driver)
# The jobs import nothing from the tests directory (as in a container): ship the task by value.
cloudpickle.register_pickle_by_value(driver)

DRIVER = TESTS / "apps" / "operate" / "driver.py"
CLI = [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli"]
VERTEX = ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES]
LOCAL = ["hydra/launcher=vertex_ai", "hydra.launcher.backend=local", "hydra.launcher.max_parallel=2"]
JOBS = [[f"tag={i}"] for i in range(4)]


def cli(*args: str, cwd: Path, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def starts(out: Path) -> Dict[int, int]:
    """tag -> how many processes started that job."""
    counts: Dict[int, int] = {}
    for path in out.glob("*.start"):
        tag = int(path.name.split(".")[0])
        counts[tag] = counts.get(tag, 0) + 1
    return counts


def summary(rets: Sequence[Any]) -> List[Tuple[Any, ...]]:
    return [(r.status, r.return_value, list(r.overrides)[-1:]) for r in rets]  # the job's own override


def _kill_9_mid_wait(tmp_path: Path, overrides: List[str], created: Any) -> None:
    """Run the driver until `created()` says 2 jobs exist, then kill -9 it."""
    app = subprocess.Popen([sys.executable, str(DRIVER), json.dumps(overrides), json.dumps(JOBS)], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: created() >= 2, 120, "two jobs to exist")
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_kill_9_then_attach_on_the_emulator_creates_each_job_once(vertex_emulator: Any, tmp_path: Path) -> None:
    base = VERTEX + [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}", "hold_max_s=1",
                     "hydra.job.name=kill9"]
    # 12 creates a minute (a burst of one): the second job is created ~5 s after the first, the third ~5 s later.
    mine = lambda: [j for j in vertex_emulator.jobs() if j["displayName"].startswith("kill9-")]  # noqa: E731
    _kill_9_mid_wait(tmp_path, base + ["hydra.launcher.create_rate_per_minute=12"], lambda: len(mine()))
    assert len(mine()) == 2
    [sweep_id] = {j["labels"]["hydra_sweep"] for j in mine()}

    rets = launch_in_process(driver.tag_of, JOBS, base + [f"hydra.launcher.attach={sweep_id}"])

    uids = [f"{sweep_id}-{i}" for i in range(4)]
    assert {uid: vertex_emulator.creates_by_uid[uid] for uid in uids} == {uid: 1 for uid in uids}
    assert len(mine()) == 4
    # the manifest names each job's resource once all exist
    manifest = json.loads(_storage.read_bytes(Staging.of(STAGING, sweep_id).manifest))
    assert {j["hydra_uid"]: j.get("name") for j in manifest["jobs"]} == {
        j["labels"]["hydra_uid"]: j["name"] for j in mine()}
    assert starts(tmp_path / "rec") == {0: 1, 1: 1, 2: 1, 3: 1}
    clean = launch_in_process(driver.tag_of, JOBS, base[:-1] + ["hydra.job.name=clean",
                                                                f"hydra.sweep.dir={tmp_path / 'clean'}"])
    assert summary(rets) == summary(clean) == [(JobStatus.COMPLETED, i * 10, [f"tag={i}"]) for i in range(4)]


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_kill_9_then_attach_on_the_local_backend_finds_running_jobs(tmp_path: Path) -> None:
    base = LOCAL + [f"hydra.sweep.dir={tmp_path / 'sweep'}", f"out_dir={tmp_path / 'rec'}", "hold_max_s=3"]
    out = tmp_path / "rec"
    _kill_9_mid_wait(tmp_path, base, lambda: len(starts(out)))
    [manifest] = (tmp_path / "sweep" / ".vertex_ai").glob("*/manifest.json")
    sweep_id = manifest.parent.name
    running = [json.loads(p.read_text()) for p in (tmp_path / "sweep" / ".vertex_ai").glob("*/jobs/*/pids.json")]
    assert len(running) == 2  # jobs 2 and 3 were never started

    rets = launch_in_process(driver.tag_of, JOBS, base + [f"hydra.launcher.attach={sweep_id}"])

    assert starts(out) == {0: 1, 1: 1, 2: 1, 3: 1}  # the survivors were waited for, not started again
    assert summary(rets) == [(JobStatus.COMPLETED, i * 10, [f"tag={i}"]) for i in range(4)]


def _sweep_id(sweep_dir: Path, output: str) -> str:
    [manifest] = (sweep_dir / ".vertex_ai").glob("*/manifest.json")
    assert manifest.parent.name in output  # the launcher said which sweep to follow
    return manifest.parent.name


def test_wait_false_then_collect_on_the_emulator(vertex_emulator: Any, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *VERTEX, "hydra.launcher.wait=false", "tag=0,1", "mode=hold", "hold_for=99", "hold_max_s=8",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}", "hydra.job.name=detached"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "collect" in output and "hydra.launcher.attach=" in output
    staging = VERTEX_OVERRIDES[4].split("=", 1)[1]
    [sweep_id] = {j["labels"]["hydra_sweep"] for j in vertex_emulator.jobs() if j["displayName"].startswith("detached-")}
    assert not (sweep / "0" / ".hydra").exists()  # nothing came back yet

    first = cli("collect", sweep_id, "--staging", staging, cwd=tmp_path)
    assert first.returncode != 0 and "still running" in first.stderr
    wait_for(lambda: cli("collect", sweep_id, "--staging", staging, cwd=tmp_path).returncode == 0, 120, "collect")
    assert (sweep / "0" / ".hydra" / "config.yaml").exists() and (sweep / "1" / "detached.log").exists()


def test_wait_false_then_collect_on_the_local_backend(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", *LOCAL, "hydra.launcher.wait=false", "tag=0,1,2", "mode=hold", "hold_for=99", "hold_max_s=2",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep_id = _sweep_id(sweep, proc.stdout + proc.stderr)

    first = cli("collect", sweep_id, cwd=tmp_path)
    assert first.returncode != 0 and "still running" in first.stderr
    wait_for(lambda: cli("collect", sweep_id, cwd=tmp_path).returncode == 0, 120, "collect")
    assert sorted(p.name for p in sweep.glob("[0-9]")) == ["0", "1", "2"]
    assert all((sweep / str(i) / "my_app.log").exists() for i in range(3))
    status = cli("status", sweep_id, cwd=tmp_path)
    assert status.stdout.count("SUCCEEDED") == 3, status.stdout


def _verbs_on_a_sleeping_sweep(tmp_path: Path, launcher: List[str], staging: List[str], name: str) -> None:
    """status, logs --follow, list, cancel --yes and collect on a detached sweep of two sleeping jobs."""
    sweep = tmp_path / "sweep"
    args = ["-m", *launcher, "hydra.launcher.wait=false", "tag=0,1", "mode=sleep", f"hydra.job.name={name}",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: len(list((tmp_path / "rec").glob("*.json"))) == 2, 120, "two sleeping jobs")
    output = proc.stdout + proc.stderr
    sweep_id = re.findall(rf"{name}-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}", output)[0]

    status = cli("status", sweep_id, *staging, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("RUNNING") == 2, status.stdout + status.stderr
    assert "tag=0" in status.stdout
    listed = cli("list", *staging[1:], cwd=tmp_path)
    assert sweep_id in listed.stdout and "2 running" in listed.stdout, listed.stdout + listed.stderr
    follow = subprocess.Popen([*CLI, "logs", sweep_id, "0", "--follow", *staging], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        refused = cli("cancel", sweep_id, *staging, cwd=tmp_path)  # not a terminal, no --yes: shows, cancels nothing
        assert refused.returncode != 0 and "--yes" in refused.stderr and "#0" in refused.stdout
        cancel = cli("cancel", sweep_id, "--yes", *staging, cwd=tmp_path)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        follow.wait(timeout=60)  # --follow ends when the job ends
        assert follow.returncode == 0, follow.stderr
    finally:
        if follow.poll() is None:
            follow.kill()
    assert "job 0 started" in (follow.stdout.read() if follow.stdout else "")
    wait_for(lambda: "CANCELLED" in cli("status", sweep_id, *staging, cwd=tmp_path).stdout, 60, "cancelled jobs")
    after = cli("status", sweep_id, *staging, cwd=tmp_path).stdout
    assert after.count("CANCELLED") == 2 and "RUNNING" not in after, after
    assert cli("collect", sweep_id, *staging, cwd=tmp_path).returncode == 0


def test_every_verb_against_the_emulator(vertex_emulator: Any, tmp_path: Path) -> None:
    staging = VERTEX_OVERRIDES[4].split("=", 1)[1]
    _verbs_on_a_sleeping_sweep(tmp_path, VERTEX, ["--staging", staging], "verbs")
    states = [j["state"] for j in vertex_emulator.jobs() if j["displayName"].startswith("verbs-")]
    assert states == ["JOB_STATE_CANCELLED"] * 2


def test_every_verb_against_the_local_backend(tmp_path: Path) -> None:
    _verbs_on_a_sleeping_sweep(tmp_path, LOCAL, [], "verbs")
    pids = [json.loads(p.read_text())["pid"] for p in (tmp_path / "rec").glob("*.json")]
    wait_for(lambda: not any(_alive(pid) for pid in pids), 10, "the job processes to end")


def _alive(pid: int) -> bool:
    from hydra_plugins.hydra_vertex_ai._backends.processes import pid_alive

    return pid_alive(pid)


def test_cli_errors_are_one_line_and_help_documents_every_verb(tmp_path: Path) -> None:
    unknown = cli("status", "no-such-sweep-20240101-000000-abcdef", cwd=tmp_path)
    assert unknown.returncode != 0 and len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr
    assert "no sweep 'no-such-sweep-20240101-000000-abcdef'" in unknown.stderr
    helped = cli("--help", cwd=tmp_path).stdout
    for verb in ("list", "status", "logs", "cancel", "collect"):
        assert verb in helped
        assert cli(verb, "--help", cwd=tmp_path).returncode == 0
    setup = (TESTS.parent / "setup.py").read_text()
    assert "hydra-vertex-ai = hydra_plugins.hydra_vertex_ai._cli:main" in setup


def test_ctrl_c_of_the_sweeper_writes_the_finished_trials(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=vertex_vizier", "hydra.sweeper.algorithm=grid", "hydra.sweeper.max_trial_count=2",
            "hydra.sweeper.parallel_trial_count=2", "hold_max_s=choice(0,300)", "mode=hold", "hold_for=99", "tag=7",
            f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}"]
    app = subprocess.Popen([sys.executable, str(PROBE), *args], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any((sweep / ".vertex_ai").glob("*/trials/*/outcome.json")), 120, "a finished trial")
        time.sleep(0.5)  # the study engine reads the trial's end
        app.send_signal(signal.SIGINT)
    finally:
        output = finish(app, timeout=60)
    assert app.returncode == 130, output
    assert "Traceback" not in output, output
    results = OmegaConf.to_container(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert isinstance(results, dict)
    done = [t for t in results["trials"] if t["state"] == "SUCCEEDED"]
    assert len(done) == 1 and done[0]["value"] == 7 and done[0]["params"] == ["hold_max_s=0"]
    assert results["best_value"] == 7
    sleepers = [json.loads(p.read_text())["pid"] for p in (tmp_path / "rec").glob("*.json")]
    wait_for(lambda: not any(_alive(pid) for pid in sleepers), 10, "the running trial to be stopped")


def test_the_manifest_is_written_before_any_job_and_never_holds_credentials(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_app(PROBE, ["-m", *LOCAL, "tag=0,1", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    [path] = (sweep / ".vertex_ai").glob("*/manifest.json")
    manifest = json.loads(path.read_text())
    assert manifest["sweep_id"] == path.parent.name and manifest["backend"] == "local"
    assert [j["hydra_uid"] for j in manifest["jobs"]] == [f"{path.parent.name}-0", f"{path.parent.name}-1"]
    assert ["tag=0" in j["overrides"] for j in manifest["jobs"]] == [True, False]
    assert manifest["sweep_dir"] == str(sweep)
    assert not any("credential" in k or "token" in k for k in manifest)
    assert os.path.exists(manifest["jobs"][0]["result"])
