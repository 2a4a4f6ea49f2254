"""Processes as a sweep's records name them: [pid, start time], so that a recycled PID is never taken for the
process recorded. Linux /proc where there is one; standard library only.

Its own module so that `_staging` (the manifest records its launcher) and `_backends.processes` (job replicas)
both use it without importing each other.
"""
import os
from pathlib import Path
from typing import Any, List, Optional


def proc_stat(pid: "int | str") -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat after the command name (0: state, 3: session, 19: start time); None
    where they cannot be read (gone, or no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields if len(fields) > 19 else None


def pid_record(pid: int) -> List[Any]:
    """[pid, start time]: how a manifest or a supervisor file names a process (see `pid_alive`)."""
    return [pid, start_ticks(pid)]


def start_ticks(pid: int) -> Optional[int]:
    """The process's start time (Linux /proc), so a recycled PID is not mistaken for the job's process."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int, ticks: Optional[int] = None) -> bool:
    """True while `pid` runs and is the process recorded (a zombie counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat(pid)
    if fields is None:
        return True  # no /proc (macOS): the signal check is all there is
    return fields[0] != "Z" and (ticks is None or int(fields[19]) == ticks)
