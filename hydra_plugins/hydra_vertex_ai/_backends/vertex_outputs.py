"""Copying what jobs wrote to the bucket (through the FUSE mount) back into the local sweep dir.

Only Hydra's own small outputs come back (each job's `.hydra/` and `*.log`), as other launchers leave them;
checkpoints and the like stay in the bucket.
"""
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Optional

from .. import _storage

log = logging.getLogger(__name__)

SYNC_MAX_BYTES = 10 * 1024 * 1024
_THREADS = 32


def sync_outputs(outputs: Mapping[str, str], deadline_s: Optional[float] = None) -> None:
    """For each local dir -> gs:// URI, copy the URI's Hydra outputs into the dir; never fails a sweep.

    With `deadline_s`, each storage call gives up after about that long (Cloud Storage may be gone)."""
    for local_dir, uri in outputs.items():
        try:
            objects = _storage.list_gcs(uri.rstrip("/") + "/", deadline_s)
        except Exception as e:  # outputs are a convenience: never fail a finished sweep for them
            log.warning("could not list %s to copy job outputs back: %s", uri, e)
            continue
        wanted = [o for o, size in objects if size <= SYNC_MAX_BYTES and is_hydra_output(o)]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(lambda obj, prefix=uri, into=local_dir: _download(obj, prefix, into, deadline_s), wanted))


def is_hydra_output(uri: str) -> bool:
    parts = uri.split("/")
    return ".hydra" in parts[:-1] or parts[-1].endswith(".log")


def _download(obj: str, prefix: str, local_dir: str, deadline_s: Optional[float]) -> None:
    relative = obj[len(prefix.rstrip("/")) + 1 :]
    target = Path(local_dir, *relative.split("/"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_storage.read_bytes(obj, deadline_s))
    except Exception as e:
        log.warning("could not copy %s to %s: %s", obj, target, e)
