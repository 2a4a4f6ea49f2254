"""The container side: `python -m hydra_plugins.hydra_vertex_ai.entry PAYLOAD_URI [--param=value ...]`.

Loads the staged payload, restores Hydra's state, runs the task with Hydra's `run_job` and writes the
JobReturn back to staging. Exit codes: 0 the task succeeded, 1 it failed, 2 bad usage, 3 the image's
runtime does not match the one that built the payload.

Hydra's plugin scan imports this module, so it imports only the standard library at top level; it never
imports the Vertex SDK at all.
"""
import json
import logging
import os
import sys
from typing import Any, List, Optional

log = logging.getLogger(__name__)

EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_VERSION_MISMATCH = 0, 1, 2, 3


def replica_task() -> Any:
    """This replica's place in the job, from Vertex's CLUSTER_SPEC; a lone container is the chief."""
    spec = json.loads(os.environ.get("CLUSTER_SPEC") or "{}")
    return spec.get("task", {"type": "workerpool0", "index": 0})


def is_chief() -> bool:
    return bool(replica_task().get("type", "workerpool0") == "workerpool0")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m hydra_plugins.hydra_vertex_ai.entry PAYLOAD_URI [--param=value ...]", file=sys.stderr)
        return EXIT_USAGE
    from . import _payload, _storage

    try:
        payload: _payload.JobPayload = _payload.loads(_storage.read_bytes(args[0]))
        context: _payload.SweepContext = _payload.loads(_storage.read_bytes(payload.context_uri))
    except _payload.VersionMismatchError as e:
        print(f"hydra-vertex-ai: {e}", file=sys.stderr)
        return EXIT_VERSION_MISMATCH
    ret = _run(payload, context, args[1:])
    if is_chief():
        _storage.write_bytes(payload.result_uri, _payload.dump_result(ret))
    from hydra.core.utils import JobStatus

    return EXIT_OK if ret.status == JobStatus.COMPLETED else EXIT_TASK_FAILED


def _run(payload: Any, context: Any, trial_flags: List[str]) -> Any:
    from hydra.core.singleton import Singleton
    from hydra.core.utils import run_job, setup_globals
    from omegaconf import open_dict

    from ._payload import failed_return

    from ._distributed import torch_env

    os.environ.update(torch_env(os.environ))
    Singleton.set_state(context.singleton_state)
    setup_globals()
    config = payload.config
    if trial_flags:
        print(f"hydra-vertex-ai: unexpected arguments {trial_flags}", file=sys.stderr)
    job_id = os.environ.get("CLOUD_ML_JOB_ID")
    if job_id:
        with open_dict(config):
            config.hydra.job.id = job_id
    try:
        return run_job(
            hydra_context=context.hydra_context,
            task_function=context.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except Exception as e:  # Hydra itself failed around the task (output dir, callbacks): still report it
        log.exception("hydra-vertex-ai: the job failed outside the task")
        return failed_return(config, list(config.hydra.overrides.task), e)


if __name__ == "__main__":
    sys.exit(main())
