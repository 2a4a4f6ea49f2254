"""Missing credentials: one line that names `gcloud auth application-default login`, not Google's traceback
(issue 21), from the launcher, the sweeper and the `hydra-vertex-ai` command alike."""
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from conftest import PROBE, run_app
from test_real_projects import no_credentials_env

COMMAND = "run `gcloud auth application-default login`"
QUADRATIC = Path(__file__).parent / "apps" / "quadratic" / "app.py"


def _vertex(key: str) -> List[str]:
    return [f"{key}.backend=vertex", f"{key}.project=no-such-project",
            f"{key}.staging_dir=gs://no-such-bucket-hydra-vertex-ai/staging"]


@pytest.mark.parametrize("app, args", [
    (PROBE, ["-m", "hydra/launcher=vertex_ai", *_vertex("hydra.launcher"), "tag=0"]),
    (QUADRATIC, ["-m", "hydra/sweeper=vertex_vizier", *_vertex("hydra.sweeper"), "x=interval(0,3)"]),
])  # fmt: skip
def test_the_plugins_say_which_command_gives_credentials(app: Path, args: List[str], tmp_path: Path) -> None:
    proc = run_app(app, [*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path, env=no_credentials_env(tmp_path),
                   timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if COMMAND in ln]
    assert line.startswith("no Google Cloud credentials for Vertex AI (")


def test_the_cli_says_which_command_gives_credentials(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli", "list",
                           "gs://no-such-bucket-hydra-vertex-ai/staging"], cwd=tmp_path, capture_output=True, text=True,
                          env=no_credentials_env(tmp_path), timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip()] and proc.stderr.startswith("hydra-vertex-ai: error: no Google Cloud credentials for Cloud Storage")
    assert proc.stderr.strip().endswith(COMMAND)
