"""Outputs back from the bucket: many threads share one Cloud Storage client without urllib3 warnings.

(The copy-back's filter, the end line and the vertex backend's run are tested in test_vertex_backend.py.)"""
import logging
from pathlib import Path

import pytest
from conftest import STAGING

from hydra_plugins.hydra_vertex_ai import _storage
from hydra_plugins.hydra_vertex_ai._backends.vertex_outputs import sync_outputs


def test_the_http_pool_holds_every_copying_thread(bucket: str, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    prefix = f"{STAGING}/pool-test"
    for i in range(80):
        _storage.write_bytes(f"{prefix}/{i}/f.txt", b"x")
    with caplog.at_level(logging.WARNING):
        sync_outputs({str(tmp_path): prefix})

    assert len(list(tmp_path.rglob("f.txt"))) == 80
    # requests' default pool of 10 makes urllib3 warn "Connection pool is full, discarding connection"
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
