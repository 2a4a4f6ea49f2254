"""The report's figures as plotly.js reads them (`{"data": [...], "layout": {...}}`), built as plain dicts.

plotly.py's graph objects validate and copy every property through a tree of validators: building a study's
figures with them took 0.2 s at the end of every sweep, on top of importing plotly (0.06 s). The page needs
only the JSON, plotly.js and the look (a template): the latter two are files of the plotly package, read here
without importing it. Property names are checked where it costs nothing: the test suite hands every figure of
its reports to plotly.py's validation.
"""
import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

_BUNDLE = ("package_data", "plotly.min.js")
_TEMPLATE = ("package_data", "templates", "plotly_white.json")


def trace(kind: str, **props: Any) -> Dict[str, Any]:
    """One trace of type `kind`; a property given as None is left unset, as plotly.py leaves it."""
    return {"type": kind, **{k: v for k, v in props.items() if v is not None}}


class Figure:
    """What `_report` builds a figure with: traces in order and a layout, written as plotly.js's JSON."""

    def __init__(self, *traces: Dict[str, Any]) -> None:
        self.data: List[Dict[str, Any]] = list(traces)
        self.layout: Dict[str, Any] = {}

    def add_trace(self, new: Dict[str, Any]) -> None:
        self.data.append(new)

    def update_layout(self, **props: Any) -> None:
        _merge(self.layout, props)

    def to_json(self) -> str:
        """As plotly.py writes it: NaN and infinities (JSON has none) become null, and `<`, `>` and `/` are
        escaped, so that no user text (an override, an error) can end the page's <script> element or open a tag."""
        text = json.dumps(_strict({"data": self.data, "layout": self.layout}), separators=(",", ":"))
        return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\u002f")


def _merge(into: Dict[str, Any], props: Dict[str, Any]) -> None:
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _package_dir() -> Optional[Path]:
    """Where the plotly package is installed (found, not imported); None without it."""
    try:
        spec = importlib.util.find_spec("plotly")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def _file(*parts: str) -> Optional[Path]:
    root = _package_dir()
    path = root.joinpath(*parts) if root is not None else None
    return path if path is not None and path.is_file() else None


def available() -> bool:
    """Whether the plotly package (the `report` extra) is installed with its plotly.js and templates."""
    return _file(*_BUNDLE) is not None and _file(*_TEMPLATE) is not None


def plotly_js() -> str:
    """The plotly.js bundle that plotly.py ships (what `plotly.offline.get_plotlyjs()` returns)."""
    path = _file(*_BUNDLE)
    assert path is not None, "plotly is not installed"
    return path.read_text(encoding="utf-8")


def template_json() -> str:
    """The plotly_white template, as JSON (what plotly.py loads into `plotly.io.templates`)."""
    path = _file(*_TEMPLATE)
    assert path is not None, "plotly is not installed"
    return json.dumps(json.loads(path.read_text(encoding="utf-8")))
