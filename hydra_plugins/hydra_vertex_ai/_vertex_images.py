"""Vertex AI's prebuilt training images: the only images `pythonPackageSpec.executorImageUri` accepts.

Source: https://cloud.google.com/vertex-ai/docs/training/pre-built-containers (and the support schedule it
links). Each image is served from three Artifact Registry multi-regions (us, europe, asia) as
`<multi-region>-docker.pkg.dev/vertex-ai/training/<name>:latest`; a job should use the one of its region.
When Vertex adds or retires an image, update TRAINING_IMAGES: it is the one list the client checks, the
emulator enforces and the README's table reflects. Standard library only (the emulator and `_jobspec` use it).
"""
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

REGISTRY = "docker.pkg.dev/vertex-ai/training"
MULTI_REGIONS = ("us", "europe", "asia")
# The tag the doc page lists for every image; an image named without it is refused.
TAG = "latest"
# custom_job.proto PythonPackageSpec.package_uris: "The number of Python packages ... at most 100"
MAX_PACKAGE_URIS = 100


@dataclass(frozen=True)
class TrainingImage:
    """One prebuilt training image, as the doc page lists it."""

    framework: str  # pytorch, tensorflow, scikit-learn
    version: str  # the framework's major.minor
    python: str  # the image's Python major.minor
    accelerator: str  # cpu, gpu (CUDA) or tpu
    end_of_availability: str  # ISO date after which Vertex no longer serves the image
    name: str  # the image's name in the registry

    def uri(self, multi_region: str = "us") -> str:
        return f"{multi_region}-{REGISTRY}/{self.name}:{TAG}"

    def describe(self, multi_region: str = "us") -> str:
        return (f"{self.uri(multi_region)} ({self.framework} {self.version}, {self.accelerator.upper()}, "
                f"Python {self.python}, available until {self.end_of_availability})")


def _torch(version: str, python: str, until: str, suffix: str = "") -> Tuple[TrainingImage, ...]:
    v = version.replace(".", "-")
    return (TrainingImage("pytorch", version, python, "cpu", until, f"pytorch-cpu.{v}{suffix}"),
            TrainingImage("pytorch", version, python, "gpu", until, f"pytorch-gpu.{v}{suffix}"))


def _tf(version: str, python: str, until: str) -> Tuple[TrainingImage, ...]:
    v = version.replace(".", "-")
    py = "py" + python.replace(".", "")
    return (TrainingImage("tensorflow", version, python, "cpu", until, f"tf-cpu.{v}.{py}"),
            TrainingImage("tensorflow", version, python, "gpu", until, f"tf-gpu.{v}.{py}"))


# As listed on the doc page above (framework, version, Python, accelerators, end of availability).
TRAINING_IMAGES: Tuple[TrainingImage, ...] = (
    *_torch("2.4", "3.10", "2026-09-30", ".py310"),
    *_torch("2.3", "3.10", "2026-06-30", ".py310"),
    *_torch("2.2", "3.10", "2026-03-31", ".py310"),
    *_torch("2.1", "3.10", "2025-12-31", ".py310"),
    *_torch("2.0", "3.10", "2025-06-30", ".py310"),
    *_torch("1.13", "3.8", "2025-03-31", ".py38"),
    TrainingImage("pytorch", "2.4", "3.10", "tpu", "2026-09-30", "pytorch-xla.2-4.py310"),
    *_tf("2.17", "3.10", "2026-07-31"),
    *_tf("2.16", "3.10", "2026-03-31"),
    *_tf("2.15", "3.10", "2026-01-14"),
    *_tf("2.14", "3.10", "2025-09-26"),
    TrainingImage("scikit-learn", "1.0", "3.7", "cpu", "2025-12-31", "sklearn-cpu.1-0"),
)
_URI = re.compile(rf"^(?P<region>[a-z]+)-{re.escape(REGISTRY)}/(?P<name>[^:@/]+):(?P<tag>[^:@/]+)$")


def multi_region(location: str) -> str:
    """The Artifact Registry multi-region nearest a Vertex region: europe-*, me-* and africa-* read from
    europe; asia-* and australia-* from asia; the Americas from us."""
    area = location.split("-", 1)[0]
    if area in ("europe", "me", "africa"):
        return "europe"
    if area in ("asia", "australia"):
        return "asia"
    return "us"


def training_image(uri: str) -> Optional[TrainingImage]:
    """The prebuilt training image `uri` names, in any multi-region; None if Vertex has no such image."""
    match = _URI.match(uri.strip())
    if not match or match["region"] not in MULTI_REGIONS or match["tag"] != TAG:
        return None
    return next((image for image in TRAINING_IMAGES if image.name == match["name"]), None)


def not_prebuilt_message(uri: str) -> str:
    """Why Vertex refuses `uri` as an executor image (pythonPackageSpec.executorImageUri)."""
    return (f"'{uri}' is not one of Vertex AI's prebuilt training images, the only executors a "
            f"pythonPackageSpec runs on (https://cloud.google.com/vertex-ai/docs/training/pre-built-containers); "
            f"e.g. {TRAINING_IMAGES[0].uri()}; to run your own image, set image_uri instead")


def _key(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def find_images(framework: str, version: Optional[str], accelerator: str, min_python: str) -> List[TrainingImage]:
    """The images of `framework` (at `version`, else any) for `accelerator` whose Python is at least
    `min_python`, newest framework version first."""
    found = [i for i in TRAINING_IMAGES if i.framework == framework and i.accelerator == accelerator
             and (version is None or i.version == version) and _key(i.python) >= _key(min_python)]
    return sorted(found, key=lambda i: (_key(i.version), _key(i.python)), reverse=True)


def nearest_images(framework: str, version: str, accelerator: str, count: int = 3) -> Sequence[TrainingImage]:
    """The images of `framework` for `accelerator` closest in version to `version` (what to suggest)."""
    wanted = _key(version)
    candidates = [i for i in TRAINING_IMAGES if i.framework == framework and i.accelerator == accelerator]

    def distance(image: TrainingImage) -> Tuple[int, ...]:
        have = _key(image.version)
        return tuple(abs(a - b) for a, b in zip(have + (0,) * 3, wanted + (0,) * 3))

    return sorted(candidates, key=distance)[:count]
