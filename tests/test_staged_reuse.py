"""A staged file that does not match its content hash is replaced, not reused (issue 21): a truncated source
snapshot in the staging dir (bucket or local) is uploaded again by the next run, whose jobs then succeed."""
from pathlib import Path
from typing import Any, List

import pytest
from conftest import PROBE, STAGING, VERTEX_LOCAL, VERTEX_OVERRIDES, run_app

from hydra_plugins.hydra_vertex_ai import _storage


def _snapshots(staging: str) -> List[str]:
    if _storage.is_gcs(staging):
        return [uri for uri, _ in _storage.list_gcs(staging + "/snapshots/")]
    return [str(p) for p in Path(staging, "snapshots").glob("*.tar.gz")]


def _run(tmp_path: Path, launcher: List[str], run: str) -> None:
    args = ["-m", *launcher, "tag=0", f"out_dir={tmp_path / run}", f"hydra.sweep.dir={tmp_path / run / 'sweep'}",
            f"hydra.job.name=reuse{run}"]
    proc = run_app(PROBE, args, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / run / "0.end").exists()


@pytest.mark.parametrize("backend", ["local", "emulator"])
def test_a_truncated_snapshot_is_uploaded_again(backend: str, tmp_path: Path, request: Any) -> None:
    if backend == "emulator":
        request.getfixturevalue("vertex_emulator")
        staging = f"{STAGING}/reuse-{tmp_path.name}"
        launcher = ["hydra/launcher=vertex_ai", *VERTEX_OVERRIDES, f"hydra.launcher.staging_dir={staging}"]
    else:
        staging = str(tmp_path / "staging")
        launcher = [*VERTEX_LOCAL, f"hydra.launcher.staging_dir={staging}"]
    _run(tmp_path, launcher, "first")
    [snapshot] = _snapshots(staging)
    whole = _storage.read_bytes(snapshot)
    _storage.write_bytes(snapshot, whole[: len(whole) // 2])  # an upload cut short

    _run(tmp_path, launcher, "second")  # would fail: the job's snapshot would not unpack

    assert _storage.read_bytes(snapshot) == whole


def test_holds_compares_size_and_checksum(storage_emulator: str, bucket: str, tmp_path: Path) -> None:
    for uri in (f"gs://{bucket}/holds/x.bin", str(tmp_path / "x.bin")):
        assert not _storage.holds(uri, b"abc")  # missing
        _storage.write_bytes(uri, b"abd")
        assert not _storage.holds(uri, b"abc")  # same size, other content
        _storage.write_bytes(uri, b"abc")
        assert _storage.holds(uri, b"abc")
