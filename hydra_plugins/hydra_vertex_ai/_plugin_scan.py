"""Hydra's plugin scan, once per fork server instead of once per forked job.

A job restores Hydra's singletons as the launcher had them (`Singleton.set_state`), and that scans every plugin
again: Hydra re-executes each module under hydra_plugins/, our config.py with it, which registers our config
entries anew, so the entries the launcher had built are built again (40-50 ms a trial). The fork server scans
once before its first fork (`scan`); a job it forked keeps that scan (`with_scan`) when the plugin folders a
scan would walk now are the ones the server walked. A project that ships a hydra_plugins/ folder in its source
adds one on the job's sys.path, so that job scans afresh, as a fresh interpreter does.
"""
from typing import Any, Dict, Optional, Tuple

_scanned: Optional[Tuple[str, ...]] = None  # the hydra_plugins folders this process's own scan walked


def _folders() -> Tuple[str, ...]:
    try:
        import hydra_plugins
    except ImportError:
        return ()
    return tuple(hydra_plugins.__path__)


def scan() -> None:
    """Hydra's plugin scan, now (the fork server, before it forks)."""
    global _scanned
    from hydra.core.plugins import Plugins

    Plugins.instance()
    _scanned = _folders()


def with_scan(state: Dict[str, Any]) -> Dict[str, Any]:
    """`state` (from `Singleton.get_state()`) with this process's plugin scan, if it walked what a scan here would."""
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton

    plugins = Singleton._instances.get(Plugins)
    if plugins is None or _scanned is None or _scanned != _folders():
        return state
    return {**state, "instances": {**state["instances"], Plugins: plugins}}
