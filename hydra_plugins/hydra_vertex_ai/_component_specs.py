"""The declarations of a pipeline component's inputs and outputs (re-exported by `pipelines`).

They live in an underscore module because Hydra's plugin scan re-executes every public module of
`hydra_plugins` it finds, even one already imported: classes defined in `pipelines.py` itself would be
redefined by any later in-process Hydra run, and `isinstance` checks against the old ones would fail.
"""
from dataclasses import dataclass
from typing import Any, Union

# The parameter types KFP passes as plain values; each reaches the app as that Hydra type.
PARAM_TYPES = (str, int, float, bool)
# KFP's artifact classes (kfp.dsl.<name>) a Hydra key may receive as a local path.
ARTIFACT_TYPES = (
    "Artifact",
    "Dataset",
    "Model",
    "Metrics",
    "ClassificationMetrics",
    "SlicedClassificationMetrics",
    "HTML",
    "Markdown",
)
_NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class Param:
    """A KFP parameter input that sets the Hydra config key `key` (typed: str, int, float or bool)."""

    key: str
    type: type = str
    default: Any = _NO_DEFAULT

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True)
class Artifact:
    """A KFP artifact whose local path (`/gcs/...` on Vertex) sets the Hydra config key `key`."""

    key: str
    type: str = "Artifact"


Spec = Union[Param, Artifact]
