"""Payload and source snapshot of the example app: sizes, and the time to build and stage them.

A launch of `examples/lightning_classifier/train.py` (or `tests/apps/shipped` when the example is absent) with
`hydra/launcher=vertex_ai` runs up to staging in a probe process (_payload_probe.py); no job runs.
"""
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

from _common import PYTHON, REPO, WORK, header, median, result, run_process

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
EXAMPLE = REPO / "examples" / "lightning_classifier" / "train.py"
FALLBACK = REPO / "tests" / "apps" / "shipped" / "app.py"
MB = 1e6


def probe(app: Path, sweep: Path, extra: List[str]) -> Dict[str, Any]:
    shutil.rmtree(sweep, ignore_errors=True)
    cmd = [PYTHON, str(Path(__file__).with_name("_payload_probe.py")), str(app), f"hydra.sweep.dir={sweep}", *extra]
    out = run_process(cmd, cwd=app.parent)[1]
    line = next(line for line in out.splitlines() if line.startswith("PROBE "))
    return dict(json.loads(line[len("PROBE "):]))


def largest_members(archive: Path, n: int = 5) -> List[Tuple[str, int]]:
    with tarfile.open(archive, "r:gz") as tar:
        members = sorted(((m.name, m.size) for m in tar.getmembers()), key=lambda kv: -kv[1])
    return members[:n]


def figures(runs: List[Dict[str, Any]]) -> Dict[str, float]:
    def med(pick: Any) -> float:
        return median([pick(r) for r in runs])

    return {
        "context_bytes": med(lambda r: next(d["bytes"] for d in r["dumps"] if d["type"] == "SweepContext")),
        "job_bytes": med(lambda r: next(d["bytes"] for d in r["dumps"] if d["type"] == "JobPayload")),
        "context_build_s": med(lambda r: sum(d["s"] for d in r["dumps"] if d["type"] == "SweepContext")),
        "jobs_build_s": med(lambda r: sum(d["s"] for d in r["dumps"] if d["type"] == "JobPayload")),
        "snapshot_s": med(lambda r: sum(d["s"] for d in r["snapshot"])),
        "stage_s": med(lambda r: sum(d["s"] for d in r["stage"])),
        "write_s": med(lambda r: sum(d["s"] for d in r["writes"] if not d["uri"].endswith(".tar.gz"))),
    }


def main() -> None:
    app = EXAMPLE if EXAMPLE.exists() else FALLBACK
    header(f"payload and snapshot of {app.relative_to(REPO)}")
    cases = {"default source root (the git work tree)": [],
             "snapshot.root = the app's folder": [f"hydra.launcher.snapshot.root={app.parent}"]}
    overrides = ["model.lr=0.01,0.1"] if app == EXAMPLE else ["x=1,2"]
    for name, extra in cases.items():
        sweep = WORK / "payload" / ("default" if not extra else "app_root")
        runs = [probe(app, sweep, overrides + extra) for _ in range(REPEATS)]  # repeated: a staged snapshot is reused
        shutil.rmtree(sweep / ".vertex_ai" / "snapshots", ignore_errors=True)
        fresh = probe(app, sweep, overrides + extra)  # the snapshot packed and written, as on a first launch
        snap = next(w for w in fresh["writes"] if w["uri"].endswith(".tar.gz"))
        f = figures(runs)
        print(f"-- {name}")
        print(f"  context payload (hydra context, task function, singletons): {f['context_bytes'] / 1e3:.1f} kB, "
              f"built in {f['context_build_s'] * 1000:.0f} ms")
        print(f"  job payload (composed config): {f['job_bytes'] / 1e3:.1f} kB; {len(overrides[0].split(','))} built "
              f"in {f['jobs_build_s'] * 1000:.0f} ms")
        print(f"  source snapshot: {snap['bytes'] / 1e3:.1f} kB (tar.gz); packed and staged in "
              f"{fresh['snapshot'][0]['s'] * 1000:.0f} ms first time, {f['snapshot_s'] * 1000:.0f} ms when unchanged")
        print(f"  staging (all payloads written): {f['stage_s'] * 1000:.0f} ms, of which writes "
              f"{f['write_s'] * 1000:.1f} ms; whole launch up to the backend: "
              f"{median([r['launch'][0]['s'] for r in runs]):.2f} s")
        print("  largest files in the snapshot: " + ", ".join(
            f"{n} ({s / 1e3:.0f} kB)" for n, s in largest_members(Path(snap["uri"]))))
        over = [k for k, v in (("context", f["context_bytes"]), ("job", f["job_bytes"]),
                               ("snapshot", snap["bytes"])) if v > MB]
        print(f"  over 1 MB: {', '.join(over) or 'nothing'}")
        result(f"Payload and snapshot, {app.parent.name} ({name})", "—", "report; explain > 1 MB",
               f"context {f['context_bytes'] / 1e3:.0f} kB, job {f['job_bytes'] / 1e3:.0f} kB, snapshot "
               f"{snap['bytes'] / 1e3:.0f} kB; build+stage {f['stage_s'] * 1000:.0f} ms, snapshot "
               f"{fresh['snapshot'][0]['s'] * 1000:.0f} ms (first) / {f['snapshot_s'] * 1000:.0f} ms (unchanged)",
               None)


if __name__ == "__main__":
    main()
