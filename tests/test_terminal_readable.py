"""The terminal stays readable (issue #22): log lines printed while the live table is up appear above it, and no
stale frame of the table remains, at 100 columns too; paths in the table are relative to the working directory.

The sweep runs on a pseudo-terminal; its output is replayed through a small terminal model (the control
sequences rich's Live uses: carriage return, line feed, cursor up/down, erase line; SGR and OSC ignored) of the
same size, and the screen, with what scrolled off the top, is what a user saw at the end."""
import os
import re
from pathlib import Path
from typing import List

import pytest
from conftest import VERTEX_LOCAL
from test_progress import QUADRATIC, _run_on_a_terminal

from hydra_plugins.hydra_vertex_ai._progress import JobRow, relative_path, render_table

COLUMNS, ROWS = 100, 60
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\x1b[=>]")


class Terminal:
    """A `columns` x `rows` screen with unbounded scrollback; the cursor cannot leave the visible rows."""

    def __init__(self, columns: int, rows: int) -> None:
        self.columns, self.rows = columns, rows
        self.lines: List[List[str]] = [[]]
        self.row = self.col = 0
        self.wrap_pending = False

    @property
    def top(self) -> int:
        return max(0, len(self.lines) - self.rows)

    def feed(self, text: str) -> None:
        pos = 0
        while pos < len(text):
            m = CSI.match(text, pos)
            if m:
                self._control(m.group(1) or "", m.group(2) or "")
                pos = m.end()
                continue
            self._char(text[pos])
            pos += 1

    def _control(self, args: str, final: str) -> None:
        n = int(args) if args.isdigit() else 1
        if final == "A":
            self.row, self.wrap_pending = max(self.top, self.row - n), False
        elif final == "B":
            self._down(n)
        elif final == "K":
            line = self.lines[self.row]
            if args == "2":
                line.clear()
            elif args in ("", "0"):
                del line[self.col:]
        elif final == "G":
            self.col = n - 1

    def _down(self, n: int) -> None:
        for _ in range(n):
            self.row += 1
            if self.row == len(self.lines):
                self.lines.append([])

    def _char(self, ch: str) -> None:
        if ch == "\r":
            self.col, self.wrap_pending = 0, False
        elif ch == "\n":
            self._down(1)
            self.wrap_pending = False
        elif ch >= " " or ch == "\t":
            if self.wrap_pending:  # xterm wraps when the character after the last column arrives
                self._down(1)
                self.col, self.wrap_pending = 0, False
            line = self.lines[self.row]
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = ch
            if self.col == self.columns - 1:
                self.wrap_pending = True
            else:
                self.col += 1

    def text(self) -> List[str]:
        return ["".join(line).rstrip() for line in self.lines]


def test_log_lines_go_above_the_live_table_and_no_stale_frame_remains(tmp_path: Path) -> None:
    # four jobs two at a time: each "started" log line arrives while the table is up and redrawing
    code, raw = _run_on_a_terminal(
        [str(QUADRATIC), "-m", *VERTEX_LOCAL, "x=1,2,3,4", "opt=b", "sleep_s=1", "hydra.sweep.dir=sweep"],
        tmp_path, columns=COLUMNS, keep_control=True)
    assert code == 0, raw[-3000:]
    screen = Terminal(COLUMNS, ROWS)
    screen.feed(raw)
    lines = screen.text()
    titles = [i for i, line in enumerate(lines) if "local sweep" in line and "(" in line and "│" not in line]
    started = [i for i, line in enumerate(lines) if re.search(r"app-\d started: log", line)]
    assert len(titles) == 1, "\n".join(lines)  # one table: no stale frame left behind
    assert len(started) == 4, "\n".join(lines)  # each job's line, whole
    assert all("│" not in lines[i] and "─" not in lines[i] for i in started)  # not through the table
    assert max(started) < titles[0]  # above it
    table = lines[titles[0]:]
    assert sum(1 for line in table if re.match(r"^│ \d +│", line)) == 4
    assert sum(1 for line in table if "SUCCEEDED" in line) == 4
    # log paths relative to the working directory (the sweep's staging is under ./sweep)
    assert any("│ sweep/.vertex_ai/" in line for line in table), "\n".join(table)


def test_paths_under_the_working_directory_are_shown_relative(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert relative_path(str(tmp_path / "sweep" / "0.log")) == os.path.join("sweep", "0.log")
    assert relative_path("/elsewhere/x.log") == "/elsewhere/x.log"
    link = "https://console.cloud.google.com/x"
    assert relative_path(link) == link
    table = render_table("t", [JobRow("0", "", "RUNNING", None, str(tmp_path / "sweep" / "0.log"))])
    assert list(table.columns[-1].cells) == [os.path.join("sweep", "0.log")]
