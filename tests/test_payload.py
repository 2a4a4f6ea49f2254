"""What crosses to the container and back: payloads, results, and the version check of the entry module."""
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import PROBE, VERTEX_LOCAL, run_app
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.hydra_vertex_ai import _payload

ENTRY = "hydra_plugins.hydra_vertex_ai.entry"


def _python(code: str, cwd: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    """A fresh interpreter that can import neither this module nor anything from the tests directory."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.usefixtures("hydra_restore_singletons")
def test_payload_round_trip_in_a_fresh_process(tmp_path: Path) -> None:
    factor = 7

    def task(cfg: DictConfig) -> int:  # a closure, as hydra.main's wrapped functions often are
        return int(cfg.a) * factor

    ConfigStore.instance().store(name="roundtrip_marker", node={"stored": "yes"})
    cfg = OmegaConf.create({"a": 6, "b": "${a}", "nested": {"c": [1, 2]}})
    OmegaConf.set_struct(cfg, True)
    context = _payload.SweepContext(None, task, Singleton.get_state())  # type: ignore[arg-type]
    path = tmp_path / "payload.pkl"
    path.write_bytes(_payload.dumps({"context": context, "config": cfg}))

    code = """
import json, sys
from pathlib import Path
from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from omegaconf import OmegaConf
from hydra_plugins.hydra_vertex_ai import _payload
obj = _payload.loads(Path(sys.argv[1]).read_bytes())
ctx, cfg = obj["context"], obj["config"]
Singleton.set_state(ctx.singleton_state)
print(json.dumps({
    "result": ctx.task_function(cfg),
    "b": cfg.b,
    "yaml": OmegaConf.to_yaml(cfg),
    "struct": OmegaConf.is_struct(cfg),
    "stored": ConfigStore.instance().load("roundtrip_marker.yaml").node.stored,
}))
"""
    proc = _python(code, tmp_path, str(path))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {
        "result": 42,
        "b": 6,
        "yaml": OmegaConf.to_yaml(cfg),  # interpolations travel unresolved
        "struct": True,
        "stored": "yes",
    }


# --- results coming back ------------------------------------------------------------------------------


class TaskError(Exception):
    """A user's exception type."""


class LockedError(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self) -> None:
        super().__init__("holding a lock")
        self.lock = threading.Lock()


class TwoArgError(Exception):
    """Pickles fine but cannot be unpickled: pickle calls __init__ with the one formatted arg."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} because {why}")


def raise_in_task(exc: BaseException) -> None:
    raise exc


def _job_return(status: JobStatus, value: Any) -> JobReturn:
    ret = JobReturn(
        overrides=["a=1"], cfg=OmegaConf.create({"a": 1}), hydra_cfg=OmegaConf.create({}), status=status
    )
    ret._return_value = value
    return ret


def _failed_with(exc: BaseException) -> JobReturn:
    """A FAILED JobReturn whose exception carries a real traceback, as run_job makes it."""
    try:
        raise_in_task(exc)
    except BaseException as e:
        return _job_return(JobStatus.FAILED, e)
    raise AssertionError("unreachable")


def _round_trip(ret: JobReturn) -> JobReturn:
    return _payload.load_result(_payload.dump_result(ret))


def test_result_round_trip_of_a_value() -> None:
    back = _round_trip(_job_return(JobStatus.COMPLETED, {"loss": 0.5}))
    assert back.status == JobStatus.COMPLETED
    assert back.return_value == {"loss": 0.5}
    assert back.overrides == ["a=1"] and back.cfg == {"a": 1}


def test_result_round_trip_of_an_exception_keeps_type_and_traceback() -> None:
    back = _round_trip(_failed_with(TaskError("bad batch")))
    assert back.status == JobStatus.FAILED
    with pytest.raises(TaskError, match="bad batch") as info:
        back.return_value
    assert "raise_in_task" in str(info.value.__cause__)


def test_unpicklable_return_value_fails_the_job_clearly() -> None:
    back = _round_trip(_job_return(JobStatus.COMPLETED, threading.Lock()))
    assert back.status == JobStatus.FAILED
    with pytest.raises(_payload.RemoteJobError, match="could not be pickled") as info:
        back.return_value
    assert "lock" in str(info.value)


@pytest.mark.parametrize(
    "exc", [LockedError(), TwoArgError("no data", "disk full")], ids=["unpicklable", "unloadable"]
)
def test_exception_that_cannot_travel_keeps_its_message_and_traceback(exc: BaseException) -> None:
    back = _round_trip(_failed_with(exc))
    assert back.status == JobStatus.FAILED
    with pytest.raises(_payload.RemoteJobError) as info:
        back.return_value
    assert type(exc).__name__ in str(info.value) and str(exc) in str(info.value)
    assert "raise_in_task" in str(info.value.__cause__)


# --- the entry module's version check --------------------------------------------------------------------


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """A real staged job: run the probe app once through the launcher and keep its staging."""
    root = tmp_path_factory.mktemp("staged")
    proc = run_app(PROBE, ["-m", *VERTEX_LOCAL, f"out_dir={root / 'rec'}", f"hydra.sweep.dir={root / 'sweep'}"], root)
    assert proc.returncode == 0, proc.stderr
    [job_dir] = (root / "sweep" / ".vertex_ai").glob("*/jobs/0")
    return {
        "root": root,
        "payload": job_dir / "payload.pkl",
        "result": job_dir / "result.pkl",
        "record": root / "rec" / "0.json",
    }


def _with_versions(data: bytes, **versions: str) -> bytes:
    header, _, body = data.partition(b"\n")
    meta = json.loads(header)
    meta["versions"].update(versions)
    return json.dumps(meta).encode() + b"\n" + body


def _run_entry(staged: Dict[str, Path], payload: Path) -> "subprocess.CompletedProcess[str]":
    for leftover in (staged["record"], staged["result"]):
        leftover.unlink(missing_ok=True)
    return subprocess.run(
        [sys.executable, "-m", ENTRY, str(payload)], cwd=payload.parent, capture_output=True, text=True, timeout=120
    )


def test_entry_runs_an_untouched_payload(staged: Dict[str, Path]) -> None:
    proc = _run_entry(staged, staged["payload"])
    assert proc.returncode == 0, proc.stderr
    assert staged["record"].exists() and staged["result"].exists()


@pytest.mark.parametrize("key", ["hydra-core", "omegaconf"])
def test_entry_refuses_a_payload_from_another_runtime(staged: Dict[str, Path], key: str, tmp_path: Path) -> None:
    drifted = tmp_path / "payload.pkl"
    drifted.write_bytes(_with_versions(staged["payload"].read_bytes(), **{key: "0.0.1"}))
    _assert_refused(_run_entry(staged, drifted), staged, key)


def _with_code_by_value(data: bytes) -> bytes:
    header, _, body = data.partition(b"\n")
    meta = json.loads(header)
    meta["by_value"] = ["__main__.my_task"]
    return json.dumps(meta).encode() + b"\n" + body


@pytest.mark.parametrize("key", ["python", "cloudpickle"])
def test_entry_refuses_code_by_value_from_another_runtime(staged: Dict[str, Path], key: str, tmp_path: Path) -> None:
    """Bytecode pickled by value (a task defined inside a function) needs the same Python and cloudpickle."""
    drifted = tmp_path / "payload.pkl"
    drifted.write_bytes(_with_code_by_value(_with_versions(staged["payload"].read_bytes(), **{key: "0.0.1"})))
    _assert_refused(_run_entry(staged, drifted), staged, key)


def test_the_probe_task_travels_by_reference(staged: Dict[str, Path]) -> None:
    meta = _payload.header(staged["payload"].read_bytes())
    assert meta["task_ref"].endswith("/probe/my_app.py:my_app") and meta["by_value"] == []


def test_entry_refuses_a_shared_context_from_another_runtime(staged: Dict[str, Path], tmp_path: Path) -> None:
    payload: _payload.JobPayload = _payload.loads(staged["payload"].read_bytes())
    context = tmp_path / "context.pkl"
    context.write_bytes(_with_versions(Path(payload.context_uri).read_bytes(), **{"hydra-core": "0.1"}))
    payload.context_uri = str(context)
    repointed = tmp_path / "payload.pkl"
    repointed.write_bytes(_payload.dumps(payload))
    _assert_refused(_run_entry(staged, repointed), staged, "hydra-core")


def _assert_refused(proc: "subprocess.CompletedProcess[str]", staged: Dict[str, Path], key: str) -> None:
    lines: List[str] = proc.stderr.strip().splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not staged["record"].exists(), "the task ran despite the mismatch"
    assert not staged["result"].exists()
