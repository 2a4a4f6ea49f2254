"""The progress of a sweep: a live table on a terminal, one log line per change elsewhere."""
import fcntl
import logging
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import List

import pytest
from conftest import VERTEX_LOCAL

from hydra_plugins.hydra_vertex_ai._progress import TABLE_MAX_ROWS, JobRow, Progress, render_table

QUADRATIC = Path(__file__).parent / "apps" / "quadratic" / "app.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _run_on_a_terminal(args: List[str], cwd: Path, columns: int = 250,
                       keep_control: bool = False) -> "tuple[int, str]":
    """Run a Python command with stdout and stderr on a pseudo-terminal `columns` wide; its exit code and text
    (without control sequences, unless `keep_control`)."""
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "CI")}
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=child, stderr=child,
                            env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)})
    os.close(child)
    chunks: List[bytes] = []
    while True:  # drain it as it runs (a full terminal buffer would block the app)
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    text = b"".join(chunks).decode(errors="replace")
    return proc.wait(timeout=300), text if keep_control else ANSI.sub("", text)


def test_on_a_terminal_a_local_sweep_shows_one_live_table(tmp_path: Path) -> None:
    code, text = _run_on_a_terminal(
        [str(QUADRATIC), "-m", *VERTEX_LOCAL, "x=1,3", "opt=b", f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)

    assert code == 0, text[-3000:]
    assert "link / log" in text and "overrides" in text  # the table's header
    # the table as it stood at the end: one row per job, with its overrides, state and log
    row = r"^│ (\d+) +│ (.*?) +│ (\w+) +│ [\d:]+ +│ (\S+) +│$"
    final = {m[1]: (m[2], m[3], Path(m[4]).parent.name) for m in re.finditer(row, text, re.MULTILINE)}
    assert final == {"0": ("x=1 opt=b", "SUCCEEDED", "0"), "1": ("x=3 opt=b", "SUCCEEDED", "1")}, text[-3000:]
    assert "(2 succeeded)" in text
    assert not re.search(r"#0 .*: (QUEUED|RUNNING|SUCCEEDED)", text)  # no per-change lines on a terminal


def test_elsewhere_each_change_of_a_jobs_state_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hydra_plugins.hydra_vertex_ai._progress")
    progress = Progress("local sweep s1", {"0": "x=1", "1": "x=3"})
    assert progress.live is None  # pytest captures stderr: not a terminal
    for states in (["QUEUED", "QUEUED"], ["RUNNING", "QUEUED"], ["RUNNING", "QUEUED"], ["SUCCEEDED", "RUNNING"]):
        progress.jobs([JobRow(str(i), "", state, None, f"/logs/{i}.log") for i, state in enumerate(states)])
    progress.close()

    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "local sweep s1: #0 x=1: QUEUED (/logs/0.log)",
        "local sweep s1: #1 x=3: QUEUED (/logs/1.log)",
        "local sweep s1: #0 x=1: RUNNING (/logs/0.log)",
        "local sweep s1: #0 x=1: SUCCEEDED (/logs/0.log)",
        "local sweep s1: #1 x=3: RUNNING (/logs/1.log)",
    ]


def test_a_large_sweeps_table_shows_counts_and_the_jobs_worth_a_look() -> None:
    from rich.console import Console

    states = ["SUCCEEDED"] * (TABLE_MAX_ROWS + 5) + ["RUNNING", "FAILED", "QUEUED"]
    rows = [JobRow(str(i), f"x={i}", state, 5.0, f"/logs/{i}.log") for i, state in enumerate(states)]
    console = Console(width=200, record=True, force_terminal=False)
    console.print(render_table("sweep", rows))
    text = console.export_text()

    assert "25 succeeded" in text and "1 running" in text and "1 failed" in text and "1 queued" in text
    shown = sorted(int(line.split("│")[1]) for line in text.splitlines() if "/logs/" in line)
    assert shown == [25, 26]  # only the running and the failed job have rows


def test_a_jobs_clock_stops_when_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import hydra_plugins.hydra_vertex_ai._progress as progress_module

    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    progress = Progress("sweep")
    shown: List[List[JobRow]] = []
    for at, states in ((100.0, ["RUNNING", "RUNNING"]), (130.0, ["SUCCEEDED", "RUNNING"]), (190.0, ["SUCCEEDED", "RUNNING"])):
        now[0] = at
        rows = [JobRow(str(i), "", state, None, "") for i, state in enumerate(states)]
        progress.jobs(rows)
        shown.append(rows)
    progress.close()

    assert [r.elapsed for r in shown[-1]] == [30.0, 90.0]  # job 0 ended at 130 s; job 1 still runs
