"""How the task function travels to the container: by reference when it can, by value (cloudpickle) otherwise.

By reference, the container imports the user's module from the source snapshot, so its module-level code runs
there as it ran here (rootutils-style sys.path and environment set-up, `OmegaConf.register_new_resolver`,
ConfigStore registrations, logging set-up), with `__file__` naming the snapshot's copy, and then calls the
function `@hydra.main` wraps, found by its qualified name. A script run as `python src/train.py` is module
`__main__` here: the container imports its copy (`src/train.py` relative to the snapshot root) under another name,
`MAIN_ALIAS`, so its `if __name__ == "__main__":` block does not run Hydra again. A task defined inside a function
(or a callable object) has no importable name: it is pickled by value, which ties the payload to this Python
minor version (see `_payload.check_versions`).

Standard library only: the container entry imports this module.
"""
import importlib
import importlib.util
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

log = logging.getLogger(__name__)

# The name the container imports the user's script under (it is `__main__` only on the submitting machine).
MAIN_ALIAS = "__hydra_vertex_ai_main__"
# Steps along `__wrapped__` we follow from the module's attribute to the task function (decorators).
_MAX_UNWRAP = 8


@dataclass(frozen=True)
class TaskRef:
    """Where the container finds the task: a module to import, or a script in the snapshot; then a name."""

    qualname: str
    # an importable module name, e.g. `src.train` (`python -m src.train`) or `mypkg.tasks`
    module: Optional[str] = None
    # a script's path relative to the snapshot root, e.g. `src/train.py` (`python src/train.py`)
    script: Optional[str] = None
    # `__wrapped__` steps from the module attribute (the `@hydra.main` wrapper) to the task function
    unwrap: int = 0

    def __str__(self) -> str:
        return f"{self.script or self.module}:{self.qualname}"

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "TaskRef":
        return TaskRef(data["qualname"], data.get("module"), data.get("script"), int(data.get("unwrap", 0)))


def reference(task_function: Any, snapshot_root: Optional[str], shipped: Any = None) -> Tuple[Optional[TaskRef], str]:
    """How the container can find `task_function` by name, or (None, why it cannot).

    `shipped` (a container of relative paths) is what the snapshot holds; a script must be in it."""
    qualname, module_name = getattr(task_function, "__qualname__", None), getattr(task_function, "__module__", None)
    if not isinstance(qualname, str) or not isinstance(module_name, str):
        return None, f"the task {task_function!r} is not a function"
    if "<locals>" in qualname or "<lambda>" in qualname:
        return None, f"the task {qualname} is defined inside a function"
    module = sys.modules.get(module_name)
    unwrap = _unwrap_steps(module, qualname, task_function)
    if module is None or unwrap is None:
        return None, f"{module_name}.{qualname} is not the task function"
    if module_name != "__main__":
        # The container imports the module's attribute (Hydra's wrapper), so that is what must be importable
        # by name; the unwrapped function is not the attribute and would always look importable only by value.
        if not _pickled_by_reference(_attribute(module, qualname)):  # e.g. a module made at run time
            return None, f"the module {module_name} cannot be imported by name"
        return TaskRef(qualname, module=module_name, unwrap=unwrap), ""
    spec = getattr(module, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":  # python -m package.module
        return TaskRef(qualname, module=spec.name, unwrap=unwrap), ""
    script = getattr(module, "__file__", None)
    if not script:
        return None, "the task's script has no file (an interactive session)"
    if snapshot_root is None:
        return None, "the source snapshot is disabled, so the container has no copy of the script"
    rel = os.path.relpath(os.path.realpath(script), os.path.realpath(snapshot_root))
    if rel.startswith(os.pardir) or (shipped is not None and Path(rel).as_posix() not in shipped):
        return None, f"the script {script} is not in the source snapshot of {snapshot_root}"
    return TaskRef(qualname, script=Path(rel).as_posix(), unwrap=unwrap), ""


def _pickled_by_reference(obj: Any) -> bool:
    """cloudpickle's own judgement of whether `obj` can be imported by name (True when it cannot tell)."""
    try:
        from cloudpickle import cloudpickle as cp

        return bool(cp._should_pickle_by_reference(obj))
    except (ImportError, AttributeError):
        return True


def _attribute(module: Any, qualname: str) -> Any:
    """The module's attribute named by `qualname` (dotted for a method), or None."""
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _unwrap_steps(module: Any, qualname: str, task_function: Any) -> Optional[int]:
    """How many `__wrapped__` steps lead from the module's `qualname` attribute to the task, or None."""
    obj = _attribute(module, qualname)
    for steps in range(_MAX_UNWRAP + 1):
        if obj is None:
            return None
        if obj is task_function:
            return steps
        obj = getattr(obj, "__wrapped__", None)
    return None


def import_module(ref: TaskRef, snapshot_dir: Optional[Path]) -> Any:
    """Import the task's module in the container (running its module-level code); the script under MAIN_ALIAS."""
    if ref.module:
        return importlib.import_module(ref.module)
    if snapshot_dir is None or ref.script is None:
        raise ImportError(f"the task {ref} needs the source snapshot, which this payload does not name")
    path = snapshot_dir / ref.script
    spec = importlib.util.spec_from_file_location(MAIN_ALIAS, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MAIN_ALIAS] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(MAIN_ALIAS, None)
        raise
    return module


def task_of(module: Any, ref: TaskRef) -> Callable[..., Any]:
    """The task function in the imported module: its attribute, unwrapped as far as it was here."""
    obj = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part)
    for _ in range(ref.unwrap):
        obj = obj.__wrapped__
    if not callable(obj):
        raise TypeError(f"{ref} is not callable in the container")
    return obj
