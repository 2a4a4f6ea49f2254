"""A pythonPackageSpec run as Vertex runs it: its packages installed into a virtual environment on the
executor image, then `python -m <pythonModule> <args>` in that environment.

Here the executor image is this Python environment: the virtual environment is created with
`--system-site-packages` and also sees this environment's own site-packages when it is itself a virtualenv
(a venv's "system" is the base interpreter, not the venv it was created from). What the image ships is
therefore what is installed here, and pip installs only the packages themselves, offline (`--no-index`): a
requirement this machine lacks fails the job, it is never downloaded. One environment per content hash of
the packages, cached across jobs and runs under HYDRA_VERTEX_AI_CACHE (default ~/.cache/hydra-vertex-ai).
"""
import fcntl
import hashlib
import logging
import os
import shutil
import site
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

from .. import _storage

log = logging.getLogger(__name__)

CACHE_ENV = "HYDRA_VERTEX_AI_CACHE"
_READY = ".hydra-vertex-ai-installed"
_PIP_TIMEOUT_S = 900


class InstallError(RuntimeError):
    """pip could not install a job's packages; the message carries pip's last lines."""


@dataclass(frozen=True)
class PackageEnv:
    """The environment a python-package pool runs in, and what installing it cost this job."""

    root: Path
    install_s: float
    cached: bool

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    def describe(self) -> str:
        how = "reused (cached)" if self.cached else f"installed in {self.install_s:.1f}s"
        return f"[hydra-vertex-ai] python packages: environment {self.root} {how}\n"


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    base = Path(configured) if configured else Path.home() / ".cache" / "hydra-vertex-ai"
    return base.expanduser()


def package_envs(job: Mapping[str, Any]) -> Dict[int, PackageEnv]:
    """An installed environment for each pool of `job` that runs a pythonPackageSpec (pool index -> env)."""
    envs: Dict[int, PackageEnv] = {}
    by_uris: Dict[tuple, PackageEnv] = {}
    for i, pool in enumerate(job["jobSpec"]["workerPoolSpecs"]):
        spec = (pool or {}).get("pythonPackageSpec")
        if spec:
            uris = tuple(spec.get("packageUris", []))
            if uris not in by_uris:
                by_uris[uris] = ensure_env(uris)
            envs[i] = by_uris[uris]
    return envs


def ensure_env(uris: Sequence[str]) -> PackageEnv:
    """The cached environment with `uris` installed, created (under a lock) if this is their first job."""
    started = time.monotonic()
    files = [_fetch(uri) for uri in uris]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    root = cache_dir() / "venvs" / digest.hexdigest()[:24]
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # jobs starting at once build one environment, the others wait
        if (root / _READY).exists():
            return PackageEnv(root, time.monotonic() - started, cached=True)
        shutil.rmtree(root, ignore_errors=True)  # a half-built one (a killed install)
        _create(root, files)
        (root / _READY).touch()
    elapsed = time.monotonic() - started
    log.info("Installed %d python package(s) into %s in %.1fs", len(files), root, elapsed)
    return PackageEnv(root, elapsed, cached=False)


def _fetch(uri: str) -> Path:
    """A local copy of a package (gs:// through the storage client, a local path as it is), keeping its file
    name: pip reads the wheel's name and version from it."""
    if not _storage.is_gcs(uri):
        return Path(uri)
    folder = cache_dir() / "downloads" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    path = folder / _storage.basename(uri)
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # one temporary name per process and thread: the emulator installs the jobs of a sweep concurrently
        tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(_storage.read_bytes(uri))
        os.replace(tmp, path)
    return path


def _create(root: Path, files: List[Path]) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
                   check=True, capture_output=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # This environment's site-packages (and the .pth files in them, e.g. editable installs) below the venv's own.
    lines = [f"import site; site.addsitedir({d!r})" for d in site.getsitepackages() if os.path.isdir(d)]
    Path(purelib, "_hydra_vertex_ai_image.pth").write_text("\n".join(lines) + "\n")
    command = [str(python), "-m", "pip", "install", "--no-index", "--no-input", "--disable-pip-version-check",
               "--quiet", *map(str, files)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S,
                          env={**os.environ, "PIP_NO_INDEX": "1"})
    (root / "install.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        shutil.rmtree(root, ignore_errors=True)
        raise InstallError(f"pip could not install the job's packages offline (--no-index: a requirement this "
                           f"machine lacks is never downloaded):\n{tail}")
