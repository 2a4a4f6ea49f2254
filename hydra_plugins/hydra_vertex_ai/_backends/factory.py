"""Pick and configure the backend a config asks for."""
import os

from ..config import VertexBackendConf
from .._jobspec import JobSpecError
from .base import Backend

BACKENDS = ("local", "vertex")


def make_backend(conf: VertexBackendConf, key: str, sweep_id: str) -> Backend:
    """The backend named by `<key>.backend`, staging under `<staging_dir>/<sweep_id>`.

    Its own settings are checked here, before anything is staged or submitted.
    """
    if conf.backend == "local":
        from .. import _storage
        from .local import LocalBackend

        if _storage.is_gcs(conf.staging_dir):
            raise JobSpecError(f"{key}.staging_dir", "the local backend stages in a local directory, not gs://")
        if conf.max_parallel is not None and conf.max_parallel < 1:
            raise JobSpecError(
                f"{key}.max_parallel", f"must be at least 1 (or null: one job per core), got {conf.max_parallel}"
            )
        return LocalBackend(os.path.join(os.path.abspath(conf.staging_dir), sweep_id), conf.max_parallel)
    if conf.backend == "vertex":
        from .vertex import VertexBackend

        return VertexBackend.from_config(conf, key, sweep_id)
    raise JobSpecError(f"{key}.backend", f"'{conf.backend}' is not one of {', '.join(BACKENDS)}")
