"""Submission throughput of the vertex backend against the local JobService emulator (not a test).

    .venv/bin/python benchmarks/bench_submit.py [--jobs 200] [--latency-ms 100]

Creates N CustomJobs through a serial create loop and through the vertex backend's create path (concurrent,
rate-limited, exactly-once; `create_jobs` below), each against the emulator with the same added latency per call, then polls the sweep once
and prints the API calls it took. The jobs sleep, one runs at a time, and all are cancelled at the end.
The backend's create rate limit is lifted here (Vertex allows about 60 creates a minute per region, which
alone would take N seconds): this measures the client, not the quota.
"""
import argparse
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

from hydra_plugins.hydra_vertex_ai import _emulator
from hydra_plugins.hydra_vertex_ai._backends.vertex import CREATE_THREADS, VertexBackend, _Tracked, make_client
from hydra_plugins.hydra_vertex_ai._backends.vertex_client import proto_of

PROJECT, LOCATION = "bench", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"


def job(sweep: str, num: int) -> Dict[str, Any]:
    return {
        "displayName": f"{sweep}-{num}",
        "labels": {"hydra_sweep": sweep, "hydra_job": str(num), "hydra_uid": f"{sweep}-{num}"},
        "jobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": "1",
            "containerSpec": {"imageUri": "bench", "command": ["python", "-c", "import time; time.sleep(600)"]},
        }]},
    }  # fmt: skip


def serial(client: Any, jobs: List[Dict[str, Any]]) -> float:
    from google.cloud.aiplatform_v1 import CustomJob

    start = time.perf_counter()
    for spec in jobs:
        client.create_custom_job(parent=PARENT, custom_job=proto_of(CustomJob, spec))
    return time.perf_counter() - start


def create_jobs(backend: VertexBackend, jobs: List[Dict[str, Any]]) -> List[str]:
    """Create every job the way `run_jobs` does (its threads, limiter, exactly-once create), without waiting."""
    import threading

    tracked = [_Tracked(dict(job), str(job["labels"]["hydra_uid"])) for job in jobs]
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=min(CREATE_THREADS, len(jobs)) or 1) as pool:
        list(pool.map(lambda job: backend._create_custom_job(job, stop), tracked))
    return [job.name or "" for job in tracked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    knobs = _emulator.Knobs(latency_s=args.latency_ms / 1000.0)
    with tempfile.TemporaryDirectory() as tmp, _emulator.running(Path(tmp), knobs, max_running=1) as emulator:
        client = make_client(LOCATION, emulator.address)
        serial_s = serial(client, [job("bench-serial", i) for i in range(args.jobs)])

        backend = VertexBackend(
            client, project=PROJECT, location=LOCATION, staging_dir="gs://bench/staging", sweep_id="bench-backend",
            create_rate_per_minute=1e9,
        )  # fmt: skip
        start = time.perf_counter()
        names = create_jobs(backend, [job("bench-backend", i) for i in range(args.jobs)])
        backend_s = time.perf_counter() - start
        assert len(set(names)) == args.jobs

        before = dict(emulator.calls)
        backend.poll([])
        lists = emulator.calls["ListCustomJobs"] - before.get("ListCustomJobs", 0)
        gets = emulator.calls["GetCustomJob"] - before.get("GetCustomJob", 0)
        per_job_gets = baseline_poll(client, names, emulator)
        created = sum(emulator.creates_by_uid[f"bench-backend-{i}"] for i in range(args.jobs))

    ratio = serial_s / backend_s
    print(f"{args.jobs} CustomJob creates at {args.latency_ms:.0f} ms added latency per call")
    print(f"  serial create loop        {serial_s:7.2f} s")
    print(f"  vertex backend creates    {backend_s:7.2f} s   ({ratio:.1f}x faster, {created} jobs created)")
    print(f"  one poll of the whole sweep: {lists} ListCustomJobs call(s) (page size 100), {gets} GetCustomJob;"
          f" polling by one GET per job: {per_job_gets} calls")
    print(f"RESULT|Submitting N={args.jobs} jobs, emulator at {args.latency_ms:.0f} ms per call"
          f"|serial create loop: {serial_s:.2f} s|≥ 20× faster; print calls"
          f"|**{ratio:.1f}×** ({backend_s:.2f} s), {created} creates for {args.jobs} jobs|{'met' if ratio >= 20 else 'missed'}")
    print(f"RESULT|API calls per poll, {args.jobs} jobs|one GET per job per poll: {per_job_gets} calls"
          f"|1 List (+ pages)|**{lists} ListCustomJobs** (page size 100), {gets} GetCustomJob"
          f"|{'met' if gets == 0 and lists <= 1 + args.jobs // 100 else 'missed'}")


def baseline_poll(client: Any, names: List[str], emulator: Any) -> int:
    """The naive poll: one GetCustomJob per job (concurrent, to keep the run short); the calls it makes."""
    before = emulator.calls["GetCustomJob"]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda name: client.get_custom_job(name=name), names))
    return int(emulator.calls["GetCustomJob"] - before)

if __name__ == "__main__":
    main()
