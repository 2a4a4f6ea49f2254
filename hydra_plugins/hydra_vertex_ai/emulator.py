"""`python -m hydra_plugins.hydra_vertex_ai.emulator --port PORT`: Vertex AI's JobService, offline.

Serves google.cloud.aiplatform.v1.JobService on loopback and runs the jobs it receives as local processes.
Point the launcher at it with `hydra.launcher.backend=vertex hydra.launcher.api_endpoint=127.0.0.1:PORT`.
With `--gcs-port`, a Cloud Storage emulator runs beside it (export the STORAGE_EMULATOR_HOST it prints).

Hydra's plugin scan imports this module in every app, so only the standard library is imported at top
level; the server lives in `_emulator`.
"""
import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hydra_plugins.hydra_vertex_ai.emulator", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8470, help="JobService port (0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--workdir", type=Path, default=None, help="job logs and the /gcs stand-in (default: a temp dir)")
    p.add_argument("--max-running", type=int, default=None, help="jobs running at once (default: CPU cores)")
    p.add_argument("--gcs-port", type=int, default=None, help="also serve a Cloud Storage emulator on this port")
    p.add_argument("--bucket", action="append", default=[], help="bucket to create in that storage emulator")
    faults = p.add_argument_group("faults (for testing clients)")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    faults.add_argument("--fail-rate", type=float, default=0.0, help="fraction of calls refused")
    faults.add_argument("--fail-codes", default="UNAVAILABLE", help="comma-separated gRPC codes of refusals")
    faults.add_argument("--lose-reply-rate", type=float, default=0.0, help="fraction of calls done, reply lost")
    faults.add_argument("--quota-creates-per-minute", type=int, default=None, help="RESOURCE_EXHAUSTED beyond")
    faults.add_argument("--accelerator-quota", action="append", default=[], metavar="TYPE=N",
                        help="at most N accelerators of TYPE (e.g. NVIDIA_L4=1) in use at once; repeatable")
    faults.add_argument("--seed", type=int, default=None)
    return p


def _accelerator_quota(items: List[str]) -> Dict[str, int]:
    from ._vertex_facts import ACCELERATOR_TYPES

    quota = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or name not in ACCELERATOR_TYPES or not count.isdigit():
            raise ValueError(f"'{item}' is not TYPE=N with TYPE one of {', '.join(ACCELERATOR_TYPES)}")
        quota[name] = int(count)
    return quota


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from ._vertex_facts import is_loopback

    if not is_loopback(args.host):
        print("the emulator has no authentication: it listens on loopback addresses only", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    from . import _emulator
    from ._signals import interrupts

    storage = None
    if args.gcs_port is not None:
        storage = _emulator.StorageEmulator(args.gcs_port, args.bucket)
        os.environ["STORAGE_EMULATOR_HOST"] = storage.host  # the jobs inherit it
    try:
        accelerator_quota = _accelerator_quota(args.accelerator_quota)
    except ValueError as e:
        print(f"--accelerator-quota: {e}", file=sys.stderr)
        return 2
    knobs = _emulator.Knobs(
        latency_s=args.latency_ms / 1000.0,
        fail_rate=args.fail_rate,
        fail_codes=tuple(c.strip().upper() for c in args.fail_codes.split(",") if c.strip()),
        lose_reply_rate=args.lose_reply_rate,
        quota_creates_per_minute=args.quota_creates_per_minute,
        accelerator_quota=accelerator_quota,
        seed=args.seed,
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vertex-emulator-"))
    emulator = _emulator.JobServiceEmulator(workdir, knobs, args.max_running)
    address = emulator.start(args.port, args.host)
    print(f"Vertex AI JobService emulator on {address}; job logs under {workdir}", flush=True)
    if storage is not None:
        print(f"Cloud Storage emulator: export STORAGE_EMULATOR_HOST={storage.host}", flush=True)
    print(f"Launch with: hydra.launcher.backend=vertex hydra.launcher.api_endpoint={address} "
          "hydra.launcher.project=local hydra.launcher.staging_dir=gs://BUCKET/staging "
          "hydra.launcher.job.image_uri=local", flush=True)
    try:
        with interrupts():  # SIGTERM and SIGHUP stop the jobs as Ctrl-C does: their processes are not orphaned
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping: cancelling running jobs", file=sys.stderr, flush=True)
    finally:
        emulator.stop()
        if storage is not None:
            storage.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
