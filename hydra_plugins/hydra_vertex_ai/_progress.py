"""Live progress of a sweep, for both backends: a live line on a terminal, one log line per change elsewhere."""
import logging
from typing import Any, Sequence

from ._vertex_facts import STATE_ORDER, short_state

log = logging.getLogger(__name__)


class Progress:
    """Counts by state under a title; `close()` when done."""

    def __init__(self, title: str) -> None:
        from rich.console import Console

        self.title = title
        self.console = Console(stderr=True)
        self.live: Any = None
        self.last = ""
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

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def count_states(states: Sequence[str]) -> str:
    """`2 running, 1 succeeded` for a list of job states (`NOT_CREATED` for jobs not created yet)."""
    names = [short_state(s) for s in states]
    return ", ".join(f"{names.count(s)} {s.lower()}" for s in (*STATE_ORDER, "NOT_CREATED") if s in names)
