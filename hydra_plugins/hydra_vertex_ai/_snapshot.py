"""Source snapshot: the application's own code and config files, shipped to the container.

The task function, the user's modules (`from mypkg.models import Net`) and their config files travel by
reference (see `_task_ref`). Before submitting, the application's source tree (what git would ship: tracked
and untracked-but-not-ignored files, or every file under a configured root) plus every config file of Hydra's
search path under it (ignored or not) is packed into one deterministic tar.gz named by its content hash under
`<staging_dir>/snapshots/`, so unchanged code is never uploaded twice. The entry module unpacks it, puts it
first on sys.path before unpickling anything, starts the job in the copy of the launch directory, and points
Hydra's config search path at it.

An app started from an installed package (a console script, `python -m pkg.module` from site-packages) has
its source in site-packages, not in a work tree: its snapshot is the launch directory's source tree (as for
any app, so jobs start in its copy) plus the installed package's own files under `SITE_DIR`, first on sys.path
in the container, so the job imports the code that ran here, not whatever the image has installed.
"""
import fnmatch
import gzip
import hashlib
import inspect
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from . import _storage
from ._errors import ConfigError
from .config import SnapshotConf

if TYPE_CHECKING:
    from ._staging import Staging

log = logging.getLogger(__name__)

# Where the archive holds the source of the installed package the app was started from (`installed_package`).
SITE_DIR = ".hydra_vertex_ai_site"
_SITE_PARTS = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class Snapshot:
    """What the container needs to find the shipped source; travels in the payload header (JSON)."""

    uri: str
    digest: str
    # the source root's absolute path on the submitting machine
    root: str
    # sys.path entries of the submitting process that lie under root, relative to it ("." = root)
    sys_path: Tuple[str, ...]
    # the directory the user launched from, relative to root; None when it lies outside root
    launch_dir: Optional[str] = None
    # the site-packages folder of the installed package shipped under SITE_DIR; None when there is none
    site: Optional[str] = None
    # the shipped files, relative to root (not in the header)
    files: Tuple[str, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "files"}

    @staticmethod
    def from_json(data: Dict[str, Any]) -> "Snapshot":
        return Snapshot(data["uri"], data["digest"], data["root"], tuple(data["sys_path"]), data.get("launch_dir"),
                        data.get("site"))


def stage_snapshot(
    conf: SnapshotConf, staging: "Staging", task_function: Any, config_loader: Any, key: str
) -> Optional[Snapshot]:
    """Pack and stage the application's source, unless disabled or already staged. Fails before submission."""
    if not conf.enabled:
        return None
    root = source_root(conf.root, task_function)
    package = installed_package(task_function)
    site = package.parent if package else None
    # Config files a trial composes always ship, even where an exclude pattern or .gitignore names them.
    keep = [os.path.relpath(d, root) for d in config_dirs(config_loader) if _is_under(d, root)]
    files = list_files(root, conf.include, conf.exclude, keep) + (package_files(package, conf.exclude) if package else [])
    _check_size(root, files, conf.max_size_mb, key, site)
    data = archive(root, files, site)
    digest = hashlib.sha256(data).hexdigest()
    uri = staging.snapshot(digest)
    if _storage.exists(uri):
        log.info("Source snapshot of %s unchanged (%d files), not uploaded again", root, len(files))
    else:
        _storage.write_bytes(uri, data)
        log.info("Source snapshot of %s: %d files, %.1f kB, staged as %s", root, len(files), len(data) / 1e3, uri)
    entries = tuple(sorted({os.path.relpath(p, root) for p in _sys_path() if _is_under(p, root)}))
    if site is not None:  # the shipped package before anything else: the image may have another version
        entries = (SITE_DIR, *entries)
    launch_dir = os.path.relpath(Path.cwd().resolve(), root) if _is_under(os.getcwd(), root) else None
    return Snapshot(uri, digest, str(root), entries, launch_dir, str(site) if site else None, tuple(files))


def source_root(configured: Optional[str], task_function: Any) -> Path:
    """The configured root, else the git work tree holding the task's file, else that file's folder."""
    if configured:
        return Path(configured).expanduser().resolve()
    # an installed app's own folder is in site-packages: its project is where it was started
    app_dir = Path.cwd().resolve() if installed_package(task_function) else _app_dir(task_function)
    top = _git(app_dir, "rev-parse", "--show-toplevel")
    return Path(top.strip()).resolve() if top else app_dir


def _app_dir(task_function: Any) -> Path:
    """The folder of the task's source file; the working directory for callables without one."""
    source = _source_file(task_function)
    return source.parent if source else Path.cwd().resolve()


def _source_file(task_function: Any) -> Optional[Path]:
    try:
        source = inspect.getsourcefile(inspect.unwrap(task_function))
    except TypeError:  # a callable object, e.g. Hydra's own test task: no file of the app to go by
        source = None
    return Path(source).resolve() if source else None


def installed_package(task_function: Any) -> Optional[Path]:
    """The top-level package folder (or single module file) in site-packages that the task comes from, as for
    a console script or `python -m pkg.module` of an installed package; None for an app in a source tree
    (an editable install included: its files are in the work tree)."""
    source = _source_file(task_function)
    parts = source.parts if source else ()
    for i, part in enumerate(parts[:-1]):
        if part in _SITE_PARTS:
            return Path(*parts[: i + 2])
    return None


def package_files(package: Path, exclude: Sequence[str]) -> List[str]:
    """The installed package's files as the archive names them (under SITE_DIR), without excluded ones
    (compiled caches among them)."""
    if package.is_file():
        return [f"{SITE_DIR}/{package.name}"]
    found = [Path(folder, name).relative_to(package.parent).as_posix()
             for folder, _, names in os.walk(package) for name in names]
    return sorted(f"{SITE_DIR}/{rel}" for rel in found if _wanted(rel, (), exclude))


def _on_disk(root: Path, rel: str, site: Optional[Path]) -> Path:
    """Where a shipped file is on this machine: under root, or (under SITE_DIR) in site-packages."""
    if site is not None and rel.startswith(f"{SITE_DIR}/"):
        return site / rel[len(SITE_DIR) + 1:]
    return root / rel


def _git(cwd: Path, *args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    except OSError:  # no git on this machine
        return None
    return done.stdout if done.returncode == 0 else None


def _file_dir(search_path: Optional[str]) -> Optional[str]:
    """The directory of a file-based search path entry (`file://dir` or a bare `dir`), else None."""
    scheme, sep, rest = (search_path or "").partition("://")
    if sep and scheme != "file":
        return None
    return (rest if sep else scheme) or None


def config_dirs(config_loader: Any) -> List[str]:
    """The file-based directories of Hydra's config search path."""
    dirs = [_file_dir(element.path) for element in config_loader.get_search_path().get_path()]
    return [os.path.abspath(d) for d in dirs if d]


def list_files(root: Path, include: Sequence[str], exclude: Sequence[str], keep: Sequence[str] = ()) -> List[str]:
    """Relative paths to ship: git's tracked and untracked-but-not-ignored files, or every file under root.

    Files git lists under a `keep` directory (Hydra's config dirs) ship whatever the include/exclude patterns
    say, and so does every config file on disk there, ignored or not (see `config_files`)."""
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        candidates = [p for p in listed.split("\0") if p]
    else:
        candidates = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs]
    kept = [p for p in candidates if any(_is_under(str(root / p), root / k) for k in keep)]
    wanted = [p for p in candidates if _wanted(p, include, exclude)]
    configs = [p for k in keep for p in config_files(root, k, exclude)]
    return sorted(p for p in set(kept + wanted + configs) if os.path.isfile(root / p))


# What Hydra's file config source reads.
_CONFIG_SUFFIXES = (".yaml", ".yml")


def config_files(root: Path, config_dir: str, exclude: Sequence[str]) -> List[str]:
    """Every config file on disk under `config_dir`, gitignored ones included (say configs/local/default.yaml,
    an `optional` default): a trial composes in the container exactly what it would compose here. Hidden folders
    (`.hydra` of earlier runs, `.git`) and folders named by an exclude pattern (Hydra's `outputs`, when the
    config dir is the app's own folder) are not walked."""
    found = []
    for folder, dirs, names in os.walk(root / config_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not any(fnmatch.fnmatch(d, pat) for pat in exclude)]
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names if n.endswith(_CONFIG_SUFFIXES)]
    return found


def _wanted(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    parts = Path(path).parts
    if any(fnmatch.fnmatch(path, pat) or any(fnmatch.fnmatch(part, pat) for part in parts) for pat in exclude):
        return False
    return not include or any(fnmatch.fnmatch(path, pat) for pat in include)


def _check_size(root: Path, files: List[str], max_size_mb: float, key: str, site: Optional[Path] = None) -> None:
    sizes = sorted(((os.path.getsize(_on_disk(root, f, site)), f) for f in files), reverse=True)
    total = sum(size for size, _ in sizes)
    if total > max_size_mb * 1e6:
        largest = ", ".join(f"{name} ({size / 1e6:.1f} MB)" for size, name in sizes[:5])
        raise ConfigError(
            f"{key}.snapshot.max_size_mb",
            f"the source snapshot of {root} is {total / 1e6:.1f} MB, over the limit of {max_size_mb} MB; "
            f"largest files: {largest}. Exclude them with {key}.snapshot.exclude, raise the limit, or set "
            f"{key}.snapshot.enabled=false if the image already contains the code",
        )


def archive(root: Path, files: List[str], site: Optional[Path] = None) -> bytes:
    """A tar.gz whose bytes depend only on the files' paths, modes and contents (so the hash is stable)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            path = _on_disk(root, rel, site)
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    return gzip.compress(raw.getvalue(), mtime=0)


def _sys_path() -> List[str]:
    return [os.path.abspath(p or os.getcwd()) for p in sys.path]


def _is_under(path: str, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root)
    except ValueError:
        return False
    return True


def unpack(snapshot: Snapshot) -> Path:
    """Unpack once per machine (replicas and trials share it); an atomic rename makes concurrent unpacks safe.

    The archive must hash to the digest it is named by (checked before it is cached under that digest)."""
    target = Path(tempfile.gettempdir(), "hydra_vertex_ai", "snapshots", snapshot.digest)
    if target.is_dir():
        return target
    data = _storage.read_bytes(snapshot.uri)
    actual = hashlib.sha256(data).hexdigest()
    if actual != snapshot.digest:  # never cache another archive under the claimed digest
        raise ValueError(f"source snapshot {snapshot.uri} is not the one staged: its sha256 is {actual}, "
                         f"expected {snapshot.digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            _extract(tar, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    try:
        scratch.rename(target)
    except OSError:  # another replica won the race: use its copy
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _extract(tar: tarfile.TarFile, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")  # refuses absolute paths, '..' and links out of the tree
        return
    for member in tar.getmembers():  # Pythons without extraction filters: check paths ourselves
        if not (into / member.name).resolve().is_relative_to(into.resolve()) or member.issym() or member.islnk():
            raise ValueError(f"unsafe path in source snapshot: {member.name}")
    tar.extractall(into)


def activate(snapshot: Snapshot, target: Path) -> None:
    """Put the unpacked source where the submitting process had it on sys.path, and start in the copy of the
    directory the user launched from (as Hydra's basic launcher starts its jobs in that directory)."""
    sys.path[0:0] = [str((target / rel).resolve()) for rel in snapshot.sys_path] or [str(target)]
    if snapshot.launch_dir is not None:
        start = target / snapshot.launch_dir
        start.mkdir(parents=True, exist_ok=True)  # a launch dir holding nothing shipped is not in the archive
        os.chdir(start)


def remap_config_search_path(config_loader: Any, snapshot: Snapshot, target: Path) -> None:
    """Point file-based config sources under the source root (or the shipped package) at their unpacked copies."""
    search_path = config_loader.get_search_path()
    shipped = [(Path(snapshot.root), target)]
    if snapshot.site:  # `python -m pkg.module` composes from the installed package's folder
        shipped.insert(0, (Path(snapshot.site), target / SITE_DIR))
    changed = False
    for element in search_path.get_path():
        local = _file_dir(element.path)
        here = next(((base, copy) for base, copy in shipped if local and _is_under(local, base)), None)
        if local and here:
            prefix = "file://" if element.path.startswith("file://") else ""
            element.path = prefix + str(here[1] / os.path.relpath(local, here[0]))
            changed = True
    if changed:
        config_loader.repository.initialize_sources(search_path)
