"""Where everything of a sweep is staged, in one place, and `stage()` that writes it.

Layout under the configured `staging_dir` (a local folder or a gs:// URI):

    snapshots/<sha256>.tar.gz        source snapshots, shared by every sweep (content-addressed)
    packages/<sha256>/<name>.whl     without an image: this package's wheel and the requirements' (content-addressed)
    sweeps/<sweep dir>/...           vertex: the jobs' Hydra output dirs, seen through the FUSE mount
    <sweep_id>/manifest.json         what was launched: the record a re-attach or the CLI reads
    <sweep_id>/context-<batch>.pkl   shared by the jobs of one launch batch (HydraContext, task, singletons)
    <sweep_id>/jobs/<num>/           one launcher job: payload.pkl, result.pkl; local: workerpool<i>-<r>.log,
                                     job.json (its spec), pids.json (its processes), outcome.json (how it ended)
    <sweep_id>/supervisor.*          local, wait=false: the detached process that runs the jobs, and its log
    <sweep_id>/outputs/<num>/        its base output directory (AIP_MODEL_DIR & co), unless the job sets one:
                                     then <job.base_output_dir>/<sweep_id>/<num> (a trial: .../<sweep_id>/<trial>)
    <sweep_id>/context.pkl, study/payload.pkl   a study's shared context and its one payload
    <sweep_id>/trials/<trial id>/    one trial: result.pkl, logs and metrics (local)
"""
import json
import logging
import os
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from . import _storage
from ._pids import pid_record
from ._vertex_facts import sanitize_label

if TYPE_CHECKING:
    from ._backends.base import Backend

log = logging.getLogger(__name__)

# payloads written at once: staging may be a bucket
_STAGING_THREADS = 16
# results read at once, by the launcher and the sweeper (each read gives up after retry_timeout_s)
COLLECT_THREADS = 16
# the jobs' Hydra output dirs in the bucket, below the staging dir (a staging dir named `hydra` no longer reads
# `.../hydra/hydra/...`)
SWEEPS_DIR = "sweeps"
# a trial's id in the study payload's result path, filled in by the container
TRIAL_ID_FIELD = "{trial_id}"


def new_sweep_id(job_name: str) -> str:
    """Unique, label-safe, and short enough that `<sweep_id>-<job num>` stays a valid label value."""
    name = sanitize_label(job_name)[:30].strip("-") or "hydra"
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def replica_log(workdir: "str | Path", pool: int = 0, index: int = 0) -> Path:
    """A local replica's output in its job or trial dir: the chief's by default."""
    return Path(workdir) / f"workerpool{pool}-{index}.log"


@dataclass(frozen=True)
class Staging:
    """Every staged location of one sweep: `staging_dir` as configured, and the sweep's id."""

    staging_dir: str
    sweep_id: str

    @staticmethod
    def of(staging_dir: str, sweep_id: str) -> "Staging":
        base = staging_dir.rstrip("/") if _storage.is_gcs(staging_dir) else os.path.abspath(staging_dir)
        return Staging(base, sweep_id)

    @property
    def root(self) -> str:
        return _storage.join(self.staging_dir, self.sweep_id)

    def snapshot(self, digest: str) -> str:
        return _storage.join(self.staging_dir, "snapshots", f"{digest}.tar.gz")

    def package(self, digest: str, filename: str) -> str:
        """A wheel of the python-package path, under its content hash (pip needs the file's own name)."""
        return _storage.join(self.staging_dir, "packages", digest, filename)

    @property
    def manifest(self) -> str:
        return _storage.join(self.root, "manifest.json")

    # --- launcher jobs -----------------------------------------------------------------------------------

    def context(self, batch: int) -> str:
        return _storage.join(self.root, f"context-{batch}.pkl")

    def job_dir(self, num: int) -> str:
        return _storage.join(self.root, "jobs", str(num))

    def payload(self, num: int) -> str:
        return _storage.join(self.job_dir(num), "payload.pkl")

    def result(self, num: int) -> str:
        return _storage.join(self.job_dir(num), "result.pkl")

    def outputs(self, configured: Optional[str]) -> str:
        """The base output directory of a study's trials (Vertex adds the trial id), or the parent of jobs':
        `<job.base_output_dir>/<sweep id>` when one is configured, so that two runs never share a model dir."""
        return _storage.join(configured, self.sweep_id) if configured else _storage.join(self.root, "outputs")

    def base_output(self, num: int, configured: Optional[str]) -> str:
        """A launcher job's base output directory: its own folder under `outputs`."""
        return _storage.join(self.outputs(configured), str(num))

    # --- a study -----------------------------------------------------------------------------------------

    @property
    def study_context(self) -> str:
        return _storage.join(self.root, "context.pkl")

    @property
    def study_payload(self) -> str:
        return _storage.join(self.root, "study", "payload.pkl")

    @property
    def trials_dir(self) -> str:
        return _storage.join(self.root, "trials")

    @property
    def trials_record(self) -> str:
        """A local study's REST trials as they stand (what `hydra-vertex-ai status` shows of it)."""
        return _storage.join(self.trials_dir, "trials.json")

    def trial_dir(self, trial_id: str) -> str:
        return _storage.join(self.trials_dir, trial_id)

    def trial_result(self, trial_id: str = TRIAL_ID_FIELD) -> str:
        """A trial's result; with no id, the template the container fills in."""
        return _storage.join(self.trial_dir(trial_id), "result.pkl")

    @staticmethod
    def of_study_payload(payload_uri: str) -> "Staging":
        """The staging of the study whose payload is `payload_uri` (how a resumed study finds its trials)."""
        root = _storage.parent(_storage.parent(payload_uri))
        return Staging(_storage.parent(root), _storage.basename(root))

    # --- outputs -----------------------------------------------------------------------------------------

    def bucket_mirror(self, local_path: str) -> str:
        """Where a job running on Vertex writes what this machine calls `local_path` (its sweep dir):
        `<staging_dir>/sweeps/<path relative to the cwd>`, or the absolute path mirrored outside the cwd."""
        absolute = os.path.abspath(local_path)
        relative = os.path.relpath(absolute)
        if relative == os.curdir or relative.startswith(os.pardir):
            relative = absolute.lstrip(os.sep)
        return _storage.join(self.staging_dir, SWEEPS_DIR, *Path(relative).parts)


def stage(
    staging: Staging,
    snapshot_conf: Any,
    key: str,
    hydra_context: Any,
    task_function: Any,
    context_uri: str,
    payloads: Mapping[str, Any],
) -> None:
    """Stage the source snapshot, the shared context (once) and every job's small payload (in parallel)."""
    header = stage_context(staging, snapshot_conf, key, hydra_context, task_function, context_uri)
    with ThreadPoolExecutor(max_workers=_STAGING_THREADS) as pool:
        list(pool.map(lambda item: stage_payload(header, *item), payloads.items()))


def stage_context(
    staging: Staging, snapshot_conf: Any, key: str, hydra_context: Any, task_function: Any, context_uri: str
) -> Dict[str, Any]:
    """Stage the source snapshot and the shared context; return the header every payload file carries.

    Every file's header names the snapshot and how the task travels (`task_ref`: "module:qualname", or
    "path/of/script.py:qualname" in the snapshot), so the container can put the user's code on sys.path and
    import the task's module before it unpickles anything."""
    from hydra.core.singleton import Singleton

    from . import _payload, _snapshot, _task_ref

    snapshot = _snapshot.stage_snapshot(snapshot_conf, staging, task_function, hydra_context.config_loader, key)
    ref, why = _task_ref.reference(task_function, snapshot.root if snapshot else None,
                                   set(snapshot.files) if snapshot else None)
    if ref is None:
        log.warning("The task function travels by value (cloudpickle), so the image needs this machine's Python "
                    "minor version: %s", why)
    header = {"snapshot": snapshot.to_json() if snapshot else None,
              "task": ref.to_json() if ref else None, "task_ref": str(ref) if ref else None}
    imported = ref is not None and getattr(task_function, "__module__", None) == "__main__"
    state, resolvers, raw, from_import = split_resolvers(Singleton.get_state(), imported)
    context = _payload.SweepContext(hydra_context, None if ref else task_function, state, resolvers, raw, from_import)
    _storage.write_bytes(context_uri, _payload.dumps(context, **header))
    return header


def stage_payload(header: Mapping[str, Any], uri: str, payload: Any) -> None:
    """Stage one job's payload (or a study's), with the header `stage_context` returned."""
    from . import _payload

    _storage.write_bytes(uri, _payload.dumps(payload, **header))


# --- the sweep manifest ----------------------------------------------------------------------------------

MANIFEST_NAME = "manifest.json"
# a job entry's flag: cancelled (by Ctrl-C or `hydra-vertex-ai cancel`) before it was created
CANCELLED_FIELD = "cancelled"
# where local sweeps are looked for, below the working directory, when only a sweep id is given
LOCAL_SEARCH_GLOBS = ("multirun/**/.vertex_ai", "outputs/**/.vertex_ai", "*/.vertex_ai")


class ManifestNotFound(LookupError):
    """No manifest for the sweep id or path the user gave."""


def write_manifest(staging: Staging, manifest: Mapping[str, Any]) -> None:
    """Write (or replace) the sweep's manifest: what a re-attach and the CLI read. Never holds credentials.
    The per-user sweep index remembers where it is (`hydra-vertex-ai list` from any directory)."""
    from . import _sweep_index

    _storage.write_bytes(staging.manifest, json.dumps(manifest, indent=1, sort_keys=True).encode())
    uri = staging.manifest if _storage.is_gcs(staging.manifest) else os.path.abspath(staging.manifest)
    _sweep_index.remember(str(manifest.get("sweep_id")), uri, float(manifest.get("created") or time.time()))


def manifest_header(kind: str, sweep_id: str, job_name: str, sweep_dir: str, conf: Any, backend: "Backend") -> Dict[str, Any]:
    """What every sweep manifest records: what ran, where its outputs go, who runs it, how to reach its jobs."""
    header: Dict[str, Any] = {
        "version": 1,
        "kind": kind,
        "sweep_id": sweep_id,
        "created": time.time(),
        "command": [sys.executable, *sys.argv],
        "job_name": job_name,
        "sweep_dir": os.path.abspath(sweep_dir),
        # where the jobs write the sweep dir (vertex: its bucket mirror), for `collect`
        "outputs_uri": backend.output_uri(sweep_dir),
        # the launching process: `cancel` of a local sweep stops it (it then stops its jobs)
        "owner": pid_record(os.getpid()),
        # what the CLI needs to reach the sweep's jobs again; never credentials
        "backend": conf.backend.value,
        "staging_dir": backend.staging.staging_dir,
    }
    parent = getattr(backend, "parent", None)
    if parent:  # vertex: projects/P/locations/L
        header.update(project=parent.split("/")[1], location=parent.split("/")[3], api_endpoint=conf.api_endpoint)
        # which outputs `collect` copies back, as the run would have
        header["sync_outputs"] = {"max_mb": conf.sync_outputs_max_mb, "include": list(conf.sync_outputs_include),
                                  "exclude": list(conf.sync_outputs_exclude)}
    else:
        header["max_parallel"] = conf.max_parallel
    return header


def read_manifest(uri: str) -> Dict[str, Any]:
    return dict(json.loads(_storage.read_bytes(uri)))


# what a re-attach keeps of a job's earlier entry: its resource name, and that it was cancelled before it existed
_KEPT_JOB_FIELDS = ("name", CANCELLED_FIELD)


def merge_jobs(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The manifest's job list after another launch batch (or a re-attach): by job number, newest wins, except
    what only the sweep's history knows (`_KEPT_JOB_FIELDS`)."""
    by_num = {int(job["num"]): dict(job) for job in old}
    for job in new:
        earlier = by_num.get(int(job["num"]), {})
        by_num[int(job["num"])] = {**{k: earlier[k] for k in _KEPT_JOB_FIELDS if k in earlier}, **job}
    return [by_num[num] for num in sorted(by_num)]


def update_jobs(staging: Staging, change: Callable[[Dict[str, Any]], None]) -> Dict[str, Any]:
    """Apply `change` to each job entry of the manifest as it is now (the CLI may have written it since)."""
    manifest = read_manifest(staging.manifest)
    for job in manifest.get("jobs", []):
        change(job)
    write_manifest(staging, manifest)
    return manifest


def cancelled_uids(manifest: Mapping[str, Any]) -> Set[str]:
    """The hydra_uids of the jobs cancelled before they were created: never to be created."""
    return {str(job["hydra_uid"]) for job in manifest.get("jobs", []) if job.get(CANCELLED_FIELD)}


def record_cancelled(staging: Staging, uids: Iterable[str]) -> None:
    """Record jobs that were cancelled before they existed, so that no re-attach creates them."""
    wanted = set(uids)
    if wanted:
        update_jobs(staging, lambda job: job.update({CANCELLED_FIELD: True}) if job.get("hydra_uid") in wanted else None)


def find_manifest(ref: str, staging_dirs: Sequence[str] = (), search_root: str = ".") -> str:
    """The manifest URI for `ref`: a manifest path or URI, a sweep's staging folder, or a sweep id looked up
    under each of `staging_dirs`, then in the local sweeps below `search_root` (multirun/**/.vertex_ai)."""
    ref = ref.rstrip("/")
    candidates = []
    if ref.endswith(".json"):
        candidates.append(ref)
    elif _storage.is_gcs(ref) or os.sep in ref:
        candidates.append(_storage.join(ref, MANIFEST_NAME))
    else:
        candidates += [Staging.of(d, ref).manifest for d in staging_dirs if d]
    for uri in candidates:
        try:
            if _storage.exists(uri):
                return uri
        except Exception as e:  # e.g. a bucket without credentials: say so in one line
            raise ManifestNotFound(f"cannot read {uri}: {e}") from None
    if not (_storage.is_gcs(ref) or os.sep in ref or ref.endswith(".json")):
        for pattern in LOCAL_SEARCH_GLOBS:
            found = sorted(Path(search_root).glob(f"{pattern}/{ref}/{MANIFEST_NAME}"))
            if found:
                return str(found[-1].resolve())
    where = ", ".join(candidates) or f"{os.path.abspath(search_root)}/{{{','.join(LOCAL_SEARCH_GLOBS)}}}"
    raise ManifestNotFound(f"no sweep '{ref}' (looked for its {MANIFEST_NAME} in {where})")


def list_manifests(staging_dir: Optional[str] = None, search_root: str = ".") -> List[str]:
    """Every sweep manifest directly under `staging_dir` (local or gs://), or in the local sweeps below
    `search_root` when none is given."""
    if staging_dir is None:
        found: List[str] = []
        for pattern in LOCAL_SEARCH_GLOBS:
            found += [str(p.resolve()) for p in Path(search_root).glob(f"{pattern}/*/{MANIFEST_NAME}")]
        return sorted(set(found))
    if _storage.is_gcs(staging_dir):
        prefix = staging_dir.rstrip("/") + "/"
        return sorted(uri for uri, _ in _storage.list_gcs(prefix)
                      if uri.endswith("/" + MANIFEST_NAME) and uri[len(prefix):].count("/") == 1)
    return sorted(str(p) for p in Path(staging_dir).resolve().glob(f"*/{MANIFEST_NAME}"))


def split_resolvers(state: Any, main_imported: bool) -> Tuple[Any, List[Tuple[str, Any, bool]], Dict[str, Any], List[str]]:
    """Hydra's Singleton state without its OmegaConf resolvers, and the resolvers the container needs from us.

    OmegaConf keeps a resolver as a wrapper closure, which cloudpickle could only carry by value (bytecode).
    We send the user's function itself instead (by reference when importable), and nothing for resolvers the
    container registers on its own: OmegaConf's and Hydra's, and, when the container imports the task's script,
    those the script registers (their names are returned, so the container can say if one went missing)."""
    resolvers = state.get("omegaconf_resolvers") or {}
    kept: List[Tuple[str, Any, bool]] = []
    raw: Dict[str, Any] = {}
    from_import: List[str] = []
    for name, wrapper in resolvers.items():
        fn, use_cache = _resolver_parts(wrapper)
        module = str(getattr(fn, "__module__", "") or "")
        if fn is None:
            raw[name] = wrapper
        elif module.split(".")[0] == "omegaconf" or module == "hydra.core.utils":  # OmegaConf's, setup_globals'
            continue
        elif module == "__main__" and main_imported:
            from_import.append(name)
        else:
            kept.append((name, fn, use_cache))
    return {**state, "omegaconf_resolvers": {}}, kept, raw, from_import


def _resolver_parts(wrapper: Any) -> Tuple[Any, bool]:
    """The function and use_cache flag inside OmegaConf's resolver wrapper; (None, False) if it is not one."""
    code, cells = getattr(wrapper, "__code__", None), getattr(wrapper, "__closure__", None) or ()
    try:
        free = dict(zip(code.co_freevars, (c.cell_contents for c in cells))) if code else {}
    except ValueError:  # an empty cell
        return None, False
    if not callable(free.get("resolver")):
        return None, False
    return free["resolver"], bool(free.get("use_cache", False))
