"""The report's views that explain a sweep, beside `_report`'s page and table.

- How every plot of trials shows the trials without a value (failed, infeasible, cancelled: marked, reason on
  hover, on a row of their own beyond the worst value) and the best trial (a star).
- Parameter importances: fANOVA through optuna when it is installed, else a simpler measure (the absolute rank
  correlation of a number with the objective, the correlation ratio of a category); the figure says which.
- A contour of the objective over the two most important parameters.
- A timeline of every job or trial: queued, running, ended, coloured by state: parallelism, quota waits and
  stragglers at a glance.

Rows are `_report.ReportRow`s (duck-typed here: number, state, value, reason, params, stopped_early, created_at,
started_at, ended_at). Figures are `_figures.Figure`s, as in `_report`.
"""
import logging
import math
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ._figures import Figure, trace

log = logging.getLogger(__name__)

FAILED_TRACE = "no value (failed, infeasible or cancelled)"
BEST_TRACE = "best trial"
FANOVA = "fANOVA (optuna)"
SIMPLE = "rank correlation with the objective (install optuna for fANOVA)"
_STATE_COLOURS = {"SUCCEEDED": "#2e7d32", "FAILED": "#c62828", "INFEASIBLE": "#c62828", "CANCELLED": "#757575",
                  "EXPIRED": "#757575", "PARTIALLY_SUCCEEDED": "#ef6c00", "STOPPING": "#ef6c00"}


def scored(row: Any) -> bool:
    return row.state == "SUCCEEDED" and isinstance(row.value, float) and math.isfinite(row.value)


def best_row(rows: Sequence[Any], goal: str) -> Optional[Any]:
    """The trial with the best objective (the lowest trial number on a tie), or None."""
    candidates = [r for r in rows if scored(r)]
    if not candidates:
        return None
    sign = -1.0 if goal == "maximize" else 1.0
    return min(candidates, key=lambda r: sign * float(r.value))


def fail_level(values: Sequence[float], goal: str) -> float:
    """Where trials without a value sit on an objective axis: a step beyond the worst value."""
    if not values:
        return 0.0
    lo, hi = min(values), max(values)
    step = (hi - lo) * 0.15 or abs(hi) * 0.15 or 1.0
    return lo - step if goal == "maximize" else hi + step


def hover(row: Any, noun: str = "trial") -> str:
    """`trial 2 INFEASIBLE: <first line of the reason>`; what a marker says when pointed at."""
    lines = [line.strip() for line in (row.reason or "").splitlines() if line.strip()]
    why = f": {lines[0][:200]}" + (f" … {lines[-1][:200]}" if len(lines) > 1 else "") if lines else ""
    early = " (stopped early)" if row.stopped_early else ""
    return f"{noun} {row.number} {row.state}{early}{why}"


def add_marks(fig: Figure, rows: Sequence[Any], best: Optional[Any], x_of: Callable[[Any], Any], y_fail: float,
              y_best: Optional[float], noun: str = "trial") -> None:
    """Trials without a value at `y_fail` (red crosses, reason on hover) and a star on the best trial."""
    failed = [r for r in rows if not scored(r) and x_of(r) is not None]
    if failed:
        fig.add_trace(trace(
            "scatter", x=[x_of(r) for r in failed], y=[y_fail] * len(failed), mode="markers", name=FAILED_TRACE,
            marker={"symbol": "x", "color": "#c62828", "size": 11}, text=[hover(r, noun) for r in failed],
            hoverinfo="text"))
    if best is not None and y_best is not None and x_of(best) is not None:
        fig.add_trace(trace(
            "scatter", x=[x_of(best)], y=[y_best], mode="markers", name=BEST_TRACE, text=[hover(best, noun)],
            marker={"symbol": "star", "color": "#ffb300", "size": 18, "line": {"color": "#333", "width": 1}}))


# --- parameter importances -------------------------------------------------------------------------------


def importances(rows: Sequence[Any], names: Sequence[str], specs: Mapping[str, Mapping[str, Any]],
                goal: str) -> Tuple[Dict[str, float], str]:
    """Parameter -> importance (summing to 1, most important first) over the scored trials, and the method used.

    Only parameters that every scored trial has and that vary are weighed; with fewer than 3 trials or 2 such
    parameters there is nothing to weigh."""
    done = [r for r in rows if scored(r)]
    used = [n for n in names if all(n in r.params for r in done) and len({repr(r.params[n]) for r in done}) > 1]
    if len(done) < 3 or len(used) < 2:
        return {}, ""
    try:
        weights, method = _fanova(done, used, specs, goal), FANOVA
    except ImportError:
        weights, method = _rank_correlation(done, used), SIMPLE
    except Exception as e:  # e.g. a search space fANOVA cannot weigh: the simpler measure still says something
        log.debug("fANOVA failed (%r); using the rank correlation", e)
        weights, method = _rank_correlation(done, used), SIMPLE
    total = sum(weights.values())
    if not total or not all(math.isfinite(w) for w in weights.values()):
        return {}, ""
    ordered = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    return {k: v / total for k, v in ordered}, method


def _fanova(rows: Sequence[Any], names: Sequence[str], specs: Mapping[str, Mapping[str, Any]],
            goal: str) -> Dict[str, float]:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {n: _distribution(n, rows, specs.get(n)) for n in names}
    study = optuna.create_study(direction="maximize" if goal == "maximize" else "minimize")
    study.add_trials([
        optuna.trial.create_trial(params={n: _optuna_value(r.params[n], distributions[n]) for n in names},
                                  distributions=distributions, value=float(r.value))
        for r in rows
    ])
    found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0), params=list(names))
    return {str(k): float(v) for k, v in found.items()}


def _distribution(name: str, rows: Sequence[Any], spec: Optional[Mapping[str, Any]]) -> Any:
    """An optuna distribution holding every value the trials took (from the Vertex spec where there is one)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    values = [r.params[name] for r in rows]
    if "categoricalValueSpec" in (spec or {}) or not all(isinstance(v, (int, float)) for v in values):
        choices = [str(v) for v in (spec or {}).get("categoricalValueSpec", {}).get("values", [])]
        return CategoricalDistribution(choices + sorted({str(v) for v in values} - set(choices)))
    log_scale = (spec or {}).get("scaleType") == "UNIT_LOG_SCALE" and min(values) > 0
    return FloatDistribution(float(min(values)), float(max(values)), log=log_scale)


def _optuna_value(value: Any, distribution: Any) -> Any:
    return str(value) if hasattr(distribution, "choices") else float(value)


def _rank_correlation(rows: Sequence[Any], names: Sequence[str]) -> Dict[str, float]:
    """|Spearman rho| of a numeric parameter with the objective; the correlation ratio of a categorical one."""
    objective = [float(r.value) for r in rows]
    weights: Dict[str, float] = {}
    for name in names:
        values = [r.params[name] for r in rows]
        if all(isinstance(v, (int, float)) for v in values):
            weights[name] = abs(_pearson(_ranks([float(v) for v in values]), _ranks(objective)))
        else:
            weights[name] = _correlation_ratio([str(v) for v in values], objective)
    return weights


def _ranks(values: Sequence[float]) -> List[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(a: Sequence[float], b: Sequence[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    sa, sb = math.sqrt(sum((x - ma) ** 2 for x in a)), math.sqrt(sum((y - mb) ** 2 for y in b))
    return cov / (sa * sb) if sa and sb else 0.0


def _correlation_ratio(groups: Sequence[str], values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    total = sum((v - mean) ** 2 for v in values)
    by: Dict[str, List[float]] = {}
    for g, v in zip(groups, values):
        by.setdefault(g, []).append(v)
    between = sum(len(vs) * (sum(vs) / len(vs) - mean) ** 2 for vs in by.values())
    return math.sqrt(between / total) if total else 0.0


def importance_figure(weights: Mapping[str, float], method: str, layout: Callable[..., Dict[str, Any]]) -> Any:
    names = list(weights)[::-1]  # the most important on top
    fig = Figure(trace("bar", x=[weights[n] for n in names], y=names, orientation="h", name="importance",
                       text=[f"{weights[n]:.2f}" for n in names], textposition="auto"))
    fig.update_layout(**layout(f"Parameter importances: {method}", xaxis={"title": {"text": "importance"}},
                               yaxis={"automargin": True}, height=max(300, 60 + 40 * len(names))))
    return fig


# --- contour ------------------------------------------------------------------------------------------------


def contour_figure(x_name: str, y_name: str, rows: Sequence[Any], best: Optional[Any], metric: str,
                   goal: str, layout: Callable[..., Dict[str, Any]], axis: Callable[[str], Dict[str, Any]]) -> Any:
    """The objective over the two parameters (interpolated between the scored trials), every trial on top."""
    done = [r for r in rows if scored(r) and x_name in r.params and y_name in r.params]
    fig = Figure(trace(
        "contour", x=[r.params[x_name] for r in done], y=[r.params[y_name] for r in done], z=[float(r.value) for r in done],
        colorscale="Viridis", reversescale=goal == "minimize", connectgaps=True, name=metric,
        colorbar={"title": {"text": metric}}, contours={"coloring": "heatmap"}, hoverinfo="skip"))
    fig.add_trace(trace("scatter", x=[r.params[x_name] for r in done], y=[r.params[y_name] for r in done],
                        mode="markers", name="trials", marker={"color": "#222", "size": 6},
                        text=[f"trial {r.number}: {float(r.value):.6g}" for r in done]))
    others = [r for r in rows if not scored(r) and x_name in r.params and y_name in r.params]
    if others:
        fig.add_trace(trace(
            "scatter", x=[r.params[x_name] for r in others], y=[r.params[y_name] for r in others], mode="markers",
            name=FAILED_TRACE, marker={"symbol": "x", "color": "#c62828", "size": 11},
            text=[hover(r) for r in others], hoverinfo="text"))
    if best is not None and x_name in best.params and y_name in best.params:
        fig.add_trace(trace(
            "scatter", x=[best.params[x_name]], y=[best.params[y_name]], mode="markers", name=BEST_TRACE, text=[hover(best)],
            marker={"symbol": "star", "color": "#ffb300", "size": 18, "line": {"color": "#333", "width": 1}}))
    fig.update_layout(**layout(f"{metric} over {x_name} and {y_name}", xaxis=axis(x_name), yaxis=axis(y_name),
                               legend={"orientation": "h", "y": -0.25}))
    return fig


# --- timeline -----------------------------------------------------------------------------------------------


def timeline_figure(rows: Sequence[Any], best: Optional[Any], noun: str,
                    layout: Callable[..., Dict[str, Any]]) -> Optional[Any]:
    """One bar per job or trial from start to end (a grey one before it, while queued), coloured by state."""
    timed = [r for r in rows if r.ended_at is not None and (r.started_at is not None or r.created_at is not None)]
    if not timed:
        return None
    fig = Figure()
    label = {r.number: f"{noun} {r.number}" for r in timed}
    queued = [r for r in timed if r.created_at is not None and r.started_at is not None and r.started_at > r.created_at]
    if queued:
        fig.add_trace(_bars(queued, lambda r: r.created_at, lambda r: r.started_at, label, "queued", "#cfd8dc"))
    for state in sorted({r.state for r in timed}):
        mine = [r for r in timed if r.state == state]
        fig.add_trace(_bars(mine, _start, lambda r: r.ended_at, label, state.lower(),
                            _STATE_COLOURS.get(state, "#1565c0"), [hover(r, noun) for r in mine]))
    if best is not None and best in timed:
        bar = _bars([best], _start, lambda r: r.ended_at, label, BEST_TRACE, "rgba(0,0,0,0)", [hover(best, noun)])
        bar["marker"]["line"] = {"color": "#ffb300", "width": 4}
        fig.add_trace(bar)
    order = [label[r.number] for r in timed][::-1]  # the first job on top
    fig.update_layout(**layout(f"Timeline of every {noun}", barmode="overlay", xaxis={"type": "date"},
                               yaxis={"categoryorder": "array", "categoryarray": order, "automargin": True},
                               height=max(300, 80 + 22 * len(timed)), legend={"orientation": "h", "y": -0.2}))
    return fig


def _start(row: Any) -> float:
    return float(row.started_at if row.started_at is not None else row.created_at)


def _bars(rows: Sequence[Any], start: Callable[[Any], float], end: Callable[[Any], float], label: Mapping[str, str],
          name: str, colour: str, text: Optional[List[str]] = None) -> Any:
    return trace(
        "bar", base=[_iso(start(r)) for r in rows], x=[max(0.0, end(r) - start(r)) * 1000.0 for r in rows],
        y=[label[r.number] for r in rows], orientation="h", name=name, marker={"color": colour},
        text=text, hoverinfo="text+name" if text else "name", textposition="none")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
