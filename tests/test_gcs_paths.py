"""`/gcs/<bucket>/...` paths in a job's config reach the bucket on both stand-ins (issue 21), as Vertex's Cloud
Storage FUSE mount does: the file a user uploaded is read by its /gcs/ path, a folder is listed."""
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from conftest import BUCKET, VERTEX_OVERRIDES

from hydra_plugins.hydra_vertex_ai import _storage

APP = Path(__file__).parent / "apps" / "gcs_reader" / "app.py"


@pytest.fixture
def uploaded(bucket: str) -> List[str]:
    _storage.write_bytes(f"gs://{BUCKET}/gcs-paths/words.txt", b"uploaded words")
    _storage.write_bytes(f"gs://{BUCKET}/gcs-paths/words.txt.bak", b"not this one")
    for name in ("a.txt", "b.txt"):
        _storage.write_bytes(f"gs://{BUCKET}/gcs-paths/folder/{name}", name.encode())
    return [f"+data=/gcs/{BUCKET}/gcs-paths/words.txt", f"+folder=/gcs/{BUCKET}/gcs-paths/folder",
            "+expect=uploaded words"]


def run(tmp_path: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, str(APP), "-m", "hydra/launcher=vertex_ai", f"hydra.sweep.dir={tmp_path / 's'}",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_a_gcs_path_reaches_the_bucket_on_the_local_backend(uploaded: List[str], tmp_path: Path) -> None:
    # the storage emulator stands in for Cloud Storage: its address is the one host variable the job needs
    proc = run(tmp_path, "hydra.launcher.backend=local", "hydra.launcher.local_env_passthrough=[STORAGE_EMULATOR_HOST]",
               *uploaded)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_gcs_path_reaches_the_bucket_in_the_emulator(uploaded: List[str], vertex_emulator: object,
                                                        tmp_path: Path) -> None:
    proc = run(tmp_path, *VERTEX_OVERRIDES, *uploaded)
    assert proc.returncode == 0, proc.stdout + proc.stderr
