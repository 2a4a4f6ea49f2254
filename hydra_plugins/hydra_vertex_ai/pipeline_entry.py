"""The container side of a pipeline step: `python -m hydra_plugins.hydra_vertex_ai.pipeline_entry APP [ARG ...]`.

KFP substitutes its placeholders as raw text (`data.name=a, b` for a string input `a, b`), which Hydra's
override grammar would read as a sweep. This entry takes every override with its declared kind, turns the
raw value into a Hydra literal of that kind, and replaces itself with the app (`exec`, list args, no shell).

    --fixed OVERRIDE   passed verbatim (written by the pipeline author in Hydra's grammar)
    --str KEY=VALUE    VALUE as a string, whatever it holds (commas, spaces, quotes, `null`, `${...}`)
    --int / --float / --bool KEY=VALUE   VALUE checked and passed as a typed Hydra literal
    --input KEY=PATH   an input artifact's local path, as a string
    --output KEY=PATH  an output artifact's local path, as a string; its parent folder is created

A CustomJob step (`job=`) cannot carry values in its args (gcpc splices them into a JSON payload as raw
text), so there each input is named instead and read from KFP's executor input:

    --executor-input JSON   the step's executor input (KFP's `{{$}}`)
    --str-of / --int-of / --float-of / --bool-of KEY=NAME   the value of input parameter NAME, as above
    --input-of / --output-of KEY=NAME   the local path (/gcs/...) of input / output artifact NAME

APP ending in `.py` runs as `python APP`, anything else as `python -m APP`.
Exit code 2: bad usage or a value that is not of its declared type; otherwise the app's own exit code.

Hydra's plugin scan imports this module: it imports only the standard library at top level.
"""
import json
import logging
import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

EXIT_USAGE = 2
EXECUTOR_INPUT_FLAG = "--executor-input"
BY_NAME_SUFFIX = "-of"
_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _as_int(text: str) -> str:
    try:
        return str(int(text))
    except ValueError:
        number = float(text)  # KFP backends may render an integer parameter as `3.0`
        if not number.is_integer():
            raise ValueError(f"{text!r} is not an integer") from None
        return str(int(number))


def _as_float(text: str) -> str:
    number = float(text)
    if math.isnan(number):
        return "nan"
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return repr(number)  # shortest round-trip form, which Hydra's grammar parses back to the same float


def _as_bool(text: str) -> str:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    raise ValueError(f"{text!r} is not a boolean")


def _as_string(text: str) -> str:
    from ._overrides import quote_value

    return quote_value(text)


def _as_output_path(text: str) -> str:
    # The app writes the artifact at exactly this path; its folder may not exist yet.
    parent = os.path.dirname(text)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return _as_string(text)


_KINDS: Dict[str, Callable[[str], str]] = {
    "--str": _as_string,
    "--int": _as_int,
    "--float": _as_float,
    "--bool": _as_bool,
    "--input": _as_string,
    "--output": _as_output_path,
}


def _local_path(uri: str) -> str:
    """Where the container sees an artifact: KFP mounts gs://bucket/path at /gcs/bucket/path."""
    from . import _storage

    if _storage.is_gcs(uri):
        return _storage.fuse_path(uri)
    if uri.startswith("/"):
        return uri
    raise ValueError(f"artifact URI {uri!r} is not gs://: a Vertex container cannot reach it")


def _by_name(executor: Optional[Dict[str, Any]], flag: str, name: str) -> str:
    """The raw text of input or output `name` in the executor input, as KFP would have substituted it."""
    if executor is None:
        raise ValueError(f"{flag} needs {EXECUTOR_INPUT_FLAG} first")
    try:
        if flag in ("--input", "--output"):
            side = executor["inputs" if flag == "--input" else "outputs"]
            return _local_path(side["artifacts"][name]["artifacts"][0]["uri"])
        value = executor["inputs"]["parameterValues"][name]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{flag}{BY_NAME_SUFFIX} {name}: not in the executor input") from None
    return value if isinstance(value, str) else json.dumps(value)


def hydra_overrides(args: Sequence[str]) -> List[str]:
    """The Hydra overrides that `--kind KEY=VALUE` pairs stand for; raises ValueError on bad input."""
    overrides: List[str] = []
    if len(args) % 2:
        raise ValueError(f"expected --kind KEY=VALUE pairs, got an odd number of arguments: {list(args)}")
    executor: Optional[Dict[str, Any]] = None
    for flag, text in zip(args[::2], args[1::2]):
        if flag == "--fixed":
            overrides.append(text)
            continue
        if flag == EXECUTOR_INPUT_FLAG:
            executor = json.loads(text)
            continue
        by_name = flag.endswith(BY_NAME_SUFFIX) and flag[: -len(BY_NAME_SUFFIX)] in _KINDS
        flag = flag[: -len(BY_NAME_SUFFIX)] if by_name else flag
        if flag not in _KINDS:
            raise ValueError(f"unknown kind {flag!r}; expected --fixed or one of {', '.join(_KINDS)}")
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {text!r}: expected KEY=VALUE")
        if by_name:
            value = _by_name(executor, flag, value)
        try:
            overrides.append(f"{key}={_KINDS[flag](value)}")
        except ValueError as e:
            raise ValueError(f"{key} ({flag[2:]}): {e}") from None
    return overrides


def app_command(app: str, overrides: Sequence[str]) -> List[str]:
    """The app's command line, run with this interpreter."""
    if app.endswith(".py"):
        return [sys.executable, app, *overrides]
    return [sys.executable, "-m", app, *overrides]


def parse(argv: Sequence[str]) -> Tuple[str, List[str]]:
    if not argv or argv[0].startswith("-"):
        raise ValueError("usage: python -m hydra_plugins.hydra_vertex_ai.pipeline_entry APP [--kind KEY=VALUE ...]")
    return argv[0], hydra_overrides(argv[1:])


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        app, overrides = parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"hydra-vertex-ai: {e}", file=sys.stderr)
        return EXIT_USAGE
    command = app_command(app, overrides)
    print(f"hydra-vertex-ai: running {command[1:]}", file=sys.stderr, flush=True)
    os.execv(command[0], command)  # the app takes this process over: its exit code and signals are the step's
    return EXIT_USAGE  # not reached


if __name__ == "__main__":
    sys.exit(main())
