"""User-facing errors. Each is a `CompactHydraException`: Hydra prints its one-line message, not our stack.

Standard library and hydra only: the container entry imports this module too.
"""
from hydra.errors import CompactHydraException


class ConfigError(CompactHydraException):
    """A setting we or Vertex would refuse; the message starts with the config key to fix.

    Raised before anything is staged or submitted."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class VertexAPIError(CompactHydraException):
    """A Vertex API call failed for good; the message carries the server's."""


class MissingDependencyError(CompactHydraException):
    """An optional dependency a feature needs is not installed; the message says what to install."""


class StudyFailedError(CompactHydraException):
    """A tuning job (study) ended without succeeding; the message says why and where its partial results are."""


class CredentialsError(CompactHydraException):
    """No Application Default Credentials: one line that names the command to run, not Google's traceback."""

    COMMAND = "gcloud auth application-default login"

    def __init__(self, what: str, cause: BaseException) -> None:
        detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        super().__init__(f"no Google Cloud credentials for {what} ({detail}): run `{self.COMMAND}`")
