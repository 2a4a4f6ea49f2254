"""Copying what jobs wrote to the bucket (through the FUSE mount) back into the local sweep dir.

Every file of each job's output dir comes back, as Hydra's basic launcher leaves them in the sweep dir (and as
Ray's launcher syncs the whole dir down): `.hydra/`, logs, metrics files, small checkpoints. Files over the size
cap, and those the exclude globs match (or the include globs do not), stay in the bucket; one line at the end says
how many, how large, and where, and the same facts go to the sweep dir for the report.
"""
import fnmatch
import json
import logging
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from .. import _storage

log = logging.getLogger(__name__)

# In the local sweep dir: what stayed in the bucket, for the report (written by every copy-back).
LEFT_IN_BUCKET_FILE = ".outputs_left_in_bucket.json"


@dataclass
class OutputFilter:
    """Which files of the bucket's sweep dir come back (the launcher's `sync_outputs_*` settings)."""

    max_mb: float = 20.0
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()

    @classmethod
    def of(cls, conf: Any) -> "OutputFilter":
        return cls(float(conf.sync_outputs_max_mb), tuple(conf.sync_outputs_include), tuple(conf.sync_outputs_exclude))

    def wanted(self, relative: str, size: int) -> bool:
        """`relative`: the file's path below the sweep dir (e.g. `0/checkpoints/last.ckpt`)."""
        if size > self.max_mb * 1024 * 1024:
            return False
        if self.include and not _matches(relative, self.include):
            return False
        return not _matches(relative, self.exclude)


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """A glob matches the whole relative path (`*` crosses `/`) or the file's name: `*.ckpt`, `*/checkpoints/*`."""
    name = posixpath.basename(relative)
    return any(fnmatch.fnmatchcase(relative, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class LeftInBucket:
    """The files that stayed in the bucket: how many, their total size, and the gs:// prefixes they are under."""

    count: int = 0
    bytes: int = 0
    prefixes: List[str] = field(default_factory=list)

    def size(self) -> str:
        return _size(self.bytes)

    def line(self) -> str:
        where = ", ".join(self.prefixes)
        return f"{self.count} output file(s), {self.size()}, stayed in the bucket (over the size cap or " \
               f"excluded): {where}"


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def sync_outputs(outputs: Mapping[str, str], deadline_s: Optional[float] = None,
                 which: Optional[OutputFilter] = None) -> LeftInBucket:
    """For each local dir -> gs:// URI, copy the URI's files that `which` wants into the dir; never fails a sweep.

    With `deadline_s`, each storage call gives up after about that long (Cloud Storage may be gone)."""
    which = which or OutputFilter()
    left = LeftInBucket()
    for local_dir, uri in outputs.items():
        prefix = uri.rstrip("/") + "/"
        try:
            objects = _storage.list_gcs(prefix, deadline_s)
        except Exception as e:  # outputs are a convenience: never fail a finished sweep for them
            log.warning("could not list %s to copy job outputs back: %s", uri, e)
            continue
        wanted: List[Tuple[str, str]] = []
        stayed: List[int] = []
        for obj, size in objects:
            relative = obj[len(prefix):]
            if which.wanted(relative, size):
                wanted.append((obj, relative))
            else:
                stayed.append(size)
        with ThreadPoolExecutor(max_workers=_storage.MAX_THREADS, thread_name_prefix="vertex-outputs") as pool:
            list(pool.map(lambda item, into=local_dir: _download(item[0], item[1], into, deadline_s), wanted))
        if stayed:
            left.count += len(stayed)
            left.bytes += sum(stayed)
            left.prefixes.append(prefix)
        _record(local_dir, left if stayed else LeftInBucket())
    if left.count:
        log.info("%s", left.line())
    return left


def _record(local_dir: str, left: LeftInBucket) -> None:
    try:
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        Path(local_dir, LEFT_IN_BUCKET_FILE).write_text(json.dumps(asdict(left)))
    except OSError as e:
        log.debug("could not record what stayed in the bucket: %s", e)


def left_in_bucket(local_dir: str) -> Optional[LeftInBucket]:
    """What the last copy-back into `local_dir` left in the bucket, or None (no copy-back, or nothing left)."""
    try:
        left = LeftInBucket(**json.loads(Path(local_dir, LEFT_IN_BUCKET_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return left if left.count else None


def _download(obj: str, relative: str, local_dir: str, deadline_s: Optional[float]) -> None:
    target = Path(local_dir, *relative.split("/"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_storage.read_bytes(obj, deadline_s))
    except Exception as e:
        log.warning("could not copy %s to %s: %s", obj, target, e)
