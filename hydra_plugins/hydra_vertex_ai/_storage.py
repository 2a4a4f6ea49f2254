"""One small interface over local paths and gs:// URIs.

gs:// goes through google-cloud-storage (which honours STORAGE_EMULATOR_HOST), imported only when a gs://
URI is touched. Inside a Vertex container, /gcs/<bucket> is a Cloud Storage FUSE mount: when it is there
the container reads and writes through it and never imports the client.
"""
import os
import posixpath
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

GCS_PREFIX = "gs://"
# Where Vertex mounts buckets in every container; the emulator points this elsewhere.
FUSE_ROOT_ENV = "HYDRA_VERTEX_AI_GCS_FUSE_ROOT"
_clients: Dict[str, Any] = {}


def is_gcs(uri: str) -> bool:
    return uri.startswith(GCS_PREFIX)


def split_gcs(uri: str) -> Tuple[str, str]:
    bucket, _, path = uri[len(GCS_PREFIX) :].partition("/")
    return bucket, path


def join(base: str, *parts: str) -> str:
    if is_gcs(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def fuse_path(uri: str) -> str:
    """The path at which a container sees gs://bucket/path: /gcs/bucket/path."""
    bucket, path = split_gcs(uri)
    return posixpath.join(os.environ.get(FUSE_ROOT_ENV, "/gcs"), bucket, path)


def _local_path(uri: str) -> Optional[str]:
    """A filesystem path for `uri`, or None when it must go through the Cloud Storage client."""
    if not is_gcs(uri):
        return uri[len("file://") :] if uri.startswith("file://") else uri
    bucket, _ = split_gcs(uri)
    mounted = fuse_path(f"{GCS_PREFIX}{bucket}")
    return fuse_path(uri) if os.path.isdir(mounted) else None


def _blob(uri: str) -> Any:
    from google.cloud import storage

    bucket, path = split_gcs(uri)
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    key = project or ""
    if key not in _clients:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            from google.auth.credentials import AnonymousCredentials

            _clients[key] = storage.Client(project=project or "local", credentials=AnonymousCredentials())
        else:
            _clients[key] = storage.Client(project=project)
    return _clients[key].bucket(bucket).blob(path)


def write_bytes(uri: str, data: bytes) -> None:
    path = _local_path(uri)
    if path is None:
        _blob(uri).upload_from_string(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    Path(tmp).write_bytes(data)
    os.replace(tmp, path)  # readers never see half a file


def read_bytes(uri: str) -> bytes:
    path = _local_path(uri)
    if path is None:
        return bytes(_blob(uri).download_as_bytes())
    return Path(path).read_bytes()


def exists(uri: str) -> bool:
    path = _local_path(uri)
    if path is None:
        return bool(_blob(uri).exists())
    return os.path.exists(path)
