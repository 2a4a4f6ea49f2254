"""One small interface over local paths and gs:// URIs.

gs:// goes through google-cloud-storage (which honours STORAGE_EMULATOR_HOST), imported only when a gs://
URI is touched. Inside a Vertex container, /gcs/<bucket> is a Cloud Storage FUSE mount: when it is there
the container reads and writes through it and never imports the client.

The FUSE rule, for real and emulated containers alike:
- A job's *paths* (its Hydra output dir) name the bucket through the FUSE root: `fuse_path`, or the
  `fuse_interpolation` that the container resolves itself. The root is /gcs, or $HYDRA_VERTEX_AI_GCS_FUSE_ROOT.
- gs:// *I/O* (payloads, results) uses the FUSE mount only when it is Vertex's real one (/gcs/<bucket>
  exists and the variable is unset). A process that sets the variable (the emulator sets it for its jobs)
  has a plain local stand-in there, so its gs:// I/O goes through the client, e.g. to a storage emulator.
"""
import logging
import os
import posixpath
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

GCS_PREFIX = "gs://"
# Where Vertex mounts buckets in every container; the emulator points this elsewhere.
FUSE_ROOT_ENV = "HYDRA_VERTEX_AI_GCS_FUSE_ROOT"
VERTEX_FUSE_ROOT = "/gcs"
# The most threads that share one client at once (outputs copied back); its HTTP connection pool is this
# large, so no thread waits for a connection and urllib3 never warns "Connection pool is full".
MAX_THREADS = 32
log = logging.getLogger(__name__)
_clients: Dict[str, Any] = {}
_clients_lock = threading.Lock()


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_PREFIX)


def split_gcs(uri: str) -> Tuple[str, str]:
    bucket, _, path = uri[len(GCS_PREFIX) :].partition("/")
    return bucket, path


def join(base: str, *parts: str) -> str:
    if is_gcs(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def parent(uri: str) -> str:
    return posixpath.dirname(uri.rstrip("/")) if is_gcs(uri) else os.path.dirname(uri.rstrip(os.sep))


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/")) if is_gcs(uri) else os.path.basename(uri.rstrip(os.sep))


def fuse_path(uri: str) -> str:
    """The path at which a container sees gs://bucket/path: /gcs/bucket/path."""
    bucket, path = split_gcs(uri)
    return posixpath.join(os.environ.get(FUSE_ROOT_ENV, VERTEX_FUSE_ROOT), bucket, path)


def fuse_interpolation(uri: str) -> str:
    """`fuse_path(uri)` as an OmegaConf interpolation, so the FUSE root is resolved where the job runs."""
    bucket, path = split_gcs(uri)
    return "${oc.env:" + FUSE_ROOT_ENV + "," + VERTEX_FUSE_ROOT + "}/" + posixpath.join(bucket, path)


def standin_mount(config: Any, environ: Mapping[str, str]) -> None:
    """Where a stand-in replaces Vertex's /gcs mount (FUSE_ROOT_ENV names a plain directory), make the job's
    `/gcs/<bucket>/<path>` config values reach the bucket as the mount does on Vertex
    (https://cloud.google.com/vertex-ai/docs/training/cloud-storage-file-system: "buckets are mounted under
    /gcs/"): each such value (not an interpolation; `hydra.*` is ours) is pointed into the stand-in, and the
    bucket's objects at that path are copied there first. Without the variable (a real container) nothing
    changes."""
    root = environ.get(FUSE_ROOT_ENV)
    if not root or root == VERTEX_FUSE_ROOT:
        return
    from omegaconf import read_write

    for node, key, value in _mount_paths(config):
        local = root + value[len(VERTEX_FUSE_ROOT):]
        uri = f"{GCS_PREFIX}{value[len(VERTEX_FUSE_ROOT) + 1:]}"
        try:
            _fetch(uri, root)
        except Exception as e:  # e.g. no storage endpoint here: the task sees an empty mount, and says so
            log.warning("cannot copy %s into the stand-in of the /gcs mount: %s", uri, e)
        with read_write(node):
            node[key] = local


def _mount_paths(node: Any, top: bool = True) -> Iterator[Tuple[Any, Any, str]]:
    """(node, key, value) of every plain string of the config under /gcs/."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    keys: List[Any] = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
    for key in keys:
        if (top and key == "hydra") or OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        value = node[key]
        if isinstance(value, (DictConfig, ListConfig)):
            yield from _mount_paths(value, top=False)
        elif isinstance(value, str) and value.startswith(VERTEX_FUSE_ROOT + "/"):
            yield node, key, value


def _fetch(uri: str, root: str) -> None:
    """Copy the object `uri`, or the objects under it as a folder, into the stand-in at `root`; one a job
    already has there is kept (it may have written it)."""
    bucket, path = split_gcs(uri)
    for found, _ in list_gcs(uri):
        name = split_gcs(found)[1]
        if path and name != path.rstrip("/") and not name.startswith(path.rstrip("/") + "/"):
            continue  # gs://b/data.txt.bak is not under /gcs/b/data.txt
        target = Path(root, bucket, name)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
            tmp.write_bytes(_blob(found).download_as_bytes())
            os.replace(tmp, target)  # replicas of parallel jobs may fetch the same file


def _local_path(uri: str) -> Optional[str]:
    """A filesystem path for `uri`, or None when it must go through the Cloud Storage client."""
    if not is_gcs(uri):
        return uri[len("file://") :] if uri.startswith("file://") else uri
    if FUSE_ROOT_ENV in os.environ:  # a stand-in for outputs, not a mount of the bucket
        return None
    bucket, path = split_gcs(uri)
    mounted = posixpath.join(VERTEX_FUSE_ROOT, bucket)
    return posixpath.join(mounted, path) if os.path.isdir(mounted) else None


def _client() -> Any:
    """One client per (project, emulator host): tests switch STORAGE_EMULATOR_HOST between runs."""
    from google.cloud import storage

    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    key = f"{project or ''}|{emulator or ''}"
    with _clients_lock:
        if key not in _clients:
            if emulator:
                from google.auth.credentials import AnonymousCredentials

                _clients[key] = storage.Client(project=project or "local", credentials=AnonymousCredentials())
            else:
                from google.auth.exceptions import DefaultCredentialsError

                try:
                    _clients[key] = storage.Client(project=project)
                except DefaultCredentialsError as e:
                    from ._errors import CredentialsError

                    raise CredentialsError("Cloud Storage", e) from None
            _size_pool(_clients[key])
        return _clients[key]


def _size_pool(client: Any) -> None:
    """One connection per thread: requests' default pool holds 10, fewer than our upload and read threads."""
    from requests.adapters import HTTPAdapter  # type: ignore[import-untyped]

    adapter = HTTPAdapter(pool_connections=MAX_THREADS, pool_maxsize=MAX_THREADS)
    for scheme in ("https://", "http://"):
        client._http.mount(scheme, adapter)


def _blob(uri: str) -> Any:
    bucket, path = split_gcs(uri)
    return _client().bucket(bucket).blob(path)


def list_gcs(prefix: str, deadline_s: Optional[float] = None) -> List[Tuple[str, int]]:
    """(uri, size) of every object under the gs:// `prefix`."""
    bucket, path = split_gcs(prefix)
    blobs = _client().list_blobs(bucket, prefix=path, **_bounded(deadline_s))
    return [(f"{GCS_PREFIX}{bucket}/{blob.name}", int(blob.size or 0)) for blob in blobs]


def write_bytes(uri: str, data: bytes) -> None:
    path = _local_path(uri)
    if path is None:
        _blob(uri).upload_from_string(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_bytes(data)
    os.replace(tmp, path)  # readers never see half a file


def _bounded(deadline_s: Optional[float]) -> Dict[str, Any]:
    """Retry and timeout arguments that give up after about `deadline_s` (the client's default retries
    for minutes when Cloud Storage is unreachable); {} keeps the client's defaults."""
    if deadline_s is None:
        return {}
    from google.cloud.storage.retry import DEFAULT_RETRY

    retry = DEFAULT_RETRY.with_timeout(deadline_s) if hasattr(DEFAULT_RETRY, "with_timeout") else \
        DEFAULT_RETRY.with_deadline(deadline_s)
    return {"retry": retry, "timeout": min(deadline_s, 60.0)}


def read_bytes(uri: str, deadline_s: Optional[float] = None) -> bytes:
    """The object's bytes; with `deadline_s`, a gs:// read gives up after about that long."""
    path = _local_path(uri)
    if path is None:
        return bytes(_blob(uri).download_as_bytes(**_bounded(deadline_s)))
    return Path(path).read_bytes()


def exists(uri: str, deadline_s: Optional[float] = None) -> bool:
    path = _local_path(uri)
    if path is None:
        return bool(_blob(uri).exists(**_bounded(deadline_s)))
    return os.path.exists(path)
