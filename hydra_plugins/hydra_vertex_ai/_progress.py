"""Live progress of a sweep, for both backends.

On a terminal: a live table (rich) of the jobs (number, overrides, state, elapsed, link or log path); past
`TABLE_MAX_ROWS` jobs it collapses to counts by state plus the running and failed jobs. Elsewhere (CI, a
log file): one log line per change, never two identical lines in a row.
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

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
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

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
                self.update(f"#{row.num} {shorten(row.overrides)}: {row.state}" + (f" ({row.where})" if row.where else ""))

    def close(self) -> None:
        if self.live is not None:
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
        table.add_row(row.num, shorten(row.overrides), row.state, format_elapsed(row.elapsed), row.where)
    return table


def count_states(states: Sequence[str]) -> str:
    """`2 running, 1 succeeded` for a list of job states (`NOT_CREATED` for jobs not created yet)."""
    names = [short_state(s) for s in states]
    return ", ".join(f"{names.count(s)} {s.lower()}" for s in (*STATE_ORDER, "NOT_CREATED") if s in names)
