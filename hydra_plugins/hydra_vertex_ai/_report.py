"""report.html: what a sweep or a multirun found, as plots and a table, for both plugins.

Written at the end of every sweeper run and every launcher multirun, from the records the plugins already keep:
the sweeper's optimization_results.yaml dict and the tuning job's REST Trials; the launcher's JobReturns and
job outcomes. Nothing here is a second record: the page is rebuilt from those whenever asked.

The page is self-contained: plotly.js is inlined once (a <script> with no src), each figure's data sits in a
`<script type="application/json" class="report-figure">` block that one inline script hands to Plotly.newPlot.
No element loads anything: there is no <script src>, <link href>, <img src> or CSS url() on the page. (The
plotly.js bundle itself contains URL strings, e.g. map tile servers and its own home page, which our figures
never use; those are text inside the library, not references the page loads.)

Plotting needs the `report` extra (plotly: its plotly.js and look; the figures are built as plain JSON by
`_figures`, without importing plotly.py). Without it one log line says how to get it and nothing fails; an
error while writing the report is a warning, never a failed sweep.
"""
import html
import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _report_views as views
from ._backends.vertex_outputs import left_in_bucket
from ._figures import Figure, available, plotly_js, template_json, trace
from ._staging import replica_log
from ._vertex_facts import all_parameter_specs, console_link, short_state, stops_early, storage_browser_link

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
INSTALL_HINT = 'pip install "hydra-vertex-ai[report]"'
# Where the local backend writes a job's (or a trial's) chief log, below its job directory.
# The launcher's rows of earlier launch() calls of the same multirun (Hydra sweepers may launch in batches).
_JOB_ROWS_FILE = ".report_jobs.json"
# What the page shows, as data: `hydra-vertex-ai report` rebuilds the same page from it.
_PAGE_DATA_FILE = ".report.json"

Value = Union[None, float, Dict[str, float]]


@dataclass
class ReportRow:
    """One trial of a study, or one job of a multirun."""

    # the trial id or job number
    number: str
    # its parameters as Hydra overrides (paste-ready)
    overrides: List[str]
    # SUCCEEDED, INFEASIBLE, FAILED, CANCELLED, ...
    state: str
    # the objective (a trial), or the return value when it is a number or a flat mapping of numbers (a job)
    value: Value = None
    duration_s: Optional[float] = None
    # why it failed, was infeasible or stopped early
    reason: Optional[str] = None
    # its log: a path relative to the sweep dir (local) or a console URL (Vertex)
    link: Optional[str] = None
    # (step, value) as reported while it ran
    intermediate: List[Tuple[float, float]] = field(default_factory=list)
    stopped_early: bool = False
    # parameter id -> value, for the plots (defaults to the overrides' values)
    params: Dict[str, Any] = field(default_factory=dict)
    # when it ended (seconds since the epoch), for the completion order; None: ordered by number
    ended_at: Optional[float] = None
    # when it was created (queued) and started running (seconds since the epoch), for the timeline
    created_at: Optional[float] = None
    started_at: Optional[float] = None

    def __post_init__(self) -> None:
        if not self.params:
            self.params = params_of(self.overrides)


@dataclass
class Study:
    """What the trials were optimizing, over which parameters."""

    metric_id: str
    goal: str = "minimize"
    # Vertex REST ParameterSpec dicts (parameterId, doubleValueSpec | integerValueSpec | discreteValueSpec |
    # categoricalValueSpec, scaleType)
    parameters: List[Mapping[str, Any]] = field(default_factory=list)
    title: str = "Sweep report"
    summary: Dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def write_study_report(
    sweep_dir: Union[str, Path],
    results: Mapping[str, Any],
    trials_rest: Optional[Sequence[Mapping[str, Any]]] = None,
    parameter_specs: Optional[Sequence[Mapping[str, Any]]] = None,
    *,
    early_stopping: bool = False,
    link_for: Optional[Callable[[str], Optional[str]]] = None,
) -> Optional[Path]:
    """The sweeper's report, from its optimization_results.yaml dict and (optionally) the REST Trials.

    `link_for(trial_id)` gives each trial's log link; without REST trials, there are no intermediate values or
    durations, and without parameter specs every parameter is plotted on a linear (or category) axis."""
    try:
        if not _have_plotly():
            return None
        rest = {str(t.get("id")): t for t in trials_rest or []}
        specs = list(parameter_specs or [])
        rows = [_trial_row(t, rest.get(str(t["id"]), {}), specs, link_for) for t in results.get("trials") or []]
        if early_stopping:
            _mark_stopped_early(rows)
        study = Study(
            metric_id=str(results.get("metric_id") or "objective"),
            goal=str(results.get("goal") or "minimize"),
            parameters=specs,
            title=f"Sweep report: {results.get('metric_id')} ({results.get('goal')})",
            summary={
                "tuning job": results.get("tuning_job"),
                "state": results.get("state"),
                "best trial": results.get("best_trial"),
                f"best {results.get('metric_id')}": results.get("best_value"),
                "best parameters": " ".join(results.get("best_params") or []),
                "fixed parameters": " ".join(results.get("fixed_params") or []),
            },
        )
        return _write(Path(sweep_dir), "study", study, rows)
    except Exception as e:  # a report must never fail the sweep it describes
        log.warning("report.html not written: %r", e)
        return None


def write_jobs_report(
    sweep_dir: Union[str, Path], rows: Sequence[ReportRow], title: str = "Multirun report"
) -> Optional[Path]:
    """The launcher's report: every job's overrides, state, duration, return value and log."""
    try:
        if not _have_plotly():
            return None
        return _write(Path(sweep_dir), "jobs", Study(metric_id="return value", title=title), list(rows))
    except Exception as e:
        log.warning("report.html not written: %r", e)
        return None


def _write(sweep_dir: Path, kind: str, study: Study, rows: List[ReportRow]) -> Path:
    """Record what the page shows (`hydra-vertex-ai report` renders the same page from it), then write it."""
    left = left_in_bucket(str(sweep_dir))
    if left is not None:
        study.summary["outputs left in the bucket"] = {
            "text": f"{left.count} file(s), {left.size()}: {', '.join(left.prefixes)}",
            "href": storage_browser_link(left.prefixes[0])}
    record = {"version": 1, "kind": kind, "study": asdict(study), "rows": [asdict(r) for r in rows]}
    (sweep_dir / _PAGE_DATA_FILE).write_text(json.dumps(record), encoding="utf-8")
    return _render_to(sweep_dir, kind, study, rows)


def _render_to(sweep_dir: Path, kind: str, study: Study, rows: List[ReportRow]) -> Path:
    path = sweep_dir / REPORT_FILE
    page = render_study(study, rows) if kind == "study" else render_jobs(study.title, rows, study.summary)
    path.write_text(page, encoding="utf-8")
    log.info("Report: %s", path)
    return path


def rebuild(sweep_dir: Union[str, Path]) -> Optional[Path]:
    """report.html again, from what the run recorded in the sweep dir; None when it recorded nothing."""
    sweep_dir = Path(sweep_dir)
    try:
        record = json.loads((sweep_dir / _PAGE_DATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _have_plotly():
        return None
    rows = [_row_of(r) for r in record["rows"]]
    return _render_to(sweep_dir, str(record["kind"]), Study(**record["study"]), rows)


def _row_of(data: Mapping[str, Any]) -> ReportRow:
    """A ReportRow from its JSON record (tuples came back as lists)."""
    return ReportRow(**{**data, "intermediate": [tuple(p) for p in data.get("intermediate", [])]})


def report_sweep(sweep_dir: Union[str, Path], results: Mapping[str, Any], outcome: Any,
                 study_spec: Mapping[str, Any], backend: Any) -> Optional[Path]:
    """The sweeper's one call (after write_results): never raises."""
    try:
        sweep_dir = Path(sweep_dir)
        on_vertex = bool(outcome.name) and str(outcome.name).startswith("projects/")
        trials_dir = Path(str(outcome.name)) if outcome.name and not on_vertex else None

        vertex_link = vertex_trial_links(str(outcome.name), outcome.trials)

        def link_for(trial_id: str) -> Optional[str]:
            if trials_dir is not None:
                return _relative_log(replica_log(trials_dir / trial_id), sweep_dir)
            return vertex_link(trial_id) if on_vertex else None

        early = stops_early(study_spec)
        specs = all_parameter_specs(study_spec.get("parameters"))  # conditional children too: absent when inactive
        return write_study_report(sweep_dir, results, outcome.trials, specs,
                                  early_stopping=early, link_for=link_for)
    except Exception as e:
        log.warning("report.html not written: %r", e)
        return None


def vertex_trial_links(tuning_job: str, trials: Optional[Sequence[Mapping[str, Any]]]) -> Callable[[str], str]:
    """trial id -> the console page (and logs) of the trial's own CustomJob (Trial.custom_job, study.proto),
    or the tuning job's page where Vertex names none."""
    own = {str(t.get("id")): str(t["customJob"]) for t in trials or [] if t.get("customJob")}
    return lambda trial_id: console_link(own.get(trial_id, tuning_job))


def report_launch(sweep_dir: Union[str, Path], sweep_id: Optional[str], jobs: Sequence[Any],
                  outcomes: Sequence[Any], returns: Sequence[Any]) -> Optional[Path]:
    """The launcher's one call (end of launch()): rows from its PreparedJobs, JobOutcomes and JobReturns, merged
    with those of earlier launch() calls of the same multirun; never raises."""
    try:
        sweep_dir = Path(sweep_dir)
        rows = [job_row(job, outcome, ret, sweep_dir) for job, outcome, ret in zip(jobs, outcomes, returns)]
        rows = _merge_earlier_rows(sweep_dir, sweep_id, rows)
        return write_jobs_report(sweep_dir, rows)
    except Exception as e:
        log.warning("report.html not written: %r", e)
        return None


# ---------------------------------------------------------------------------------------------------------------
# Rows from the plugins' records


def params_of(overrides: Iterable[str]) -> Dict[str, Any]:
    """`key=value` overrides as key -> number (when it parses as one) or text; `+`/`~` prefixes dropped."""
    params: Dict[str, Any] = {}
    for override in overrides:
        if "=" not in override:
            continue
        key, text = override.split("=", 1)
        key = key.lstrip("+~")
        try:
            number = float(text)
            params[key] = number if math.isfinite(number) else text
        except ValueError:
            params[key] = text
    return params


def numeric_value(value: Any) -> Value:
    """A number, or a flat mapping of names to numbers, as floats; anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        items = list(value.items()) if isinstance(value, Mapping) or hasattr(value, "items") else None
    except Exception:
        return None
    if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for _, v in items):
        return {str(k): float(v) for k, v in items}
    return None


def _trial_row(summary: Mapping[str, Any], rest: Mapping[str, Any], specs: Sequence[Mapping[str, Any]],
               link_for: Optional[Callable[[str], Optional[str]]]) -> ReportRow:
    trial_id = str(summary.get("id"))
    params = {p["parameterId"]: p.get("value") for p in rest.get("parameters", []) if "parameterId" in p}
    kinds = {s.get("parameterId"): s for s in specs}
    for pid, v in list(params.items()):  # proto3 JSON drops zeros; integers come back as floats
        if v is None and pid in kinds and "categoricalValueSpec" not in kinds[pid]:
            params[pid] = 0.0
    intermediate = []
    for m in rest.get("measurements") or []:
        metrics = m.get("metrics") or []
        step_value = float(metrics[0].get("value", 0.0)) if metrics else math.nan
        if math.isfinite(step_value):
            intermediate.append((float(m.get("stepCount") or 0), step_value))
    value = summary.get("value")
    return ReportRow(
        number=trial_id,
        overrides=list(summary.get("params") or []),
        state=str(summary.get("state")),
        value=float(value) if isinstance(value, (int, float)) else None,
        duration_s=_duration(rest.get("startTime"), rest.get("endTime")),
        ended_at=_epoch(rest.get("endTime")),
        started_at=_epoch(rest.get("startTime")),
        reason=summary.get("infeasible_reason") or None,
        link=link_for(trial_id) if link_for else None,
        intermediate=intermediate,
        params=params or params_of(summary.get("params") or []),
        stopped_early=bool(summary.get("stopped_early")),
    )


def _mark_stopped_early(rows: List[ReportRow]) -> None:
    """With early stopping on, a succeeded trial whose curve ends before the longest one was stopped early
    (neither Vertex's Trial nor the local study says so in another field)."""
    last = max((r.intermediate[-1][0] for r in rows if r.intermediate), default=None)
    for row in rows:
        shorter = last is not None and row.intermediate and row.intermediate[-1][0] < last
        if row.state == "SUCCEEDED" and (row.stopped_early or shorter):  # the sweeper's mark, or the curve
            row.stopped_early = True
            at = f" at step {row.intermediate[-1][0]:g} of {last:g}" if shorter else ""
            note = f"stopped early{at} (early stopping rule)"
            row.reason = f"{row.reason}; {note}" if row.reason else note


def _duration(start: Optional[str], end: Optional[str]) -> Optional[float]:
    a, b = _timestamp(start), _timestamp(end)
    return (b - a).total_seconds() if a and b else None


def _epoch(text: Optional[str]) -> Optional[float]:
    moment = _timestamp(text)
    return moment.timestamp() if moment else None


def _timestamp(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(text)).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _relative_log(path: Path, sweep_dir: Path) -> Optional[str]:
    if not path.exists():
        return None
    return os.path.relpath(path, sweep_dir)


def job_row(job: Any, outcome: Any, ret: Any, sweep_dir: Path) -> ReportRow:
    """A launcher job's row: its PreparedJob (number, overrides, result file), JobOutcome and JobReturn."""
    from hydra.core.utils import JobStatus, filter_overrides

    state = short_state(str(outcome.state))
    completed = ret.status == JobStatus.COMPLETED
    if not completed and state == "SUCCEEDED":
        state = "FAILED"
    reason = None if completed else str(ret._return_value or outcome.error or "")
    link = None
    where = str(outcome.where or "").splitlines()[0] if outcome.where else ""
    if where.startswith(("https://", "http://")):
        link = where
    elif where:
        log_path = Path(where) if where.endswith(".log") else replica_log(where)
        link = _relative_log(log_path, sweep_dir)
    created, started, ended = (getattr(outcome, f"{t}_at", None) for t in ("created", "started", "ended"))
    ran = ended - started if started is not None and ended is not None else None
    return ReportRow(
        number=str(job.num),
        overrides=list(filter_overrides(job.overrides)),
        state=state,
        value=numeric_value(ret._return_value) if completed else None,
        duration_s=ran if ran is not None else _job_duration(ret, str(job.result_uri)),
        reason=reason or None,
        link=link,
        created_at=created,
        started_at=started,
        ended_at=ended,
    )


def _job_duration(ret: Any, result_uri: str) -> Optional[float]:
    """Local jobs only: from the job's Hydra start (its .hydra/hydra.yaml) to its result file (or None)."""
    try:
        out = Path(str(ret.hydra_cfg.hydra.runtime.output_dir))
        start = (out / ".hydra" / "hydra.yaml").stat().st_mtime
        end = Path(result_uri).stat().st_mtime
    except Exception:
        return None
    return max(0.0, end - start)


def _merge_earlier_rows(sweep_dir: Path, sweep_id: Optional[str], rows: List[ReportRow]) -> List[ReportRow]:
    store = sweep_dir / _JOB_ROWS_FILE
    earlier: List[ReportRow] = []
    try:
        data = json.loads(store.read_text())
        if data.get("sweep_id") == sweep_id:
            earlier = [_row_of(r) for r in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    mine = {r.number for r in rows}
    merged = [r for r in earlier if r.number not in mine] + rows
    merged.sort(key=lambda r: _number_key(r.number))
    try:
        store.write_text(json.dumps({"sweep_id": sweep_id, "rows": [r.__dict__ for r in merged]}))
    except (OSError, TypeError, ValueError):
        pass
    return merged


def _number_key(number: str) -> Tuple[int, Union[float, str]]:
    try:
        return (0, float(number))
    except ValueError:
        return (1, number)


# ---------------------------------------------------------------------------------------------------------------
# HTML


def _have_plotly() -> bool:
    if not available():
        log.info("No report.html: its plots need plotly; to get the report: %s", INSTALL_HINT)
        return False
    return True


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _spec_kind(spec: Optional[Mapping[str, Any]]) -> str:
    if not spec:
        return ""
    for kind in ("doubleValueSpec", "integerValueSpec", "discreteValueSpec", "categoricalValueSpec"):
        if kind in spec:
            return kind
    return ""


def _is_log(spec: Optional[Mapping[str, Any]]) -> bool:
    return bool(spec) and spec.get("scaleType") == "UNIT_LOG_SCALE"  # type: ignore[union-attr]


def _param_names(rows: Sequence[ReportRow], specs: Sequence[Mapping[str, Any]]) -> List[str]:
    names = [str(s["parameterId"]) for s in specs if "parameterId" in s]
    for row in rows:
        names += [k for k in row.params if k not in names]
    return names


def _is_categorical(name: str, rows: Sequence[ReportRow], spec: Optional[Mapping[str, Any]]) -> bool:
    if spec:
        return _spec_kind(spec) == "categoricalValueSpec"
    return any(not isinstance(r.params.get(name), (int, float)) for r in rows if name in r.params)


def _layout(title: str, **extra: Any) -> Dict[str, Any]:
    """Every figure's layout: titles and legends clear of the plot, axis labels given room (nothing overlaps).
    The look (plotly_white) is on the page once and applied to every figure there (`_page`), not carried by each
    figure."""
    layout: Dict[str, Any] = {"title": {"text": title}, "height": 420,
                              "margin": {"l": 70, "r": 30, "t": 60, "b": 60}, **extra}
    for axis in ("xaxis", "yaxis"):
        layout.setdefault(axis, {}).setdefault("automargin", True)
    return layout


def _axis(name: str, rows: Sequence[ReportRow], spec: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A parameter's axis: categories, a log scale, or integer ticks for integer parameters."""
    axis: Dict[str, Any] = {"title": {"text": name}}
    values: List[Any] = [r.params.get(name) for r in rows if r.params.get(name) is not None]
    if _is_categorical(name, rows, spec):
        axis["type"] = "category"
        listed = (spec or {}).get("categoricalValueSpec", {}).get("values")
        if listed:
            axis.update(categoryorder="array", categoryarray=[str(v) for v in listed])
    elif _is_log(spec):
        axis["type"] = "log"
    elif _is_integer(spec, values):
        distinct = sorted({int(v) for v in values})
        axis["tickformat"] = "d"
        if len(distinct) <= 20:
            axis.update(tickmode="array", tickvals=distinct)
    return axis


def _is_integer(spec: Optional[Mapping[str, Any]], values: Sequence[Any]) -> bool:
    if spec:
        return _spec_kind(spec) == "integerValueSpec"
    return bool(values) and all(isinstance(v, (int, float)) and float(v).is_integer() for v in values)


def _trial_x(row: ReportRow) -> Union[float, str]:
    key = _number_key(row.number)[1]
    return key if isinstance(key, float) and key.is_integer() else row.number


def _history_figure(study: Study, rows: List[ReportRow], best: Optional[ReportRow], y_fail: float) -> Any:
    """The objective of every trial by trial number, the best so far, the failed ones and the best marked."""
    order = sorted([r for r in rows if views.scored(r)], key=lambda r: _number_key(r.number))
    ys = [float(r.value) for r in order]  # type: ignore[arg-type]
    best_so_far: List[float] = []
    pick = max if study.goal == "maximize" else min
    for y in ys:
        best_so_far.append(y if not best_so_far else pick(best_so_far[-1], y))
    fig = Figure()
    fig.add_trace(trace("scatter", x=[_trial_x(r) for r in order], y=ys, mode="markers", name=study.metric_id,
                        marker={"symbol": [_symbol(r) for r in order]},
                        text=[f"trial {r.number}: {' '.join(r.overrides)}" for r in order]))
    fig.add_trace(trace("scatter", x=[_trial_x(r) for r in order], y=best_so_far, mode="lines", name="best so far",
                        line={"shape": "hv"}))
    views.add_marks(fig, rows, best, _trial_x, y_fail, _objective(best))
    fig.update_layout(**_layout("Optimization history", xaxis={"title": {"text": "trial"}, "tickformat": "d"},
                                yaxis={"title": {"text": study.metric_id}}, legend={"orientation": "h", "y": -0.2}))
    return fig


def _symbol(row: ReportRow) -> str:
    return "triangle-down" if row.stopped_early else "circle"


def _objective(row: Optional[ReportRow]) -> Optional[float]:
    return float(row.value) if row is not None and isinstance(row.value, float) else None


def _param_figure(name: str, rows: List[ReportRow], spec: Optional[Mapping[str, Any]], y_title: str,
                  series: Dict[str, List[Tuple[Any, float, str]]], marks: Optional[Callable[[Any], None]] = None) -> Any:
    categorical = _is_categorical(name, rows, spec)
    fig = Figure()
    for label, points in series.items():
        xs = [str(p[0]) if categorical else p[0] for p in points]
        fig.add_trace(trace("scatter", x=xs, y=[p[1] for p in points], mode="markers", name=label,
                            text=[p[2] for p in points]))
    if marks is not None:
        marks(fig)
    fig.update_layout(**_layout(f"{y_title} vs {name}", xaxis=_axis(name, rows, spec),
                                yaxis={"title": {"text": y_title}}, showlegend=len(fig.data) > 1,
                                legend={"orientation": "h", "y": -0.25}))
    return fig


def _param_of(name: str, categorical: bool) -> Callable[[ReportRow], Any]:
    def x_of(row: ReportRow) -> Any:
        value = row.params.get(name)
        return None if value is None else str(value) if categorical else value
    return x_of


def _marks(rows: Sequence[ReportRow], best: Optional[ReportRow], x_of: Callable[[ReportRow], Any], y_fail: float,
           y_best: Optional[float], noun: str) -> Callable[[Any], None]:
    """What `_param_figure` adds to its figure: `views.add_marks` for this parameter."""
    return lambda fig: views.add_marks(fig, rows, best, x_of, y_fail, y_best, noun)


def _parcoords_figure(study: Study, names: List[str], rows: List[ReportRow],
                      specs: Mapping[str, Mapping[str, Any]], y_fail: float) -> Any:
    """Every trial across every parameter; trials without a value at `y_fail` on the objective's axis and
    on a `state` axis of their own; the colour is the objective, the best trial's the strongest."""
    dims: List[Dict[str, Any]] = []
    for name in names:
        spec = specs.get(name)
        values = [r.params.get(name) for r in rows]
        if _is_categorical(name, rows, spec):
            cats = [str(v) for v in (spec or {}).get("categoricalValueSpec", {}).get("values", [])]
            cats += sorted({str(v) for v in values if v is not None} - set(cats))
            index = {c: i for i, c in enumerate(cats)}
            dims.append({"label": name, "values": [index.get(str(v)) for v in values],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
        elif _is_log(spec) and all(isinstance(v, (int, float)) and v > 0 for v in values):
            logs = [math.log10(float(v)) for v in values if v is not None]
            lo, hi = math.floor(min(logs)), math.ceil(max(logs))
            ticks = list(range(lo, hi + 1))
            dims.append({"label": f"{name} (log)", "values": logs, "tickvals": ticks,
                         "ticktext": [f"{10.0 ** t:g}" for t in ticks]})
        else:
            dim = {"label": name, "values": [float(v) if isinstance(v, (int, float)) else None for v in values]}
            if _is_integer(spec, [v for v in values if v is not None]):
                dim["tickformat"] = "d"
            dims.append(dim)
    objective = [float(r.value) if views.scored(r) else y_fail for r in rows]  # type: ignore[arg-type]
    dims.append({"label": study.metric_id, "values": objective})
    states = sorted({r.state for r in rows})
    if len(states) > 1:
        dims.append({"label": "state", "values": [states.index(r.state) for r in rows],
                     "tickvals": list(range(len(states))), "ticktext": states})
    reverse = study.goal == "minimize"  # the best trials in the strongest colour
    fig = Figure(trace("parcoords", dimensions=dims, line={
        "color": objective, "colorscale": "Viridis", "reversescale": reverse, "showscale": True,
        "colorbar": {"title": {"text": study.metric_id}}}))
    fig.update_layout(**_layout("Parallel coordinates", margin={"l": 80, "r": 80, "t": 80, "b": 40}))
    return fig


def _intermediate_figure(study: Study, rows: List[ReportRow], best: Optional[ReportRow]) -> Any:
    fig = Figure()
    for row in rows:
        if not row.intermediate:
            continue
        steps, values = [p[0] for p in row.intermediate], [p[1] for p in row.intermediate]
        name = f"trial {row.number}" + (" (stopped early)" if row.stopped_early else "") + \
            (f" ({row.state.lower()})" if row.state != "SUCCEEDED" else "") + (" (best)" if row is best else "")
        line: Dict[str, Any] = {"dash": "dot"} if row.stopped_early else {"dash": "dash"} if not views.scored(row) else {}
        if row is best:
            line.update(width=4, color="#ffb300")
        fig.add_trace(trace(
            "scatter", x=steps, y=values, mode="lines+markers", name=name, line=line, text=[views.hover(row)] * len(steps),
            marker={"symbol": ["circle"] * (len(steps) - 1) + ["x" if row.stopped_early else "circle"],
                    "size": [6] * (len(steps) - 1) + [12 if row.stopped_early else 6]},
        ))
    fig.update_layout(**_layout("Intermediate values", xaxis={"title": {"text": "step"}},
                                yaxis={"title": {"text": study.metric_id}}))
    return fig


def render_study(study: Study, rows: List[ReportRow]) -> str:
    scored = [r for r in rows if views.scored(r)]
    specs = {str(s.get("parameterId")): s for s in study.parameters}
    names = _param_names(rows, study.parameters)
    best = views.best_row(rows, study.goal)
    y_fail = views.fail_level([float(r.value) for r in scored], study.goal)  # type: ignore[arg-type]
    figures: List[Tuple[str, Any]] = []
    if rows:
        figures.append(("history", _history_figure(study, rows, best, y_fail)))
    weights, method = views.importances(rows, names, specs, study.goal)
    summary = {**study.summary, "parameter importances": method or None}
    if weights:
        figures.append(("importances", views.importance_figure(weights, method, _layout)))
    for name in names:
        points = [(r.params[name], float(r.value), f"trial {r.number}")  # type: ignore[arg-type]
                  for r in scored if r.params.get(name) is not None]
        x_of = _param_of(name, _is_categorical(name, rows, specs.get(name)))
        if points or any(x_of(r) is not None for r in rows):
            figures.append((f"param:{name}", _param_figure(
                name, rows, specs.get(name), study.metric_id, {study.metric_id: points},
                _marks(rows, best, x_of, y_fail, _objective(best), "trial"))))
    if len(weights) >= 2:
        x_name, y_name = list(weights)[:2]
        figures.append(("contour", views.contour_figure(
            x_name, y_name, rows, best, study.metric_id, study.goal, _layout,
            lambda n: _axis(n, rows, specs.get(n)))))
    if names and rows:
        figures.append(("parallel", _parcoords_figure(study, names, rows, specs, y_fail)))
    if any(r.intermediate for r in rows):
        figures.append(("intermediate", _intermediate_figure(study, rows, best)))
    timeline = views.timeline_figure(rows, best, "trial", _layout)
    if timeline is not None:
        figures.append(("timeline", timeline))
    columns = ["trial", "parameters", study.metric_id, "state", "duration", "reason", "log"]
    table = _table(columns, _best_first(rows, best), best)
    return _page(study.title, summary, figures, table, "Trials")


def _best_first(rows: Sequence[ReportRow], best: Optional[ReportRow]) -> List[ReportRow]:
    return ([best] if best is not None else []) + [r for r in rows if r is not best]


def render_jobs(title: str, rows: List[ReportRow], summary: Optional[Mapping[str, Any]] = None) -> str:
    figures: List[Tuple[str, Any]] = []
    numeric = [r for r in rows if r.value is not None]
    # the keys whose value differs between jobs (a key every job sets alike explains nothing)
    keys = [k for k in _param_names(rows, []) if len({repr(r.params.get(k)) for r in rows}) > 1]
    values = [v for r in numeric for v in (r.value.values() if isinstance(r.value, dict) else [r.value])
              if isinstance(v, float) and _finite(v)]
    y_fail = views.fail_level(values, "minimize")
    failed = [r for r in rows if r.state != "SUCCEEDED"]  # a job that succeeded returning no number is not one
    for key in keys:
        series: Dict[str, List[Tuple[Any, float, str]]] = {}
        for row in numeric:
            if key not in row.params:
                continue
            returned = row.value if isinstance(row.value, dict) else {"return value": row.value}
            for label, v in returned.items():
                if v is not None and _finite(v):
                    series.setdefault(label, []).append((row.params[key], float(v), f"job {row.number}"))
        x_of = _param_of(key, _is_categorical(key, rows, None))
        if series:  # failed jobs where their value would be, beyond the highest return value
            figures.append((f"param:{key}", _param_figure(
                key, rows, None, "return value", series,
                _marks(failed, None, x_of, y_fail, None, "job"))))
    timeline = views.timeline_figure(rows, None, "job", _layout)
    if timeline is not None:
        figures.append(("timeline", timeline))
    facts: Dict[str, Any] = {"jobs": len(rows), "succeeded": sum(r.state == "SUCCEEDED" for r in rows),
                             "failed": sum(r.state != "SUCCEEDED" for r in rows), **(summary or {})}
    table = _table(["job", "overrides", "return value", "state", "duration", "reason", "log"], rows, None)
    return _page(title, facts, figures, table, "Jobs")


def _format_value(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v:.6g}" for k, v in value.items())
    return f"{value:.6g}"


def _format_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    minutes, s = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{s:02d}s" if hours else f"{minutes}m{s:02d}s" if minutes else f"{seconds:.1f}s"


def _table(columns: List[str], rows: List[ReportRow], best: Optional[ReportRow]) -> str:
    """The rows in the order given (the best first); a click on a column's header sorts by it."""
    e = html.escape
    header = "".join(f'<th title="sort by {e(c, quote=True)}">{e(c)}</th>' for c in columns)
    body = []
    for r in rows:
        link = ""
        if r.link:
            label = "console" if r.link.startswith(("https://", "http://")) else r.link
            link = f'<a href="{e(r.link, quote=True)}">{e(label)}</a>'
        reason = ""
        lines = [line.strip() for line in (r.reason or "").strip().splitlines() if line.strip()]
        if len(lines) == 1 and len(lines[0]) <= 200:
            reason = e(lines[0])
        elif lines:  # e.g. "replica ... exited with code 1; last lines of ...:" and the traceback's last line
            summary = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
            reason = f"<details><summary>{e(summary[:300])}</summary><pre>{e(r.reason or '')}</pre></details>"
        state = e(r.state) + (" (stopped early)" if r.stopped_early else "") + (" (best)" if r is best else "")
        first = _format_value(r.value)
        value_key = "" if r.value is None else str(r.value) if isinstance(r.value, float) else first
        cells = [(e(r.number), str(_number_key(r.number)[1])),
                 (f"<code>{e(' '.join(r.overrides))}</code>", None), (e(first), value_key), (state, None),
                 (e(_format_duration(r.duration_s)), "" if r.duration_s is None else str(r.duration_s)),
                 (reason, None), (link, None)]
        classes = f"row state-{e(r.state.lower(), quote=True)}" + (" best" if r is best else "")
        body.append(f'<tr class="{classes}" data-number="{e(r.number, quote=True)}">' + "".join(
            f'<td data-sort="{e(key, quote=True)}">{c}</td>' if key is not None else f"<td>{c}</td>"
            for c, key in cells) + "</tr>")
    return f'<table id="rows"><thead><tr>{header}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}tr.state-succeeded td:nth-child(4){color:#1a7f37}
tr.state-infeasible td:nth-child(4),tr.state-failed td:nth-child(4){color:#c62828}
tr.best td{background:#fff8e1;font-weight:600}th{cursor:pointer;user-select:none}
th.sorted-asc::after{content:" \\25B2"}th.sorted-desc::after{content:" \\25BC"}
.figure{min-height:300px;margin:12px 0}pre{white-space:pre-wrap;max-width:800px;margin:4px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{font-weight:600}dd{margin:0}
"""

_RENDER = """
var TEMPLATE = JSON.parse(document.getElementById("report-template").textContent);
document.querySelectorAll("script.report-figure").forEach(function (el) {
  var fig = JSON.parse(el.textContent);
  fig.layout.template = TEMPLATE;
  var div = document.getElementById(el.getAttribute("data-target"));
  Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true, showLink: false});
});
// A click on a header sorts the rows by that column (numbers as numbers, empty cells last); again: reversed.
document.querySelectorAll("#rows th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = document.querySelector("#rows tbody");
    var down = th.classList.contains("sorted-asc");
    document.querySelectorAll("#rows th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(down ? "sorted-desc" : "sorted-asc");
    var key = function (tr) {
      var td = tr.children[col];
      var text = td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent.trim();
      var n = /^[-+]?(\\d+\\.?\\d*|\\.\\d+)(e[-+]?\\d+)?$/i.test(text) ? parseFloat(text) : NaN;
      return text === "" ? null : isNaN(n) ? text : n;
    };
    Array.from(body.children).map(function (tr) { return [key(tr), tr]; }).sort(function (a, b) {
      if (a[0] === null || b[0] === null) { return (a[0] === null) - (b[0] === null); }
      var c = typeof a[0] === typeof b[0] ? (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0) : (typeof a[0] === "number" ? -1 : 1);
      return down ? -c : c;
    }).forEach(function (pair) { body.appendChild(pair[1]); });
  });
});
"""


def _json_for_script(text: str) -> str:
    """JSON that cannot end its <script> element early."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def _fact(value: Any) -> str:
    """A summary value: text, or {"text", "href"} as a link."""
    if isinstance(value, Mapping) and "href" in value:
        return f'<a href="{html.escape(str(value["href"]), quote=True)}">{html.escape(str(value["text"]))}</a>'
    return html.escape(str(value))


def _page(title: str, summary: Mapping[str, Any], figures: List[Tuple[str, Any]], table: str, table_title: str) -> str:
    e = html.escape
    facts = "".join(f"<dt>{e(str(k))}</dt><dd>{_fact(v)}</dd>" for k, v in summary.items() if v not in (None, ""))
    blocks = []
    for i, (name, fig) in enumerate(figures):
        target = f"figure-{i}"
        blocks.append(f'<div class="figure" id="{target}"></div>'
                      f'<script type="application/json" class="report-figure" data-target="{target}" '
                      f'data-figure="{e(name, quote=True)}">{_json_for_script(fig.to_json())}</script>')
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style>",
        # plotly.js, inline: the page opens from disk with no network
        f'<script type="text/javascript">{plotly_js()}</script>',
        "</head><body>",
        f"<h1>{e(title)}</h1><dl>{facts}</dl>",
        *blocks,
        f"<h2>{e(table_title)}</h2>",
        table,
        f'<script type="application/json" id="report-template">{_json_for_script(template_json())}</script>',
        f"<script>{_RENDER}</script>",
        "</body></html>",
    ])
