"""Pick and configure the backend a config asks for; its own settings are checked before anything is staged."""
from .._errors import ConfigError
from .._staging import Staging
from ..config import BackendKind, VertexBackendConf
from .base import Backend


def make_backend(conf: VertexBackendConf, key: str, sweep_id: str, *, connect: bool = True) -> Backend:
    """The backend named by `<key>.backend`, staging under `<staging_dir>/<sweep_id>`.

    With `connect=False` (a dry run) the vertex backend checks its settings but builds no client."""
    if conf.max_parallel is not None and conf.max_parallel < 1:
        raise ConfigError(
            f"{key}.max_parallel", f"must be at least 1 (or null: no limit on vertex, one job per core on local), "
            f"got {conf.max_parallel}"
        )
    if conf.backend == BackendKind.local:
        from .. import _storage
        from .local import LocalBackend

        if _storage.is_gcs(conf.staging_dir):
            raise ConfigError(f"{key}.staging_dir", "the local backend stages in a local directory, not gs://")
        for i, pool in enumerate(conf.job.worker_pools):
            if pool.command == [] and pool.replica_count > 0:  # an image's own entrypoint: no image runs locally
                raise ConfigError(
                    f"{key}.job.worker_pools[{i}].command",
                    f"[] runs the entrypoint of {pool.image_uri or 'the image'}; the local backend runs commands "
                    "as processes, not images: give the pool a command or drop it for local runs",
                )
        backend: Backend = LocalBackend(Staging.of(conf.staging_dir, sweep_id), conf.max_parallel,
                                        conf.local_env_passthrough, conf.local_warm_start)
    else:
        from .vertex import VertexBackend

        backend = VertexBackend.from_config(conf, key, sweep_id, connect=connect)
    if connect:  # before the manifest or anything else is written: one line, not a Cloud Storage traceback
        from .. import _storage

        problem = _storage.writable_problem(conf.staging_dir)
        if problem:
            raise ConfigError(f"{key}.staging_dir", problem)
    backend.key = key
    return backend
