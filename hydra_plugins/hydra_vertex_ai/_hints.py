"""What to set when a job failed because a setting of this machine was not shipped: one line, or None.

- A variable this machine has and the job's environment lacks (`${oc.env:USER}`, `os.environ["USER"]`): the job
  gets only `job.env` (and, locally, the documented passthrough), as a Vertex container does.
- A file the job could not open that exists here (relative to the launch dir, or the same path below it in the
  snapshot's copy): it was not shipped with the source snapshot (gitignored or excluded).
"""
import os
import re
from pathlib import Path
from typing import AbstractSet, Optional

_ENV_MISSING = (
    re.compile(r"Environment variable '([A-Za-z_][A-Za-z0-9_]*)' not found"),  # OmegaConf's oc.env
    re.compile(r"\bKeyError: '([A-Za-z_][A-Za-z0-9_]*)'"),  # os.environ[...]
)
_FILE_MISSING = re.compile(r"No such file or directory: '([^']+)'")
# where the container unpacks the snapshot (_snapshot.unpack): <tmp>/hydra_vertex_ai/snapshots/<sha256>/<path>
_IN_SNAPSHOT = re.compile(r"/hydra_vertex_ai/snapshots/[0-9a-f]{64}/(.+)$")


def host_setting_hint(reason: str, job_env: AbstractSet[str], launch_dir: str, key: str) -> Optional[str]:
    """The hint for a failure `reason` (its exception line), given the variables the job had and the launch dir."""
    for pattern in _ENV_MISSING:
        found = pattern.search(reason)
        if found and found.group(1) in os.environ and found.group(1) not in job_env:
            name = found.group(1)
            return (f"{name} is set on this machine but not in the job's environment: set {key}.job.env.{name} "
                    f"(the local backend can also pass it through with {key}.local_env_passthrough)")
    found = _FILE_MISSING.search(reason)
    if found:
        here = _here(found.group(1), launch_dir)
        if here:
            return (f"{found.group(1)} was not shipped: {here} exists here but not in the job's copy of the source "
                    f"(gitignored or excluded): add it to {key}.snapshot.include, or read it from a gs:// or /gcs/ path")
    return None


def _here(path: str, launch_dir: str) -> Optional[str]:
    """Where `path`, as the job named it, exists on this machine, or None."""
    inside = _IN_SNAPSHOT.search(path)
    if inside:  # a path in the snapshot's copy: the same path below the launch dir or one of its parents
        for folder in [Path(launch_dir), *Path(launch_dir).parents]:
            if (folder / inside.group(1)).exists():
                return str(folder / inside.group(1))
        return None
    candidate = Path(path) if os.path.isabs(path) else Path(launch_dir, path)
    return str(candidate) if candidate.exists() else None
