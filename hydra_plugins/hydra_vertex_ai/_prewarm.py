"""The Vertex AI and Cloud Storage client libraries imported in a thread, as soon as a plugin set up for the
vertex backend is handed its config, while Hydra composes the sweep's batch: importing them takes 2-3 s on a
small machine, and launch() would otherwise pay it before its first create (issue 24, P7).

Only where the user chose the vertex backend: Hydra's plugin scan and every other run import nothing here."""
import importlib
import logging
import threading
from typing import Any, Sequence

log = logging.getLogger(__name__)

VERTEX_CLIENT_MODULES = ("google.cloud.aiplatform_v1", "google.cloud.storage")


def for_backend(settings: Any) -> None:
    """Start importing the clients when `settings` (hydra.launcher or hydra.sweeper) will talk to Vertex."""
    try:
        backend = settings.get("backend")
        vertex = getattr(backend, "name", backend) == "vertex" and not settings.get("dry_run")
    except Exception:  # a setting that does not resolve yet: launch() says what is wrong with it
        return
    if vertex:
        import_in_background(VERTEX_CLIENT_MODULES)


def import_in_background(modules: Sequence[str]) -> None:
    threading.Thread(target=_import, args=(tuple(modules),), name="vertex-prewarm", daemon=True).start()


def _import(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as e:  # the real import, where it is used, raises it to the user
            log.debug("pre-importing %s failed: %r", name, e)
