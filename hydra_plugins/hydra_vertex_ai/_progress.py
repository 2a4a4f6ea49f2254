"""Live progress of a sweep, for both backends.

On a terminal: a live table (rich) of the jobs (number, overrides, state, elapsed, link or log path relative to
the working directory); past `TABLE_MAX_ROWS` jobs it collapses to counts by state plus the running and failed
jobs. While it is up, log records printed to the terminal go through its console, so they appear above the
table: a line written to the terminal behind its back would leave a stale frame on screen. Elsewhere (CI, a log
file): one log line per change, never two identical lines in a row.
"""
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ._vertex_facts import STATE_ORDER, has_ended, short_state

log = logging.getLogger(__name__)

# beyond this many jobs the table shows counts plus the jobs worth looking at
TABLE_MAX_ROWS = 20
OVERRIDES_WIDTH = 48


@dataclass
class JobRow:
    """One job as the progress table and `hydra-vertex-ai status` show it."""

    num: str
    overrides: str
    # a short state (RUNNING, SUCCEEDED, ...) or NOT_CREATED
    state: str
    # seconds since this process first saw it running, or as the backend reports it; None before it runs
    elapsed: Optional[float]
    # a Cloud Console link or a local log path
    where: str
    # a trial's objective (`hydra-vertex-ai status` of a study)
    value: Optional[float] = None

    @staticmethod
    def of(job: Mapping[str, Any], state: str, where: str) -> "JobRow":
        """The row of a CustomJob spec (its overrides come from the Progress that shows it)."""
        num = job.get("labels", {}).get("hydra_job", job.get("displayName", ""))
        return JobRow(str(num), "", short_state(state), None, where)


def shorten(text: str, width: int = OVERRIDES_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_elapsed(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """A sweep's progress under a title: `update(line)` for a summary line, `jobs(rows)` for the job table;
    `close()` when done."""

    def __init__(self, title: str, overrides: Optional[Mapping[str, str]] = None) -> None:
        from rich.console import Console

        self.title = title
        self.console = Console(stderr=True)
        self.live: Any = None
        self.last = ""
        # job number -> its overrides, for the rows (job specs do not carry them)
        self.overrides: Dict[str, str] = dict(overrides or {})
        self.seen: Dict[str, str] = {}
        self.started: Dict[str, float] = {}
        self.ended: Dict[str, float] = {}
        self.rerouted: List[Tuple[logging.StreamHandler, Any]] = []
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
            self.rerouted = _route_terminal_logs_to(sys.stdout, sys.stderr)  # Live's proxies, now

    def update(self, line: str) -> None:
        text = f"{self.title}: {line}"
        if self.live is not None:
            self.live.update(text)
        elif line != self.last:
            log.info(text)
        self.last = line

    def jobs(self, rows: Sequence[JobRow]) -> None:
        now = time.monotonic()
        for row in rows:
            row.overrides = row.overrides or self.overrides.get(row.num, "")
            if row.state not in ("QUEUED", "PENDING", "NOT_CREATED"):
                self.started.setdefault(row.num, now)
            if has_ended(row.state):  # a job that has ended stops its clock
                self.ended.setdefault(row.num, now)
            if row.elapsed is None and row.num in self.started:
                row.elapsed = self.ended.get(row.num, now) - self.started[row.num]
        if self.live is not None:
            self.live.update(render_table(self.title, rows))
            return
        for row in rows:  # one line per change of one job's state
            if self.seen.get(row.num) != row.state:
                self.seen[row.num] = row.state
                where = relative_path(row.where)
                self.update(f"#{row.num} {shorten(row.overrides)}: {row.state}" + (f" ({where})" if where else ""))

    def close(self) -> None:
        if self.live is not None:
            for handler, stream in self.rerouted:
                handler.setStream(stream)
            self.rerouted = []
            self.live.stop()


def render_table(title: str, rows: Sequence[JobRow]) -> Any:
    """The rich Table of `rows`; past TABLE_MAX_ROWS, counts by state and only the running and failed jobs."""
    from rich.table import Table

    shown: List[JobRow] = list(rows)
    caption = None
    if len(rows) > TABLE_MAX_ROWS:
        caption = count_states([r.state for r in rows])
        shown = [r for r in rows if r.state in ("RUNNING", "FAILED")][:TABLE_MAX_ROWS]
    table = Table(title=f"{title} ({count_states([r.state for r in rows])})", caption=caption)
    for column in ("#", "overrides", "state", "elapsed", "link / log"):
        table.add_column(column, overflow="fold" if column == "link / log" else "ellipsis")
    for row in shown:
        table.add_row(row.num, shorten(row.overrides), row.state, format_elapsed(row.elapsed), relative_path(row.where))
    return table


def relative_path(path: str) -> str:
    """A local path relative to the working directory when it is below it; URLs and other paths unchanged."""
    if not path or "://" in path or not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def _route_terminal_logs_to(stdout: Any, stderr: Any) -> List[Tuple[logging.StreamHandler, Any]]:
    """Point every logging handler that writes to this process's stdout or stderr on a terminal (Hydra's console
    handler took the stream when it was configured) at `stdout` or `stderr` (Live's proxies); the handlers and
    their former streams, to restore."""
    targets: Dict[int, Any] = {}
    for proxy, original in ((stdout, sys.__stdout__), (stderr, sys.__stderr__)):
        for stream in (original, getattr(proxy, "rich_proxied_file", None)):
            if stream is not None:
                targets[id(stream)] = proxy
    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    rerouted = []
    for handler in {h for lg in loggers for h in lg.handlers}:
        stream = getattr(handler, "stream", None)
        if type(handler) is logging.StreamHandler and id(stream) in targets and _on_terminal(stream):
            rerouted.append((handler, handler.setStream(targets[id(stream)])))
    return rerouted


def _on_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def count_states(states: Sequence[str]) -> str:
    """`2 running, 1 succeeded` for a list of job states (`NOT_CREATED` for jobs not created yet)."""
    names = [short_state(s) for s in states]
    return ", ".join(f"{names.count(s)} {s.lower()}" for s in (*STATE_ORDER, "NOT_CREATED") if s in names)
