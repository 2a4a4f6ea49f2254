"""Jobs that record what a fresh process would see, and then try to leak into the next job (warm start tests)."""
import gc
import json
import os
import random
import signal
import sys
from pathlib import Path

import hydra
import numpy
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

# Module-level code: must run in every job, in that job's process and environment.
IMPORTED_IN = os.getpid()
JOB_AT_IMPORT = os.environ.get("CLOUD_ML_JOB_ID")
LEAK_AT_IMPORT = (os.environ.get("LEAKED_BY"), getattr(numpy, "_leaked_by", None), "leaked_module" in sys.modules)


class AtTeardown:
    """Kept in a cycle until the interpreter tears the job down: its finalizer runs at the job's exit."""

    def __init__(self, path: Path) -> None:
        self.path, self.me = path, self

    def __del__(self) -> None:
        self.path.write_text("finalized at exit")


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    record = {
        "pid": os.getpid(), "imported_in": IMPORTED_IN, "job_at_import": JOB_AT_IMPORT,
        "job": os.environ.get("CLOUD_ML_JOB_ID"), "leak_at_import": list(LEAK_AT_IMPORT),
        "leak_now": [os.environ.get("LEAKED_BY"), getattr(numpy, "_leaked_by", None), "leaked_module" in sys.modules],
        "env": sorted(os.environ), "argv": sys.argv, "cwd": os.getcwd(), "path": sys.path,
        "forked": b"forkserver" in Path(f"/proc/{os.getppid()}/cmdline").read_bytes(),
        "random": random.random(), "numpy": float(numpy.random.rand()), "stdin": sys.stdin.read(),
        "gc": gc.isenabled(), "plugins": sorted(Plugins.instance().class_name_to_class),
        # the job's own subprocesses: SIGCHLD as in a fresh interpreter, no wakeup fd of the server's
        "sigchld": str(signal.getsignal(signal.SIGCHLD)), "wakeup_fd": signal.set_wakeup_fd(-1),
    }
    print(f"job {cfg.x} says hello")
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    Path(cfg.out_dir, f"{cfg.x}.json").write_text(json.dumps(record))
    # what only the end of the process completes: a file left open (flushed when it is collected) and a
    # finalizer in a cycle (run by the interpreter's last collection)
    global UNCLOSED, IN_A_CYCLE
    UNCLOSED = open(Path(cfg.out_dir, f"{cfg.x}.unclosed"), "w")  # noqa: SIM115
    UNCLOSED.write("written, never closed")
    IN_A_CYCLE = AtTeardown(Path(cfg.out_dir, f"{cfg.x}.teardown"))
    # what a job could leave behind for the next one, were they not separate processes
    os.environ["LEAKED_BY"] = str(cfg.x)
    numpy._leaked_by = cfg.x  # type: ignore[attr-defined]
    sys.modules["leaked_module"] = sys  # type: ignore[assignment]
    if cfg.fail == "raise":
        raise RuntimeError(f"job {cfg.x} failed on purpose")
    if cfg.fail == "kill":
        os.kill(os.getpid(), 9)
    return float(cfg.x)


if __name__ == "__main__":
    main()
