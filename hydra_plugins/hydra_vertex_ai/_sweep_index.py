"""A small per-user index of the sweep manifests this machine has written: `hydra-vertex-ai list` finds recent
sweeps from any directory through it, on either backend.

One JSON file, `$XDG_STATE_HOME/hydra-vertex-ai/sweeps.json` (default `~/.local/state/...`, the XDG Base
Directory place for state that outlives a run but is not worth a backup), holding the newest `KEEP` entries of
{sweep id, manifest URI, created}. It holds locations only: no credentials, nothing a manifest does not already
say. It is a convenience: any error reading or writing it is ignored.
"""
import json
import logging
import os
import time
from pathlib import Path
from typing import Dict, List

log = logging.getLogger(__name__)

KEEP = 200
STATE_ENV = "XDG_STATE_HOME"


def index_path() -> Path:
    root = os.environ.get(STATE_ENV) or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(root) / "hydra-vertex-ai" / "sweeps.json"


def _entries() -> List[Dict[str, object]]:
    try:
        data = json.loads(index_path().read_text())
        return [e for e in data if isinstance(e, dict) and "manifest" in e]
    except (OSError, ValueError, TypeError):
        return []


def remember(sweep_id: str, manifest_uri: str, created: float) -> None:
    """Add (or refresh) a sweep; the oldest entries beyond KEEP are dropped."""
    try:
        entries = [e for e in _entries() if e.get("manifest") != manifest_uri]
        entries.append({"sweep_id": sweep_id, "manifest": manifest_uri, "created": created, "seen": time.time()})
        entries = sorted(entries, key=lambda e: float(e.get("created") or 0))[-KEEP:]  # type: ignore[arg-type]
        path = index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(entries, indent=0))
        os.replace(tmp, path)  # a concurrent reader sees the old index or the new one, never half of one
    except (OSError, TypeError, ValueError) as e:
        log.debug("sweep index not updated: %s", e)


def recent() -> List[str]:
    """The manifest URIs of the indexed sweeps, newest first."""
    entries = sorted(_entries(), key=lambda e: -float(e.get("created") or 0))  # type: ignore[arg-type]
    return [str(e["manifest"]) for e in entries]
