"""Every failure is told (issue 21): one console line per failed job with its reason (the exception, not the log's
last line) and the job's last log lines below it; the run ends with counts by state and by distinct reason."""
import subprocess
import sys
from pathlib import Path

from conftest import PROBE, VERTEX_LOCAL, run_app

from hydra_plugins.hydra_vertex_ai._backends.base import failure_line


def test_each_failed_job_gets_a_line_with_its_exception_and_the_run_counts_reasons(tmp_path: Path) -> None:
    args = ["-m", *VERTEX_LOCAL, "tag=0,1", "mode=ok,raise,exit", f"out_dir={tmp_path / 'rec'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    proc = run_app(PROBE, args, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0

    for num, tag in ((1, 0), (4, 1)):  # the task raised: its exception, then the traceback from its log
        line = f"Job #{num} (tag={tag} mode=raise out_dir={tmp_path / 'rec'}) failed: ValueError: job {tag} was told to fail"
        assert line in output, output
    for num, tag in ((2, 0), (5, 1)):  # it exited: how, not the last thing it printed; then what it printed
        line = f"Job #{num} (tag={tag} mode=exit out_dir={tmp_path / 'rec'}) failed: replica workerpool0[0] exited"
        assert line in output, output
        assert f"\n  job {tag} is about to vanish" in output.split(line, 1)[1], output
    summary = [ln for ln in output.splitlines() if "6 job(s): " in ln]
    assert summary and "4 FAILED, 2 SUCCEEDED" in summary[0], output
    assert "3 failure reason(s): replica workerpool0[0] exited with code 1 (2 job(s))" in summary[0], output


def test_a_log_line_after_the_traceback_does_not_hide_the_exception() -> None:
    reason = ("replica workerpool0[0] exited with code 1; last lines of /logs/w.log:\n"
              "Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n    main()\n"
              "KeyError: 'lr'\n[2026-01-01][HYDRA] Set the environment variable HYDRA_FULL_ERROR=1\n")
    assert failure_line(reason) == "KeyError: 'lr'"


def test_each_failed_trial_gets_a_line_and_the_study_counts_reasons(tmp_path: Path) -> None:
    app = Path(__file__).parent / "apps" / "quadratic" / "app.py"
    cmd = [sys.executable, str(app), "-m", "hydra/sweeper=vertex_vizier", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "hydra.sweeper.parallel_trial_count=1", "hydra.sweeper.algorithm=grid", "hydra.sweeper.max_failed_trial_count=3",
           "fail_when_x_below=1", "x=choice(0,0.5,2)"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output

    for x in ("0", "0.5"):  # two failures with two different errors, each told with its exception
        assert any(ln for ln in output.splitlines() if "failed: ValueError: x=" + x + " is below 1" in ln), output
    summary = [ln for ln in output.splitlines() if "3 trial(s): " in ln]
    assert summary and "2 INFEASIBLE, 1 SUCCEEDED" in summary[0] and "2 failure reason(s)" in summary[0], output
