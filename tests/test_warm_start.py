"""Local jobs forked from a warm parent (`_backends/forkserver.py`) give the results fresh processes give.

Each job of tests/apps/warm records what it sees (its process, environment, argv, paths, stdin, random state,
whether module-level code ran in it) and then tries to leak into the next job through os.environ, an attribute
of a pre-imported package and sys.modules. The same sweep runs with `local_warm_start` true and false.
"""
import json
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Tuple

from conftest import TESTS, VERTEX_LOCAL, records, run_app

from hydra_plugins.hydra_vertex_ai._backends.forkserver import ENTRY_MODULE, ForkServers

APP = TESTS / "apps" / "warm" / "app.py"


def _sweep(tmp_path: Path, name: str, warm: bool, *overrides: str) -> Tuple[Any, Path, Path]:
    out, sweep = tmp_path / name / "records", tmp_path / name / "sweep"
    args = ["-m", *VERTEX_LOCAL, "hydra.launcher.max_parallel=1", f"hydra.launcher.local_warm_start={warm}",
            f"hydra.launcher.snapshot.root={APP.parent}", f"hydra.sweep.dir={sweep}", f"out_dir={out}", *overrides]
    return run_app(APP, args, cwd=APP.parent), out, sweep


def _staging(sweep: Path) -> Path:
    return next(path.parent for path in (sweep / ".vertex_ai").glob("*/jobs"))


def _normalized(record: Dict[str, Any], sweep: Path) -> Dict[str, Any]:
    """What must not differ between a forked and a fresh job: all but its pid, its draws and where its sweep is."""
    text = json.dumps({k: v for k, v in record.items() if k not in ("pid", "imported_in", "forked", "random", "numpy")})
    staging = _staging(sweep)
    return json.loads(text.replace(str(staging), "<staging>").replace(staging.name, "<sweep id>"))


def test_forked_jobs_see_what_fresh_processes_see_and_nothing_of_each_other(tmp_path: Path) -> None:
    warm, warm_out, warm_sweep = _sweep(tmp_path, "warm", True, "x=0,1,2")
    fresh, fresh_out, fresh_sweep = _sweep(tmp_path, "fresh", False, "x=0,1,2")
    assert warm.returncode == 0, warm.stderr
    assert fresh.returncode == 0, fresh.stderr
    warm_records, fresh_records = records(warm_out), records(fresh_out)
    assert sorted(warm_records) == sorted(fresh_records) == [0, 1, 2]
    # one warm parent serves every job: what differs between jobs (ids, cluster spec, their /gcs stand-in
    # folder) is not part of the environment it was started with
    assert len(list((_staging(warm_sweep)).glob("forkserver-*"))) == 1, "not one fork server for the sweep"
    assert not list((_staging(fresh_sweep)).glob("forkserver-*"))
    assert [r["forked"] for r in warm_records.values()] == [True] * 3
    assert [r["forked"] for r in fresh_records.values()] == [False] * 3
    for x, record in warm_records.items():
        # its own process, in which the script's module-level code ran with this job's environment
        assert record["imported_in"] == record["pid"]
        assert record["job_at_import"] == record["job"] and record["job"]
        # nothing of the job before it: not its environment, not what it set on a package or in sys.modules
        assert record["leak_at_import"] == record["leak_now"] == [None, None, False]
        assert _normalized(record, warm_sweep) == _normalized(fresh_records[x], fresh_sweep)
        log = (_staging(warm_sweep) / "jobs" / str(x) / "workerpool0-0.log").read_text()
        assert f"job {x} says hello" in log
        # the project's own plugin (its source's hydra_plugins/): the server's scan did not see it, the job's does
        assert "hydra_plugins.warm_app_plugin.WarmAppSearchPath" in record["plugins"]
        assert record["gc"] is True  # the server imports with collection off; a job has it on, as fresh
        # a job ends as a fresh process does: what it left open is flushed, its cyclic garbage finalized
        for out in (warm_out, fresh_out):
            assert (out / f"{x}.unclosed").read_text() == "written, never closed"
            assert (out / f"{x}.teardown").read_text() == "finalized at exit"
    assert len({r["pid"] for r in warm_records.values()}) == 3
    # a fresh interpreter seeds its generators from the OS: forked jobs must not share one sequence
    assert len({r["random"] for r in warm_records.values()}) == 3
    assert len({r["numpy"] for r in warm_records.values()}) == 3


def test_forked_jobs_fail_as_fresh_processes_fail(tmp_path: Path) -> None:
    outcomes = {}
    for warm in (True, False):
        done, _, sweep = _sweep(tmp_path, f"fail-{warm}", warm, "fail=raise,kill")
        assert done.returncode != 0
        staging = _staging(sweep)
        outcomes[warm] = [json.loads((staging / "jobs" / str(i) / "outcome.json").read_text()) for i in (0, 1)]
        assert "job 0 failed on purpose" in (staging / "jobs" / "0" / "workerpool0-0.log").read_text()
    first_lines = {warm: [(o["state"], o["error"].split(";")[0]) for o in found] for warm, found in outcomes.items()}
    assert first_lines[True] == first_lines[False] == [
        ("JOB_STATE_FAILED", "replica workerpool0[0] exited with code 1"),
        ("JOB_STATE_FAILED", "replica workerpool0[0] was killed by SIGKILL"),
    ]


def test_a_server_that_runs_a_thread_after_pre_importing_refuses_to_fork(tmp_path: Path) -> None:
    """Forking a process that runs threads can leave a lock held forever in the child: start fresh instead."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "starts_a_thread.py").write_text(textwrap.dedent("""\
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    """))
    forks = ForkServers(tmp_path / "servers", preload=["starts_a_thread"])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(modules)}
    try:
        command = [sys.executable, "-m", ENTRY_MODULE, str(tmp_path / "payload.pkl")]
        assert forks.start(command, tmp_path, env, tmp_path / "job.log") is None
    finally:
        forks.close()
    assert "Python thread(s) run after pre-importing" in (tmp_path / "servers" / "forkserver-0" / "forkserver.log").read_text()


def test_a_job_stopped_as_soon_as_it_is_forked_is_stopped(tmp_path: Path) -> None:
    """A sweep that stops while a job is being forked: the launcher stops the job by its process group, which
    must exist by the time the launcher knows the pid (a slow child, here 1 s in an at-fork hook as a heavy
    package's can be, once escaped the stop and ran on)."""
    from hydra_plugins.hydra_vertex_ai._backends.processes import _stop
    from hydra_plugins.hydra_vertex_ai._pids import pid_alive

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "slow_child.py").write_text("import os, time\nos.register_at_fork(after_in_child=lambda: time.sleep(1))\n")
    forks = ForkServers(tmp_path / "servers", preload=["slow_child"])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(modules)}
    try:
        command = [sys.executable, "-m", ENTRY_MODULE, str(tmp_path / "payload.pkl")]
        job = forks.start(command, tmp_path, env, tmp_path / "job.log")
        assert job is not None
        _stop(job)  # type: ignore[arg-type]
        assert not pid_alive(job.pid)
    finally:
        forks.close()


def test_a_local_study_forks_every_trial_from_one_server(tmp_path: Path) -> None:
    """The study's server starts before its first trial (its imports overlap the staging), with the environment
    the trials get: one server for the whole study, every trial forked from it, each in its own process."""
    out, sweep = tmp_path / "records", tmp_path / "sweep"
    args = ["-m", "hydra/sweeper=vertex_vizier", "hydra.sweeper.backend=local", "hydra.sweeper.algorithm=grid",
            "hydra.sweeper.max_trial_count=3", "hydra.sweeper.parallel_trial_count=2",
            f"hydra.sweeper.snapshot.root={APP.parent}", f"hydra.sweep.dir={sweep}", f"out_dir={out}", "x=choice(0,1,2)"]
    done = run_app(APP, args, cwd=APP.parent)
    assert done.returncode == 0, done.stderr
    found = records(out)
    assert sorted(found) == [0, 1, 2]
    assert [r["forked"] for r in found.values()] == [True] * 3
    assert len({r["pid"] for r in found.values()}) == 3
    assert len(list(sweep.glob(".vertex_ai/*/forkserver-*"))) == 1, "a second server: the trials' env was mispredicted"


def test_a_study_sessions_fork_server_ends_with_the_session_even_if_the_study_never_runs(tmp_path: Path) -> None:
    """The sweeper opens the study's session before staging, and the local backend starts the trials' fork
    server then; when staging fails (or Ctrl-C comes) before the study runs, the server ends with the session."""
    import pytest

    from hydra_plugins.hydra_vertex_ai._backends.local import LocalBackend
    from hydra_plugins.hydra_vertex_ai._staging import Staging

    backend = LocalBackend(Staging.of(str(tmp_path / "staging"), "s1"), warm_start=True)
    job = {"parallelTrialCount": 2, "trialJobSpec": {"workerPoolSpecs": [{"replicaCount": "1", "containerSpec": {
        "imageUri": "local/test", "command": ["python", "-m", ENTRY_MODULE, "payload.pkl"]}}]}}  # fmt: skip
    with pytest.raises(RuntimeError, match="staging failed"):
        with backend.tuning_session(job):
            assert backend.forks is not None
            servers = list(backend.forks._servers.values())
            assert len(servers) == 1 and servers[0]._proc.poll() is None  # started ahead of the study
            raise RuntimeError("staging failed")
    assert backend.forks is None
    assert servers[0]._proc.poll() is not None, "the fork server outlived the session"
