"""Issue #12: a real project runs unchanged, and the local backend is as strict as a Vertex container.

These tests state the issue's "Tests that must pass in CI" against tests/apps/template_like, an app shaped like
ashleve/lightning-hydra-template (no torch, no network): a `src/` package with a `data/` subpackage, a
`.project-root` marker and rootutils-style module-level set-up exporting PROJECT_ROOT (read by the config with
`oc.env`), a module-level custom resolver, the gitignored optional group `local`, relative file reads and
writes, `_target_` classes in `src/`, and a task returning its metric only when `optimized_metric` is set.

Every test copies the app into its own git repository (so the app's .gitignore is evaluated as in a user's
clone) and creates the gitignored configs/local/default.yaml after the commit, as a user's machine has it.
Each job logs one `RECORD {json}` line into <output_dir>/train.log: what it saw, paths relative to its
PROJECT_ROOT; the tests compare those records, the jobs' files and configs with Hydra's basic launcher.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

import pytest
from conftest import VERTEX_OVERRIDES, wait_for
from omegaconf import OmegaConf

from hydra_plugins.hydra_vertex_ai._backends.processes import LOCAL_ENV_PASSTHROUGH, LOCAL_ENV_PASSTHROUGH_PREFIXES

TESTS = Path(__file__).parent
APP = TESTS / "apps" / "template_like"
REPO = TESTS.parent
LOCAL_DEFAULT = "# @package _global_\nlocal_marker: from_local_default\n"
SWEEP = Path("logs", "train", "multiruns", "run")  # hydra.sweep.dir of the app, under its PROJECT_ROOT


def sweep_of(tag: str) -> Path:
    """The sweep dir of a run with `run_tag=TAG`. Emulator tests use a tag of their own: the session's bucket
    is shared, and the vertex backend stages outputs under <staging>/sweeps/<sweep dir relative to cwd>."""
    return Path("logs", "train", "multiruns", tag)
LAUNCHER_LOCAL = ["hydra/launcher=vertex_ai", "hydra.launcher.backend=local", "hydra.launcher.max_parallel=2"]
# The same backend settings for the sweeper (the emulator's, and the local backend's).
SWEEPER_VERTEX = [o.replace("hydra.launcher.", "hydra.sweeper.") for o in VERTEX_OVERRIDES]
SWEEPER_LOCAL = ["hydra.sweeper.backend=local", "hydra.sweeper.max_parallel=2"]
# Record fields that legitimately differ between a basic launcher job and a container job.
NOT_COMPARED = ("env_keys", "raw_output_dir")
# The host variables a local (or emulated) container may see: the documented list (item 5).
DOCUMENTED_HOST_ENV = set(LOCAL_ENV_PASSTHROUGH)
DOCUMENTED_HOST_PREFIXES = LOCAL_ENV_PASSTHROUGH_PREFIXES
# What Vertex (or our entry) sets in a container, and what the app itself exports at import time.
CONTAINER_ENV = {"CLUSTER_SPEC", "TF_CONFIG", "OMP_NUM_THREADS", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
                 "LOCAL_RANK", "NODE_RANK", "PROJECT_ROOT", "STORAGE_EMULATOR_HOST"}
CONTAINER_PREFIXES = ("CLOUD_ML_", "AIP_", "HYDRA_VERTEX_AI_")


# ----------------------------------------------------------------------------------------------- helpers
def make_project(tmp_path: Path, name: str = "project") -> Path:
    """A user's clone of the app: its own git repo, plus the gitignored local config (never committed)."""
    root = tmp_path / name
    shutil.copytree(APP, root, ignore=_leftovers)
    git = ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "template-like project"], check=True)
    (root / "configs" / "local" / "default.yaml").write_text(LOCAL_DEFAULT)
    ignored = subprocess.run([*git, "check-ignore", "-q", "configs/local/default.yaml"])
    assert ignored.returncode == 0, "the app's .gitignore must ignore configs/local/default.yaml"
    return root


def _leftovers(folder: str, names: List[str]) -> List[str]:
    """Outputs of a by-hand run of the app in place, and a by-hand copy of the gitignored local config."""
    local = Path(folder).name == "local" and Path(folder).parent.name == "configs"
    return [n for n in names if n in ("__pycache__", "logs", "written") or (local and n == "default.yaml")]


def clean_env(**extra: str) -> Dict[str, str]:
    return {**os.environ, **extra}


def train(root: Path, *args: str, env: Optional[Mapping[str, str]] = None,
          timeout: float = 300) -> "subprocess.CompletedProcess[str]":
    """`python src/train.py ARGS` from the project root, as the template's README says to run it."""
    return subprocess.run([sys.executable, "src/train.py", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=dict(env) if env is not None else None)


def ok(proc: "subprocess.CompletedProcess[str]") -> "subprocess.CompletedProcess[str]":
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "HYDRA_FULL_ERROR=1 for" not in ln]
    last = lines[-1] if lines else ""
    assert proc.returncode == 0, f"exit {proc.returncode}: {last}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def records(sweep_dir: Path) -> List[Dict[str, Any]]:
    """The RECORD of every job whose log is in the sweep dir (job dirs named by number)."""
    found = []
    for log in sorted(sweep_dir.glob("*/train.log")):
        for line in log.read_text().splitlines():
            _, sep, rest = line.partition("RECORD ")
            if sep:
                found.append(json.loads(rest))
    return found


def comparable(record: Mapping[str, Any], drop: Sequence[str] = ()) -> Dict[str, Any]:
    out = {k: v for k, v in record.items() if k not in NOT_COMPARED and k not in drop}
    if "job_num" in drop:  # a sweep's trials run in any order: compare them without their numbers
        num = record["job_num"]
        out = json.loads(json.dumps(out).replace(f"<SWEEP>/{num}\"", "<SWEEP>/<N>\""))
        out["written"] = re.sub(rf"(^|/){num}\.txt$", r"\1<N>.txt", out["written"])
    out["overrides"] = same_intent(record["overrides"])
    return out


def same_intent(overrides: Sequence[str]) -> List[str]:
    """A sweep's hparams_search config sets optimized_metric; the basic reference run sets it on the command line."""
    return [o for o in overrides if not o.startswith(("hparams_search=", "optimized_metric="))]


def files_under(folder: Path) -> Set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def job_dirs(sweep_dir: Path) -> Dict[str, Path]:
    return {p.name: p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()}


def by_params(recs: Sequence[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    return {" ".join(comparable(r)["overrides"]): r for r in recs}


def basic_launcher_run(tmp_path: Path, *args: str) -> Path:
    """The reference: the same command under Hydra's basic launcher; returns its project root."""
    root = make_project(tmp_path, "basic")
    ok(train(root, *args))
    return root


def assert_same_record(got: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    """Field by field, so that a failure names what differs (container job vs basic launcher job)."""
    diff = {k: {"got": got.get(k), "basic": expected.get(k)} for k in sorted(set(got) | set(expected))
            if got.get(k) != expected.get(k)}
    if "cfg" in diff:  # the config keys that differ, not the whole config
        g, b = diff["cfg"]["got"] or {}, diff["cfg"]["basic"] or {}
        diff["cfg"] = {k: {"got": g.get(k), "basic": b.get(k)} for k in sorted(set(g) | set(b)) if g.get(k) != b.get(k)}
    assert not diff, f"{what}: differs from Hydra's basic launcher: {json.dumps(diff, indent=1)}"


def assert_same_as_basic(basic_root: Path, root: Path, recs: List[Dict[str, Any]], n_jobs: int,
                         keyed_by_params: bool = False, tag: str = "run") -> None:
    """Same records (configs as the job resolved them, return values, cwd, files read and written), same files in
    every output dir, same .hydra/config.yaml and overrides.yaml, as the basic launcher's run."""
    sweep_dir = root / sweep_of(tag)
    expected = records(basic_root / sweep_of(tag))
    assert len(expected) == n_jobs
    assert len(recs) == n_jobs, f"{len(recs)} of {n_jobs} jobs logged a record (see the job logs under {sweep_dir})"
    drop = ("job_num", "output_dir") if keyed_by_params else ()
    if keyed_by_params:
        exp, got = by_params(expected), by_params(recs)
        assert sorted(got) == sorted(exp)
        for key in exp:
            assert_same_record(comparable(got[key], drop), comparable(exp[key], drop), key)
    else:
        mine = {r["job_num"]: comparable(r) for r in recs}
        assert sorted(mine) == sorted(r["job_num"] for r in expected)
        for rec in expected:
            assert_same_record(mine[rec["job_num"]], comparable(rec), f"job {rec['job_num']}")
    # the files each job left in its output dir, and its composed config
    basic_dirs = {str(r["job_num"]): basic_root / sweep_of(tag) / str(r["job_num"]) for r in expected}
    for rec in recs:
        twin = by_params(expected)[" ".join(comparable(rec)["overrides"])]
        mine = Path(rec["raw_output_dir"])
        theirs = basic_dirs[str(twin["job_num"])]
        assert files_under(mine) == files_under(theirs), mine
        local_copy = sweep_dir / Path(rec["output_dir"]).name / ".hydra"
        assert OmegaConf.load(local_copy / "config.yaml") == OmegaConf.load(theirs / ".hydra" / "config.yaml"), local_copy
        # a sweep's trial lists its fixed overrides before its parameters (the record compares them sorted too)
        order = sorted if keyed_by_params else list
        assert order(same_intent(OmegaConf.load(local_copy / "overrides.yaml"))) == \
            order(same_intent(OmegaConf.load(theirs / ".hydra" / "overrides.yaml"))), local_copy
    # the relative writes: where the job's working directory was (its PROJECT_ROOT-relative name is in the record)
    assert all(r["written_ok"] for r in recs)


# ----------------------------------------------------------------------------- launcher: 2 jobs, like basic
LAUNCH_ARGS = ["-m", "model.lr=0.01,0.02"]


def test_launcher_local_backend_matches_basic_launcher(tmp_path: Path) -> None:
    basic = basic_launcher_run(tmp_path, *LAUNCH_ARGS)
    root = make_project(tmp_path)
    ok(train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL))
    assert_same_as_basic(basic, root, records(root / SWEEP), n_jobs=2)


def test_launcher_through_emulator_matches_basic_launcher(tmp_path: Path, vertex_emulator: Any) -> None:
    tag = f"emu-{uuid.uuid4().hex[:8]}"
    basic = basic_launcher_run(tmp_path, *LAUNCH_ARGS, f"run_tag={tag}")
    root = make_project(tmp_path)
    ok(train(root, *LAUNCH_ARGS, f"run_tag={tag}", "hydra/launcher=vertex_ai", *VERTEX_OVERRIDES))
    assert_same_as_basic(basic, root, records(root / sweep_of(tag)), n_jobs=2, tag=tag)


# --------------------------------------------------------------------------- sweeper: 4 trials, like basic
# hparams_search=tiny_vizier is a 2 x 2 grid over model.lr and model.width, with optimized_metric=val/acc.
BASIC_GRID = ["-m", "model.lr=0.01,0.02", "model.width=4,8", "optimized_metric=val/acc"]


def assert_sweep_same_as_basic(basic: Path, root: Path, tag: str = "run") -> None:
    recs = records(root / sweep_of(tag))
    assert_same_as_basic(basic, root, recs, n_jobs=4, keyed_by_params=True, tag=tag)
    # the objective of every trial is what the task returned under the basic launcher
    results = OmegaConf.to_container(OmegaConf.load(root / sweep_of(tag) / "optimization_results.yaml"))
    assert isinstance(results, dict) and results["state"] == "SUCCEEDED"
    swept = ("model.lr=", "model.width=")
    expected = {" ".join(sorted(o for o in r["overrides"] if o.startswith(swept))): r["return_value"]
                for r in records(basic / sweep_of(tag))}
    got = {" ".join(sorted(t["params"])): t["value"] for t in results["trials"]}
    assert got == pytest.approx(expected)
    # output dirs numbered as Hydra's sweepers number them: from 0
    assert sorted(r["job_num"] for r in recs) == [0, 1, 2, 3]


def test_sweeper_local_backend_matches_basic_launcher(tmp_path: Path) -> None:
    basic = basic_launcher_run(tmp_path, *BASIC_GRID)
    root = make_project(tmp_path)
    ok(train(root, "hparams_search=tiny_vizier", *SWEEPER_LOCAL))
    assert_sweep_same_as_basic(basic, root)


def test_sweeper_through_emulator_matches_basic_launcher(tmp_path: Path, vertex_emulator: Any) -> None:
    tag = f"emu-{uuid.uuid4().hex[:8]}"
    basic = basic_launcher_run(tmp_path, *BASIC_GRID, f"run_tag={tag}")
    root = make_project(tmp_path)
    ok(train(root, "hparams_search=tiny_vizier", f"run_tag={tag}", *SWEEPER_VERTEX))
    assert_sweep_same_as_basic(basic, root, tag)


# --------------------------------------------------------------------------- the local job's environment
HOST_ONLY = "HYDRA_VERTEX_TEST_HOST_ONLY"


def _undocumented(keys: Sequence[str], job_env: Sequence[str] = ()) -> List[str]:
    return sorted(
        k for k in keys
        if k not in DOCUMENTED_HOST_ENV and not k.startswith(DOCUMENTED_HOST_PREFIXES)
        and k not in CONTAINER_ENV and not k.startswith(CONTAINER_PREFIXES) and k not in job_env
    )


def test_local_job_environment_holds_only_documented_host_variables(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    # the app sets PROJECT_ROOT itself; the test shell sets this one, which no container would have. A GPU
    # image's ENV sets runtime-library settings such as OMPI_MCA_plm (seen on a GPU machine: without it Open
    # MPI refused to start and Lightning's MPI probe killed every local job): those are the image's, and stay.
    ok(train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL, env=clean_env(**{HOST_ONLY: "leaked", "OMPI_MCA_plm": "isolated"})))
    recs = records(root / SWEEP)
    assert len(recs) == 2, "no job got far enough to log its environment"
    for rec in recs:
        assert HOST_ONLY not in rec["env_keys"]
        assert "OMPI_MCA_plm" in rec["env_keys"]
        assert _undocumented(rec["env_keys"]) == []


def test_local_env_passthrough_adds_named_host_variables(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    ok(train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL, f"hydra.launcher.local_env_passthrough=[{HOST_ONLY}]",
             env=clean_env(**{HOST_ONLY: "wanted"})))
    recs = records(root / SWEEP)
    assert len(recs) == 2 and all(HOST_ONLY in rec["env_keys"] for rec in recs)


def test_local_sweeper_without_optuna_says_what_to_install(tmp_path: Path) -> None:
    """Item 6: optuna is an extra; without it the local study engine fails with one line saying what to install
    (for a search that samples: the template's grid runs without optuna, so this one is made random)."""
    root = make_project(tmp_path)
    hide = ("import runpy, sys; sys.modules['optuna'] = None; sys.argv = ['src/train.py', *sys.argv[1:]]; "
            "runpy.run_path('src/train.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", hide, "hparams_search=tiny_vizier", "hydra.sweeper.algorithm=random",
                           *SWEEPER_LOCAL], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "pip install 'hydra-vertex-ai[local-sweeps]'" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not list((root / SWEEP / ".vertex_ai").glob("*/trials/*")), "trials started without a study engine"


def test_job_env_is_set_without_plus(tmp_path: Path) -> None:
    """Item 10: `hydra.launcher.job.env.NAME=value` works without Hydra's `+`."""
    root = make_project(tmp_path)
    proc = train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL, "hydra.launcher.dry_run=true",
                 "hydra.launcher.job.env.MY_JOB_VAR=from_job_env")
    ok(proc)
    assert "MY_JOB_VAR" in proc.stdout


# --------------------------------------------------------------------------------- payload by reference
def _staged(root: Path) -> Dict[str, Path]:
    staging = root / SWEEP / ".vertex_ai"
    contexts = sorted(staging.glob("*/context-*.pkl"))
    payloads = sorted(staging.glob("*/jobs/*/payload.pkl"))
    assert contexts and payloads, f"nothing staged under {staging}"
    return {"context": contexts[0], "payload": payloads[0]}


def _task_code() -> bytes:
    """The bytecode of the app's task function `main`, as cloudpickle would carry it by value."""
    module = compile((APP / "src" / "train.py").read_text(), str(APP / "src" / "train.py"), "exec")
    (main,) = [c for c in module.co_consts if getattr(c, "co_name", None) == "main"]
    return main.co_code


def test_payload_of_an_importable_task_carries_no_code_by_value(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL)  # the jobs' outcome does not matter here: what was staged does
    staged = _staged(root)
    for name, path in staged.items():
        raw = path.read_bytes()
        header_line, _, body = raw.partition(b"\n")
        header = json.loads(header_line)
        assert _task_code() not in body, f"{name}: the task function travels by value (its bytecode is pickled)"
        if name == "context":
            # the proposed record of how the task travels: "module:qualname", imported from the snapshot
            ref = header.get("task_ref")
            assert isinstance(ref, str) and ref.endswith(":main") and not ref.startswith("__main__"), header


def test_entry_accepts_a_payload_made_under_another_python_minor(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    train(root, *LAUNCH_ARGS, *LAUNCHER_LOCAL)
    staged = _staged(root)
    major, minor = sys.version_info[:2]
    other = f"{major}.{minor - 1 if minor > 9 else minor + 1}"
    for path in staged.values():
        header_line, _, body = path.read_bytes().partition(b"\n")
        header = json.loads(header_line)
        header["versions"]["python"] = other
        path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    workdir = tmp_path / "container"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai.entry", str(staged["payload"])],
                          cwd=workdir, capture_output=True, text=True, timeout=120,
                          env=clean_env(CLOUD_ML_JOB_ID="123"))
    assert proc.returncode != 3, f"refused as a version mismatch:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, proc.stderr[-6000:]


# ---------------------------------------------------------------------------------------------- dry runs
def no_credentials_env(tmp_path: Path) -> Dict[str, str]:
    """No credentials anywhere, no emulator: a laptop that never ran `gcloud auth`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), CLOUDSDK_CONFIG=str(home / "gcloud"),
               GOOGLE_APPLICATION_CREDENTIALS=str(home / "missing-credentials.json"), NO_GCE_CHECK="true",
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
    return env


UNREACHABLE = [None, "203.0.113.1:443"]  # the default endpoint (needs credentials), and an address nobody answers


def _vertex_dry(key: str, endpoint: Optional[str]) -> List[str]:
    args = [f"{key}.backend=vertex", f"{key}.dry_run=true", f"{key}.project=no-such-project",
            f"{key}.staging_dir=gs://no-such-bucket-hydra-vertex-ai/staging", f"{key}.job.image_uri=example/image:1"]
    return args + ([f"{key}.api_endpoint={endpoint}"] if endpoint else [])


@pytest.mark.parametrize("endpoint", UNREACHABLE)
def test_launcher_dry_run_needs_no_credentials_nor_endpoint(tmp_path: Path, endpoint: Optional[str]) -> None:
    root = make_project(tmp_path)
    proc = train(root, *LAUNCH_ARGS, "hydra/launcher=vertex_ai", *_vertex_dry("hydra.launcher", endpoint),
                 env=no_credentials_env(tmp_path), timeout=120)
    ok(proc)
    assert proc.stdout.count('"workerPoolSpecs"') == 2, proc.stdout[-3000:]


@pytest.mark.parametrize("endpoint", UNREACHABLE)
def test_sweeper_dry_run_needs_no_credentials_nor_endpoint(tmp_path: Path, endpoint: Optional[str]) -> None:
    root = make_project(tmp_path)
    proc = train(root, "hparams_search=tiny_vizier", *_vertex_dry("hydra.sweeper", endpoint),
                 env=no_credentials_env(tmp_path), timeout=120)
    ok(proc)
    assert '"trialJobSpec"' in proc.stdout, proc.stdout[-3000:]
    # item 10: the tuning job's display name is the sweep id, which starts with the job name once
    assert re.search(r'"displayName": "train-\d{8}-', proc.stdout), proc.stdout[-3000:]


# ------------------------------------------------------------------------------------------ early stop
def test_sweep_whose_first_trials_fail_alike_stops_early_and_says_why(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    proc = train(root, "hparams_search=tiny_vizier", *SWEEPER_LOCAL, "fail=disk_full",
                 "hydra.sweeper.algorithm=random", "hydra.sweeper.max_trial_count=8")
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    started = list((root / SWEEP / ".vertex_ai").glob("*/trials/*"))
    assert 0 < len(started) < 8, f"{len(started)} of 8 trials started: the study did not stop early"
    assert "broken on purpose: disk_full" in output, "the first failed trial's reason is not on the console"
    assert re.search(r"\S+\.log\b", output), "the failed trial's log path is not on the console"
    assert "Traceback" not in proc.stderr, "a user-facing error should be a CompactHydraException"


def test_a_vertex_study_whose_first_trials_fail_alike_is_cancelled_early(tmp_path: Path, vertex_emulator: Any) -> None:
    """The same rule on the vertex backend: Vertex would run the whole budget, so the sweeper cancels the study."""
    root = make_project(tmp_path)
    proc = train(root, "hparams_search=tiny_vizier", *SWEEPER_VERTEX, "fail=disk_full", f"run_tag=emu-{uuid.uuid4().hex[:8]}",
                 "hydra.sweeper.algorithm=random", "hydra.sweeper.max_trial_count=8")
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "broken on purpose: disk_full" in output, "the first failed trial's reason is not on the console"
    assert "stopped the study" in output and "Stopped early: cancelled Vertex AI tuning job" in output, output[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    study = vertex_emulator.jobs("hyperparameterTuningJobs")[-1]
    assert 0 < len(study.get("trials", [])) < 8, "the study ran its whole budget"
    wait_for(lambda: vertex_emulator.jobs("hyperparameterTuningJobs")[-1]["state"] == "JOB_STATE_CANCELLED", 60,
             "the tuning job to end CANCELLED")


# ---------------------------------------------------------------------------- pip resolves with Hydra's plugins
def _stub_wheel(folder: Path, name: str, version: str, requires: Sequence[str]) -> None:
    """A wheel holding nothing but the metadata pip's resolver reads."""
    dist = f"{name.replace('-', '_')}-{version}"
    metadata = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    files = {f"{dist}.dist-info/METADATA": metadata,
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as whl:
        for arcname, text in files.items():
            whl.writestr(arcname, text)


def test_pip_resolves_this_package_with_hydra_optuna_sweeper_1_2_0(tmp_path: Path) -> None:
    """Offline: hydra-optuna-sweeper 1.2.0 (its real requirements) and an optuna it accepts, as stub wheels; the
    rest of this package's requirements, with the local-sweeps and emulator extras (issue 20), from the installed
    environment. A conflict is ResolutionImpossible."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _stub_wheel(wheels, "hydra-optuna-sweeper", "1.2.0", ["hydra-core>=1.1.0.dev7", "optuna<3.0.0,>=2.10.0"])
    _stub_wheel(wheels, "optuna", "2.10.1", [])
    project = tmp_path / "hydra-vertex-ai"  # this package's metadata, built outside the repository
    (project / "hydra_plugins" / "hydra_vertex_ai").mkdir(parents=True)
    for rel in ("setup.py", "README.md", "hydra_plugins/hydra_vertex_ai/__init__.py"):
        shutil.copy(REPO / rel, project / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(wheels),
         "--no-build-isolation", "--disable-pip-version-check", f"{project}[local-sweeps,emulator]",
         "hydra-optuna-sweeper==1.2.0"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert "ResolutionImpossible" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
