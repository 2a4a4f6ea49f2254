"""Run a Hydra app's launch with `hydra/launcher=vertex_ai` up to staging, timing what it builds and writes.

Usage: python _payload_probe.py APP.py [overrides...]. The app runs as `__main__`, as a user runs it, so
cloudpickle ships its task function by value. The backend never runs the jobs: once everything is staged,
the probe prints one JSON line (PROBE {...}) and stops.
"""
import json
import runpy
import sys
import time
from typing import Any, Dict, List

from hydra_plugins.hydra_vertex_ai import _launch, _payload, _snapshot, _storage
from hydra_plugins.hydra_vertex_ai._backends import local

records: Dict[str, List[Dict[str, Any]]] = {"dumps": [], "writes": [], "snapshot": [], "stage": [], "launch": []}


class Staged(BaseException):
    """Raised instead of running the jobs; BaseException so Hydra's error reporting lets it through."""


def timed(name: str, fn: Any, describe: Any = None) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        entry = {"s": time.perf_counter() - start}
        if describe:
            entry.update(describe(args, kwargs, out))
        records[name].append(entry)
        return out

    return wrapper


def stop(self: Any, jobs: Any, outputs: Any = None) -> Any:
    raise Staged()


def main() -> None:
    app, overrides = sys.argv[1], sys.argv[2:]
    _payload.dumps = timed("dumps", _payload.dumps, lambda a, k, out: {"type": type(a[0]).__name__,
                                                                       "bytes": len(out)})
    _storage.write_bytes = timed("writes", _storage.write_bytes, lambda a, k, out: {"uri": a[0],
                                                                                   "bytes": len(a[1])})
    _snapshot.stage_snapshot = timed("snapshot", _snapshot.stage_snapshot)
    _launch.stage = timed("stage", _launch.stage)  # type: ignore[assignment]
    local.LocalBackend.run_jobs = stop  # type: ignore[method-assign]
    sys.argv = [app, "-m", "hydra/launcher=vertex_ai", *overrides]
    start = time.perf_counter()
    try:
        runpy.run_path(app, run_name="__main__")
    except Staged:
        records["launch"].append({"s": time.perf_counter() - start})
        print("PROBE " + json.dumps(records), flush=True)
        return
    sys.exit("the launch ended without reaching the backend")


if __name__ == "__main__":
    main()
