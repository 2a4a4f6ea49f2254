"""The no-image path: a job without `image_uri` runs Vertex's `pythonPackageSpec` on a prebuilt training image.

Two packages travel, each a wheel named by its content hash under `<staging_dir>/packages/` (staged once,
whatever the number of jobs, and never again while nothing changes):
- a wheel of this package as installed here, built from its files (an editable checkout works, no network);
- a generated wheel whose only content is its dependencies: the project's requirements, with hydra-core and
  omegaconf pinned to the versions here (the container entry refuses any drift).
The executor image is the prebuilt one that fits the app (`_vertex_images`): PyTorch of the local torch
major.minor when the app uses torch, its GPU variant for pools with GPUs; otherwise the newest CPU/GPU one.
"""
import base64
import hashlib
import io
import logging
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _storage
from ._errors import ConfigError
from ._jobspec import PythonPackages
from ._vertex_images import find_images, multi_region, nearest_images, not_prebuilt_message, training_image
from .config import BackendKind, JobSpecConf, VertexBackendConf, WorkerPoolConf

log = logging.getLogger(__name__)

DISTRIBUTION = "hydra-vertex-ai"
# What the container entry needs of our dependencies is already in every prebuilt image or small; these two are
# only used on the submitting side (the entry never imports them: tests/test_discovery_is_light.py), and would
# cost every replica start a large install.
HOST_ONLY_DEPENDENCIES = ("google-cloud-aiplatform", "rich")
# Pinned to the versions here: the entry refuses a config composed by another hydra-core or omegaconf.
PINNED = ("hydra-core", "omegaconf")
# Requirements that mean "the app uses torch" even when it imports torch lazily.
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio", "lightning", "pytorch-lightning")
# setup.py's python_requires: an image with an older Python cannot install our wheel.
MIN_PYTHON = "3.10"
REQUIREMENTS_PACKAGE = "hydra_vertex_ai_requirements"
# wheels are zip files; a fixed timestamp makes equal content give equal bytes, hence one staged copy
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class StagedPackages:
    """The packages of a launch: the spec's side (URIs, images) and the bytes still to stage under each URI."""

    packages: PythonPackages
    files: Dict[str, bytes]
    requirements: Tuple[str, ...]


def runs_packages(conf: VertexBackendConf) -> bool:
    """Whether jobs run a pythonPackageSpec: on vertex whenever no image_uri is set; on the local backend only
    when an executor image is named (otherwise this environment is the image: a local run installs nothing)."""
    if conf.job.image_uri:
        return False
    return conf.backend != BackendKind.local or bool(conf.job.executor_image_uri)


def validate(job: JobSpecConf, key: str, packages: bool) -> None:
    """The settings of the python-package path Vertex would refuse, before anything is staged."""
    if job.image_uri and job.executor_image_uri:
        raise ConfigError(f"{key}.executor_image_uri", "applies only without image_uri (your image runs as it is): "
                                                       "set one of them")
    if job.executor_image_uri and training_image(job.executor_image_uri) is None:
        raise ConfigError(f"{key}.executor_image_uri", not_prebuilt_message(job.executor_image_uri))
    if job.requirements is not None and not isinstance(job.requirements, (str, list, tuple)):
        raise ConfigError(f"{key}.requirements", "a list of pip requirements, or the path of a requirements file")
    if not packages:
        return
    for i, pool in enumerate(job.worker_pools):
        if pool.command is not None and not pool.image_uri and pool.replica_count:
            raise ConfigError(f"{key}.worker_pools[{i}].image_uri",
                              "a pool with its own command runs a container: it needs its own image_uri "
                              "when job.image_uri is unset")


def prepare(job: JobSpecConf, key: str, location: str, staging: Any, snapshot_root: Path) -> StagedPackages:
    """Requirements, wheels and executor images of a launch; raises ConfigError before anything is staged."""
    requirements = tuple(pinned(read_requirements(job.requirements, snapshot_root, f"{key}.requirements"),
                                f"{key}.requirements"))
    cpu, gpu = choose_images(job, key, location, requirements)
    wheels = [own_wheel(), requirements_wheel(requirements)]
    files = {staging.package(_digest(data), name): data for name, data in wheels}
    return StagedPackages(PythonPackages(tuple(files), cpu, gpu), files, requirements)


def stage_packages(staged: StagedPackages) -> int:
    """Upload the packages not staged yet (content-addressed: unchanged ones never again); how many were."""
    missing = {uri: data for uri, data in staged.files.items() if not _storage.exists(uri)}
    for uri, data in missing.items():
        _storage.write_bytes(uri, data)
    images = sorted({staged.packages.cpu_image, staged.packages.gpu_image})
    log.info("Python package jobs on %s: %d requirement(s), packages %s (%d newly staged)",
             " / ".join(images), len(staged.requirements), ", ".join(staged.files), len(missing))
    return len(missing)


# --- requirements ------------------------------------------------------------------------------------------


def read_requirements(configured: Any, snapshot_root: Path, key: str) -> List[str]:
    """`job.requirements` as pip requirement strings: a list as it is, a file's lines, or by default the
    snapshot root's requirements.txt, else its pyproject.toml's [project.dependencies], else none."""
    if isinstance(configured, (list, tuple)):
        lines = [str(r) for r in configured]
    elif isinstance(configured, str):
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(key, f"no requirements file {path.resolve()}")
        lines = _requirement_lines(path.read_text(), key)
    elif (snapshot_root / "requirements.txt").is_file():
        lines = _requirement_lines((snapshot_root / "requirements.txt").read_text(), key)
    elif (snapshot_root / "pyproject.toml").is_file():
        lines = _pyproject_dependencies(snapshot_root / "pyproject.toml", key)
    else:
        lines = []
    for line in lines:
        _parse(line, key)
    return lines


def _requirement_lines(text: str, key: str) -> List[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):  # -r, -e, --index-url...: pip options, not requirements a package can declare
            raise ConfigError(key, f"'{line}': only requirement lines can travel as a package's dependencies "
                                   "(no pip options, private indexes or editable installs)")
        lines.append(line)
    return lines


def _pyproject_dependencies(path: Path, key: str) -> List[str]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ImportError:  # Python 3.10
        raise ConfigError(key, f"reading {path} needs Python 3.11: list the requirements in {key}") from None
    try:
        project = tomllib.loads(path.read_text()).get("project", {})
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(key, f"{path} is not valid TOML: {e}") from None
    return [str(d) for d in project.get("dependencies", [])]


def _parse(line: str, key: str) -> Any:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(line)
    except InvalidRequirement as e:
        raise ConfigError(key, f"'{line}' is not a pip requirement: {e}") from None


def _name(line: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(_parse(line, "requirements").name))


def pinned(requirements: Sequence[str], key: str) -> List[str]:
    """The requirements with hydra-core and omegaconf pinned to this environment's versions; a user's own
    spec for them must admit those versions. Nothing else is added: frameworks the image ships stay as it has them."""
    pins = {name: metadata.version(name) for name in PINNED}
    out = []
    for line in requirements:
        name = _name(line)
        if name in pins:
            if not _parse(line, key).specifier.contains(pins[name], prereleases=True):
                raise ConfigError(key, f"'{line}' excludes {name} {pins[name]} installed here; the job must run "
                                       f"the versions it was composed with")
            continue
        out.append(line)
    return [f"{name}=={version}" for name, version in pins.items()] + out


# --- executor images ---------------------------------------------------------------------------------------


def _pools(job: JobSpecConf) -> List[WorkerPoolConf]:
    """The pools that run our entry on the executor image (a pool with its own image or command keeps it)."""
    return [job] + [p for p in job.worker_pools if p.replica_count and not p.image_uri and p.command is None]


def uses_torch(requirements: Sequence[str]) -> bool:
    return "torch" in sys.modules or any(_name(r) in TORCH_PACKAGES for r in requirements)


def choose_images(job: JobSpecConf, key: str, location: str, requirements: Sequence[str]) -> Tuple[str, str]:
    """The executor image of CPU pools and of GPU pools: the explicit one, else the one fitting the app."""
    if job.executor_image_uri:
        return job.executor_image_uri, job.executor_image_uri
    region = multi_region(location)
    version = _torch_version(key) if uses_torch(requirements) else None
    chosen: Dict[str, str] = {}
    for accelerator in sorted({"gpu" if p.accelerator_type else "cpu" for p in _pools(job)}):
        found = find_images("pytorch", version, accelerator, MIN_PYTHON)
        if not found:
            near = "\n  ".join(i.describe(region) for i in nearest_images("pytorch", version or "0", accelerator))
            raise ConfigError(f"{key}.executor_image_uri",
                              f"Vertex has no prebuilt {accelerator.upper()} training image for torch {version} "
                              f"(installed here) with Python >= {MIN_PYTHON}; name one (the job's requirements may "
                              f"pin torch on top of it), or set image_uri to your own image. Nearest:\n  {near}")
        chosen[accelerator] = found[0].uri(region)
    cpu = chosen.get("cpu") or chosen["gpu"]
    return cpu, chosen.get("gpu", cpu)


def _torch_version(key: str) -> str:
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        raise ConfigError(f"{key}.executor_image_uri", "the app uses torch but torch is not installed here, so no "
                                                       "image can be matched to it: name the executor image") from None
    return ".".join(version.split("+")[0].split(".")[:2])


# --- wheels ------------------------------------------------------------------------------------------------


def own_wheel() -> Tuple[str, bytes]:
    """A wheel of hydra-vertex-ai from the files this process imports (editable checkouts included) and the
    installed distribution's metadata, without its host-only dependencies."""
    dist = metadata.distribution(DISTRIBUTION)
    package_dir = Path(__file__).resolve().parent
    files = {}
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"hydra_plugins/{package_dir.name}/{path.relative_to(package_dir).as_posix()}"] = path.read_bytes()
    requires = [r for r in dist.requires or [] if "extra ==" not in r and _name(r) not in HOST_ONLY_DEPENDENCIES]
    python = dist.metadata["Requires-Python"]
    return _wheel(DISTRIBUTION.replace("-", "_"), dist.version, files, requires, python)


def requirements_wheel(requirements: Sequence[str]) -> Tuple[str, bytes]:
    """A wheel with no code whose dependencies are the project's requirements: pip installs them with it."""
    return _wheel(REQUIREMENTS_PACKAGE, "1.0", {}, requirements, None)


def _wheel(name: str, version: str, files: Dict[str, bytes], requires: Sequence[str],
           python: Optional[str]) -> Tuple[str, bytes]:
    """A pure-Python wheel (PEP 427) with deterministic bytes: sorted entries, fixed timestamps."""
    info = f"{name}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Python: {python}"] if python else []
    meta += [f"Requires-Dist: {r}" for r in requires]
    entries = dict(files)
    entries[f"{info}/METADATA"] = ("\n".join(meta) + "\n").encode()
    entries[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: hydra-vertex-ai\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = [f"{path},sha256={_record_hash(data)},{len(data)}" for path, data in sorted(entries.items())]
    entries[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(entries):
            item = zipfile.ZipInfo(path, _ZIP_TIME)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, entries[path])
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def for_launch(conf: VertexBackendConf, key: str, task_function: Any, staging: Any) -> Optional[StagedPackages]:
    """The packages of a launch or a study (`key`: the plugin's config key), None when its jobs run an image
    (or, on the local backend, this environment)."""
    from ._snapshot import source_root

    packages = runs_packages(conf)
    validate(conf.job, f"{key}.job", packages)
    if not packages:
        return None
    return prepare(conf.job, f"{key}.job", conf.location, staging, source_root(conf.snapshot.root, task_function))
