"""The container side: `python -m hydra_plugins.hydra_vertex_ai.entry PAYLOAD_URI [--param=value ...]`.

Loads the staged payload, restores Hydra's state, runs the task with Hydra's `run_job` and writes the
JobReturn back to staging. In a tuning trial it first turns Vertex's `--<parameter_id>=<value>` flags back
into the trial's Hydra overrides, and afterwards reports the objective with cloudml-hypertune.
Exit codes: 0 the task succeeded, 1 it failed, 2 bad usage or bad trial flags, 3 the image's runtime does
not match the one that built the payload, 4 a trial produced no usable objective, 5 a staged file (the
payload, the sweep context or the source snapshot) is missing, truncated, corrupt or not the one staged:
one line names the file and what is wrong.

Hydra's plugin scan imports this module, so it imports only the standard library at top level; it never
imports the Vertex SDK at all.
"""
import logging
import math
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

log = logging.getLogger(__name__)

EXIT_OK, EXIT_TASK_FAILED, EXIT_USAGE, EXIT_VERSION_MISMATCH, EXIT_NO_METRIC, EXIT_BAD_INPUT = 0, 1, 2, 3, 4, 5


class BadInputError(Exception):
    """A staged file cannot be used; the message names it and says why, on one line."""


def replica_task() -> Any:
    """This replica's place in the job, from Vertex's CLUSTER_SPEC; a lone container is the chief."""
    from ._vertex_facts import replica_task as task_of

    return task_of(os.environ)


def is_chief() -> bool:
    from ._vertex_facts import is_chief as chief

    return chief(os.environ)


def local_rank() -> int:
    """This process's rank on its replica: above 0 in a process a framework (Lightning) started beside ours."""
    text = os.environ.get("LOCAL_RANK", "0")
    return int(text) if text.isdigit() else 0


# What Lightning's launcher appends when it re-runs this command for its other processes on a replica
# (lightning/fabric/strategies/launchers/subprocess_script.py `_hydra_subprocess_cmd`).
_SPAWNED_OVERRIDES = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=")


def _spawned_overrides(args: List[str]) -> Tuple[List[str], List[str]]:
    """(trial flags, Lightning's Hydra overrides): the latter only in a spawned process (LOCAL_RANK > 0)."""
    if local_rank() == 0:
        return args, []
    ours = [a for a in args if not a.startswith(_SPAWNED_OVERRIDES)]
    return ours, [a for a in args if a.startswith(_SPAWNED_OVERRIDES)]


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m hydra_plugins.hydra_vertex_ai.entry PAYLOAD_URI [--param=value ...]", file=sys.stderr)
        return EXIT_USAGE
    from ._payload import VersionMismatchError

    try:
        payload, context = _load(args[0])
    except VersionMismatchError as e:
        print(f"hydra-vertex-ai: {e}", file=sys.stderr)
        return EXIT_VERSION_MISMATCH
    except BadInputError as e:
        print(f"hydra-vertex-ai: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    trial_id = os.environ.get("CLOUD_ML_TRIAL_ID", "0") if payload.parameters else None
    flags, spawned = _spawned_overrides(args[1:])
    try:
        config = _job_config(payload, context, flags, trial_id)
        _as_spawned_process(config, spawned)
    except Exception as e:  # bad flags or an override that does not compose: the trial fails visibly
        print(f"hydra-vertex-ai: cannot build the trial's config: {e}", file=sys.stderr)
        return EXIT_USAGE
    from ._storage import standin_mount

    standin_mount(config, os.environ)  # on a stand-in, /gcs/<bucket>/... in the config reaches the bucket
    outputs = _outputs_on_local_disk(config)
    try:
        return _finish(payload, _run(context, config), trial_id)
    finally:
        if outputs is not None:
            outputs.close()  # the last copy to the bucket: after the result, with the log complete


def _outputs_on_local_disk(config: Any) -> Any:
    """On the Cloud Storage FUSE mount the output dir is run on local disk and copied there (see _output_sync)."""
    from . import _output_sync, _storage

    return _output_sync.relocate(config, os.environ.get(_storage.FUSE_ROOT_ENV, _storage.VERTEX_FUSE_ROOT), os.environ)


def _load(payload_uri: str) -> Tuple[Any, Any]:
    """The job's payload and the shared context, with the shipped source, the task's module and Hydra's state
    in place. The task's module is imported first, from the snapshot, so its module-level code runs (and
    registers its resolvers) as it did on the submitting machine."""
    from . import _payload, _storage

    raw = _step("payload", payload_uri, lambda: _storage.read_bytes(payload_uri))
    meta = _step("payload", payload_uri, lambda: _payload.header(raw))
    _payload.check_versions(meta["versions"], meta.get("by_value", ["unknown"]))
    snapshot = meta.get("snapshot")
    # before unpickling: user types live there
    shipped = _step("source snapshot", (snapshot or {}).get("uri", "?"), lambda: _use_snapshot(snapshot))
    task = _import_task(meta.get("task"), shipped[1] if shipped else None)
    payload = _step("payload", payload_uri, lambda: _payload.loads(raw))
    context_raw = _step("sweep context", payload.context_uri, lambda: _storage.read_bytes(payload.context_uri))
    context = _step("sweep context", payload.context_uri, lambda: _payload.loads(context_raw))
    _restore(context)
    if task is not None:
        context.task_function = task
    if shipped:  # needs the restored singletons: Hydra's config source registry
        from ._snapshot import remap_config_search_path

        remap_config_search_path(context.hydra_context.config_loader, *shipped)
    return payload, context


def _import_task(data: Optional[dict], snapshot_dir: Any) -> Any:
    """The task function, imported by reference from the snapshot (None when it travels by value)."""
    if not data:
        return None
    from ._task_ref import TaskRef, import_module, task_of

    ref = TaskRef.from_json(data)
    return task_of(import_module(ref, snapshot_dir), ref)


def _step(what: str, uri: str, fn: Callable[[], Any]) -> Any:
    """`fn()`, any failure but a version mismatch turned into one line naming the file (no stack)."""
    from ._payload import VersionMismatchError

    try:
        return fn()
    except VersionMismatchError:
        raise
    except Exception as e:
        why = (str(e).strip().splitlines() or [""])[0][:300]
        raise BadInputError(f"the {what} {uri} cannot be used: {type(e).__name__}: {why}") from None


def _finish(payload: Any, ret: Any, trial_id: Optional[str]) -> int:
    """The chief writes the JobReturn and, in a trial, reports the objective; the exit code says how it went."""
    from . import _payload, _storage

    code = _exit_code(ret)
    if not is_chief() or local_rank() > 0:  # one result per job: the chief replica's first process writes it
        return code
    _storage.write_bytes(payload.result_uri.replace("{trial_id}", trial_id or ""), _payload.dump_result(ret))
    if code != EXIT_OK or payload.metric_id is None:
        return code
    reason = report_objective(ret.return_value, payload.metric_id)
    if reason:
        print(f"hydra-vertex-ai: no objective reported: {reason}", file=sys.stderr)
        return EXIT_NO_METRIC
    return EXIT_OK


def _use_snapshot(data: Optional[dict]) -> Optional[Tuple[Any, Any]]:
    """Unpack the shipped source and put it on sys.path; returns (snapshot, where) or None."""
    if not data:
        return None
    from ._snapshot import Snapshot, activate, unpack

    snapshot = Snapshot.from_json(data)
    target = unpack(snapshot)
    activate(snapshot, target)
    return snapshot, target


def _restore(context: Any) -> None:
    """Hydra's singletons as they were on the submitting machine, the resolvers this process registered (OmegaConf's,
    Hydra's, the task module's) plus the user's others from the context; torch.distributed's env."""
    from hydra.core.singleton import Singleton
    from hydra.core.utils import setup_globals
    from omegaconf import OmegaConf
    from omegaconf.basecontainer import BaseContainer

    from ._distributed import torch_env
    from ._plugin_scan import with_scan

    os.environ.update(torch_env(os.environ))
    registered = dict(BaseContainer._resolvers)
    Singleton.set_state(with_scan(context.singleton_state))
    BaseContainer._resolvers.update(registered)
    setup_globals()
    for name, fn, use_cache in getattr(context, "resolvers", []):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=use_cache)
    for name, wrapper in getattr(context, "raw_resolvers", {}).items():
        BaseContainer._resolvers.setdefault(name, wrapper)
    missing = [name for name in getattr(context, "from_import", []) if not OmegaConf.has_resolver(name)]
    if missing:
        log.warning("hydra-vertex-ai: importing the task's script did not register the resolver(s) %s it registered "
                    "on the submitting machine: register them at module level", ", ".join(missing))


def _job_config(payload: Any, context: Any, trial_flags: List[str], trial_id: Optional[str]) -> Any:
    """The launcher ships a composed config; a trial composes its own from the flags Vertex appended."""
    from omegaconf import open_dict, read_write

    config = payload.config
    if trial_id is not None:
        from ._search_space import trial_overrides

        overrides = list(payload.fixed_overrides) + trial_overrides(payload.parameters, trial_flags, payload.conditions)
        config = _trial_config(context.hydra_context.config_loader, payload, overrides)
        with open_dict(config):
            # Vertex numbers trials from 1 (CLOUD_ML_TRIAL_ID); Hydra's sweepers number jobs from 0
            config.hydra.job.num = int(trial_id) - 1 if trial_id.isdigit() and int(trial_id) > 0 else 0
        with read_write(config.hydra.sweep):
            config.hydra.sweep.dir = payload.sweep_dir
        from .metrics import METRIC_ID_ENV

        os.environ[METRIC_ID_ENV] = payload.metric_id  # user code's report_metric() reports under it
    elif trial_flags:
        raise ValueError(f"unexpected arguments {trial_flags}")
    # composed on the submitting machine, whose cwd is not ours; Lightning starts its processes in
    # `get_original_cwd()`
    with read_write(config.hydra.runtime):
        config.hydra.runtime.cwd = os.getcwd()
    job_id = os.environ.get("CLOUD_ML_JOB_ID")
    if job_id:
        with open_dict(config):
            config.hydra.job.id = job_id
    task = replica_task()
    if not is_chief():  # every replica runs the job: each other one logs below the chief's output dir
        with read_write(config.hydra.sweep):
            config.hydra.sweep.subdir = f"{config.hydra.sweep.subdir}/{task['type']}-{task.get('index', 0)}"
    return config


def _trial_config(loader: Any, payload: Any, overrides: List[str]) -> Any:
    """Hydra's `load_sweep_config` of the trial's overrides: derived from a template the sweeper verified when the
    overrides have its shape (local warm start: 50-100 ms less per trial), composed by Hydra otherwise."""
    templates = getattr(payload, "trial_templates", None)
    if not templates:
        return loader.load_sweep_config(payload.config, overrides)
    from ._compose_cache import SweepComposer

    return SweepComposer.with_templates(loader, payload.config, templates).compose(overrides)


def _as_spawned_process(config: Any, spawned: List[str]) -> None:
    """A process Lightning started shares its replica's output dir: its own log name, no .hydra/ (as Lightning
    asks, so that two processes do not write one config.yaml); the output dir stays the job's."""
    if local_rank() == 0:
        return
    from omegaconf import open_dict

    names = [a.split("=", 1)[1] for a in spawned if a.startswith("hydra.job.name=")]
    with open_dict(config):
        config.hydra.job.name = names[-1] if names else f"{config.hydra.job.name}_process_{local_rank()}"
        config.hydra.output_subdir = None


def _run(context: Any, config: Any) -> Any:
    from hydra.core.utils import run_job

    from ._payload import failed_return

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


def _exit_code(ret: Any) -> int:
    from hydra.core.utils import JobStatus

    if ret.status == JobStatus.COMPLETED:
        return EXIT_OK
    if isinstance(ret._return_value, BaseException):  # the job's log is where a cloud user looks first
        import traceback

        print("hydra-vertex-ai: the task failed:", file=sys.stderr)
        traceback.print_exception(ret._return_value, file=sys.stderr)
    return EXIT_TASK_FAILED


def objective_value(value: Any, metric_id: str) -> Tuple[Optional[float], str]:
    """The number to report from what the task returned, or why there is none."""
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        if metric_id not in value:
            return None, f"the task returned a mapping without '{metric_id}' (keys: {', '.join(map(str, value))})"
        value = value[metric_id]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"the task returned {type(value).__name__} {value!r}, not a number or a mapping with '{metric_id}'"
    if not math.isfinite(value):
        return None, f"the objective '{metric_id}' is {value}"
    return float(value), ""


def report_objective(value: Any, metric_id: str) -> str:
    """Report the task's objective with cloudml-hypertune; return why nothing was reported, or ''."""
    number, reason = objective_value(value, metric_id)
    if number is None:
        return reason
    from .metrics import report_metric

    if not report_metric(number, metric_id=metric_id):
        return "cloudml-hypertune recorded nothing: CLOUD_ML_TRIAL_ID is not set (is this a tuning trial?)"
    return ""


if __name__ == "__main__":
    sys.exit(main())
