"""A cancelled job stays cancelled (issue 21): jobs still queued behind max_parallel when the sweep is cancelled
(`hydra-vertex-ai cancel`, Ctrl-C) are recorded cancelled in the manifest, never created, by this launcher or by
a re-attach, and show as CANCELLED; on both backends."""
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import PROBE, STAGING, VERTEX_OVERRIDES, finish, run_app, wait_for

from hydra_plugins.hydra_vertex_ai import _storage
from hydra_plugins.hydra_vertex_ai._staging import Staging

CLI = [sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli"]
BACKENDS = {
    "local": (["hydra/launcher=vertex_ai", "hydra.launcher.backend=local"], []),
    "emulator": (["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES], ["--staging", STAGING]),
}


def _args(tmp_path: Path, backend: str, name: str) -> List[str]:
    """Three sleeping jobs, one at a time: #1 and #2 wait in the launcher's queue."""
    return ["-m", *BACKENDS[backend][0], "hydra.launcher.max_parallel=1", "tag=0,1,2", "mode=sleep",
            f"hydra.job.name={name}", f"out_dir={tmp_path / 'rec'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def _start(tmp_path: Path, backend: str, name: str) -> "subprocess.Popen[str]":
    app = subprocess.Popen([sys.executable, str(PROBE), *_args(tmp_path, backend, name)], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (tmp_path / "rec" / "0.json").exists(), 120, "job #0 to run")
    return app


def _manifest(tmp_path: Path, backend: str, output: str, name: str) -> Dict[str, Any]:
    sweep_id = re.findall(rf"{name}-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}", output)[0]
    if backend == "local":
        return dict(json.loads((tmp_path / "sweep" / ".vertex_ai" / sweep_id / "manifest.json").read_text()))
    return dict(json.loads(_storage.read_bytes(Staging.of(STAGING, sweep_id).manifest)))


def _reattach_runs_nothing(tmp_path: Path, backend: str, name: str, sweep_id: str, emulator: Any) -> None:
    created = len(_jobs(emulator, name))
    again = run_app(PROBE, [*_args(tmp_path, backend, name), f"hydra.launcher.attach={sweep_id}"], tmp_path)
    assert again.returncode != 0  # cancelled jobs are failed jobs to Hydra
    assert not (tmp_path / "rec" / "1.json").exists() and not (tmp_path / "rec" / "2.json").exists()
    assert len(_jobs(emulator, name)) == created  # the re-attach created no job
    status = _status(sweep_id, backend, tmp_path)
    assert status.count("CANCELLED") == 3 and "NOT_CREATED" not in status, status


def _jobs(emulator: Any, name: str) -> List[Dict[str, Any]]:
    return [j for j in emulator.jobs() if j["displayName"].startswith(f"{name}-")] if emulator else []


def _status(sweep_id: str, backend: str, tmp_path: Path) -> str:
    out = subprocess.run([*CLI, "status", sweep_id, *BACKENDS[backend][1]], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    return out.stdout + out.stderr


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Any:
    """The backend name, and the emulator for `emulator` (None for local)."""
    if request.param == "emulator":
        return request.param, request.getfixturevalue("vertex_emulator")
    return request.param, None


def test_cli_cancel_cancels_the_queued_jobs_for_good(backend: Any, tmp_path: Path) -> None:
    kind, emulator = backend
    name = f"cliq{kind[:3]}"
    app = _start(tmp_path, kind, name)
    try:
        sweep_id = re.findall(rf"{name}-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}", _status_probe(tmp_path, kind, name))[0]
        cancel = subprocess.run([*CLI, "cancel", sweep_id, "--yes", *BACKENDS[kind][1]], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        assert "cancelled #1" in cancel.stdout and "cancelled #2" in cancel.stdout, cancel.stdout
    finally:
        output = finish(app)

    manifest = _manifest(tmp_path, kind, output, name)
    assert [bool(j.get("cancelled")) for j in manifest["jobs"]] == [False, True, True]
    status = _status(sweep_id, kind, tmp_path)
    assert status.count("CANCELLED") == 3 and "NOT_CREATED" not in status, status
    assert len(_jobs(emulator, name)) == (1 if emulator else 0)  # the running launcher created none of them
    _reattach_runs_nothing(tmp_path, kind, name, sweep_id, emulator)


def _status_probe(tmp_path: Path, kind: str, name: str) -> str:
    """The sweep id, from the manifest the running launcher wrote."""
    if kind == "local":
        return str(next((tmp_path / "sweep" / ".vertex_ai").glob(f"{name}-*")).name)
    return " ".join(uri for uri, _ in _storage.list_gcs(STAGING + "/") if f"/{name}-" in uri)


def test_ctrl_c_cancels_the_queued_jobs_for_good(backend: Any, tmp_path: Path) -> None:
    kind, emulator = backend
    name = f"intq{kind[:3]}"
    app = _start(tmp_path, kind, name)
    app.send_signal(signal.SIGINT)
    output = finish(app)

    assert app.returncode != 0, output
    manifest = _manifest(tmp_path, kind, output, name)
    assert [bool(j.get("cancelled")) for j in manifest["jobs"]] == [False, True, True]
    status = _status(manifest["sweep_id"], kind, tmp_path)
    assert status.count("CANCELLED") == 3, status
    _reattach_runs_nothing(tmp_path, kind, name, manifest["sweep_id"], emulator)
