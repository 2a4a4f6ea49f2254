"""Signals as the plugins and the emulator treat them: SIGTERM and SIGHUP are Ctrl-C; a cancellation is not.

- `interrupts()`: SIGTERM (a CI cancel, `kill`, a scheduler) and SIGHUP (the terminal closed) raise
  `Terminated`, a KeyboardInterrupt, so every path that stops jobs on Ctrl-C stops them on these too.
- `shielded(status)`: while jobs are being cancelled, further Ctrl-C / SIGTERM / SIGHUP do not abort the
  cancellation (that would leave billed jobs running); each prints that it is in progress and what is left.
- `deferred()`: Ctrl-C / SIGTERM / SIGHUP during a few statements that must not be torn apart (a create
  handed to a thread and recorded as in flight) take effect when the block ends.

A signal that is ignored (SIG_IGN) when a block starts stays ignored in it: `nohup` is honoured.
Signal handlers live in the main thread only: elsewhere both are no-ops. Standard library only (the
emulator's CLI imports it).
"""
import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List

# The signals that mean "stop", besides SIGINT (Ctrl-C), where the platform has them.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP handled as Ctrl-C: the launcher stops its jobs, then exits.

    Job processes run in their own sessions and Vertex jobs on their own machines: without this they
    would outlive a terminated launcher."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers(signals: Any, handler: Callable[[int, Any], None]) -> Iterator[None]:
    if not _in_main_thread():
        yield
        return
    # A signal ignored when the block starts stays ignored: `nohup` (or a supervisor) asked for it, and a logout
    # must not cancel the sweep of a launcher started that way.
    previous: Dict[int, Any] = {sig: signal.signal(sig, handler) for sig in signals
                                if signal.getsignal(sig) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into `Terminated` while the block runs."""

    def interrupt(signum: int, frame: Any) -> None:
        raise Terminated(f"received {signal.Signals(signum).name}")

    interrupt.raises = True  # type: ignore[attr-defined]  # see atomic()

    with _handlers(STOP_SIGNALS, interrupt):
        yield


@contextmanager
def shielded(status: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP print `Cancellation in progress: <status()>` instead of interrupting."""

    def report(signum: int, frame: Any) -> None:
        try:
            left = status()
        except Exception:  # a status that cannot be computed must not break the cancellation
            left = ""
        text = f"\nCancellation in progress, please wait{': ' + left if left else ''}\n"
        os.write(2, text.encode(errors="replace"))  # not print(): the handler may interrupt a print

    with _handlers((signal.SIGINT, *STOP_SIGNALS), report):
        yield


@contextmanager
def deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP received in the block are raised when it ends, as they would have been."""
    received: List[int] = []

    def note(signum: int, frame: Any) -> None:
        received.append(signum)

    with _handlers((signal.SIGINT, *STOP_SIGNALS), note):
        yield
    if not received:
        return
    if received[0] == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(f"received {signal.Signals(received[0]).name}")


@contextmanager
def atomic() -> Iterator[None]:
    """`deferred` where a signal would raise in the middle of the block (Python's Ctrl-C, `interrupts`); a no-op
    under handlers that do not raise (`shielded`, an enclosing `deferred`) and off the main thread.

    For calls into libraries whose locks an exception raised mid-call leaves held (gRPC's channel)."""
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, *STOP_SIGNALS)]
    if _in_main_thread() and any(h is signal.default_int_handler or getattr(h, "raises", False) for h in handlers):
        with deferred():
            yield
    else:
        yield
