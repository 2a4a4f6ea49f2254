"""Issue 20, item 1: one place says where jobs run. With hydra/launcher=vertex_ai selected, the sweeper's trials
take the launcher's backend, endpoint, staging, job spec, snapshot and retry settings; a key set under
hydra.sweeper wins, and one line says when the trials then run elsewhere than the launcher says."""
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

from conftest import EMULATOR_ADDRESS, VERTEX_OVERRIDES
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai._emulator import project_number

APP = Path(__file__).parent / "apps" / "quadratic" / "app.py"
# the README's recommended launcher: a g2 machine with an L4
L4_LAUNCHER = ["hydra/launcher=vertex_ai", "hydra.launcher.job.machine_type=g2-standard-8",
               "hydra.launcher.job.accelerator_type=NVIDIA_L4", "hydra.launcher.job.accelerator_count=1"]
ELSEWHERE = "not as hydra.launcher says"


def sweep(tmp_path: Path, *overrides: str) -> "subprocess.CompletedProcess[str]":
    cmd = [sys.executable, str(APP), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def dry_run(tmp_path: Path, *overrides: str) -> Tuple[Dict[str, Any], str]:
    """The tuning job the sweeper would submit, and everything it printed."""
    proc = sweep(tmp_path, "hydra/sweeper=vertex_vizier", "hydra.sweeper.dry_run=true", "x=choice(0,2)", *overrides)
    job, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    return job, proc.stdout + proc.stderr


def test_trials_run_through_the_emulator_on_the_launchers_machine(vertex_emulator: Any, tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._backends.vertex_client import make_client

    # Everything about where jobs run is under hydra.launcher; the sweeper gets only its study settings.
    sweep(tmp_path, *L4_LAUNCHER, *VERTEX_OVERRIDES, "hydra/sweeper=vertex_vizier",
          "hydra.sweeper.max_trial_count=2", "x=choice(0,2)")
    results = OmegaConf.to_container(OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml"))
    assert isinstance(results, dict)
    assert results["state"] == "SUCCEEDED" and len(results["trials"]) == 2
    job = make_client("us-central1", EMULATOR_ADDRESS).get_hyperparameter_tuning_job(name=results["tuning_job"])
    assert job.name.startswith(f"projects/{project_number('test-project')}/locations/us-central1/")  # the launcher's project, region
    chief = job.trial_job_spec.worker_pool_specs[0]
    assert chief.machine_spec.machine_type == "g2-standard-8"
    assert chief.machine_spec.accelerator_type.name == "NVIDIA_L4" and chief.machine_spec.accelerator_count == 1
    assert chief.container_spec.image_uri == "local/hydra-test:latest"
    assert chief.container_spec.args[0].startswith("gs://hydra-test/staging/")  # the launcher's staging_dir


def test_a_key_set_under_the_sweeper_wins_and_one_line_says_so(tmp_path: Path) -> None:
    job, printed = dry_run(
        tmp_path, *L4_LAUNCHER, "hydra.launcher.job.env.SHARED=launcher", "hydra.launcher.job.env.ONLY_LAUNCHER=1",
        "hydra.sweeper.job.machine_type=n1-standard-8", "hydra.sweeper.job.accelerator_type=null",
        "hydra.sweeper.job.accelerator_count=0", "hydra.sweeper.job.env.SHARED=sweeper",
    )
    chief = job["trialJobSpec"]["workerPoolSpecs"][0]
    assert chief["machineSpec"] == {"machineType": "n1-standard-8"}
    env = {e["name"]: e["value"] for e in chief["containerSpec"]["env"]}
    assert env["SHARED"] == "sweeper" and env["ONLY_LAUNCHER"] == "1"  # mappings merge key by key
    lines = [ln for ln in printed.splitlines() if ELSEWHERE in ln]
    assert len(lines) == 1, printed
    assert "n1-standard-8" in lines[0] and "g2-standard-8 with 1 x NVIDIA_L4" in lines[0]


def test_unset_keys_come_from_the_launcher_with_no_line(tmp_path: Path) -> None:
    job, printed = dry_run(tmp_path, *L4_LAUNCHER, "hydra.launcher.job.scheduling.strategy=SPOT")
    chief = job["trialJobSpec"]["workerPoolSpecs"][0]
    assert chief["machineSpec"] == {"machineType": "g2-standard-8", "acceleratorType": "NVIDIA_L4",
                                    "acceleratorCount": 1}
    assert job["trialJobSpec"]["scheduling"]["strategy"] == "SPOT"
    assert ELSEWHERE not in printed


def test_the_sweeper_alone_keeps_its_own_defaults(tmp_path: Path) -> None:
    job, printed = dry_run(tmp_path)  # Hydra's basic launcher
    assert job["trialJobSpec"]["workerPoolSpecs"][0]["machineSpec"] == {"machineType": "n1-standard-4"}
    assert ELSEWHERE not in printed
