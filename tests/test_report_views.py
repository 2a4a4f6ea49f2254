"""report.html explains a sweep (issue #22): the header row, failed trials and the best one in every plot, the
table's order, the new views (importances, contour, timeline), per-trial links on Vertex, and the rebuild."""
import re
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from test_report import CAT_SPEC, FAILURE, INT_SPEC, LOG_SPEC, needs_plotly, read, study_inputs, trace

from hydra_plugins.hydra_vertex_ai import _report, _report_views
from hydra_plugins.hydra_vertex_ai._backends.base import JobOutcome, TuningOutcome
from hydra_plugins.hydra_vertex_ai._report import ReportRow
from hydra_plugins.hydra_vertex_ai._report_views import BEST_TRACE, FAILED_TRACE

SPECS = [LOG_SPEC, CAT_SPEC, INT_SPEC]


def headers(text: str) -> List[str]:
    [head] = re.findall(r"<thead>(.*?)</thead>", text, flags=re.S)
    return [re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, flags=re.S)]


def five_trials() -> Dict[str, Any]:
    """study_inputs() and a fifth trial, so that importances and the contour have enough to weigh."""
    results, rest = study_inputs()
    results["trials"].append({"id": "5", "state": "SUCCEEDED", "params": ["lr=0.001", "opt=sgd", "layers=4"],
                              "value": 2.5, "infeasible_reason": None})
    rest.append({"id": "5", "parameters": [{"parameterId": "lr", "value": 0.001}, {"parameterId": "opt", "value": "sgd"},
                                           {"parameterId": "layers", "value": 4.0}], "measurements": [],
                 "startTime": "2024-05-01T10:02:00Z", "endTime": "2024-05-01T10:04:00Z"})
    return {"results": results, "rest": rest}


@needs_plotly
def test_the_header_row_names_the_columns_whatever_the_failures_say(tmp_path: Path) -> None:
    results, rest = study_inputs()  # trial 2's reason spans lines
    _, text = read(_report.write_study_report(tmp_path, results, rest, SPECS))
    assert headers(text) == ["trial", "parameters", "loss", "state", "duration", "reason", "log"]
    rows = [ReportRow("0", ["x=1"], "FAILED", reason=FAILURE), ReportRow("1", ["x=2"], "SUCCEEDED", value=1.0)]
    _, text = read(_report.write_jobs_report(tmp_path, rows))
    assert headers(text) == ["job", "overrides", "return value", "state", "duration", "reason", "log"]


@needs_plotly
def test_every_plot_holds_the_failed_trial_and_stars_the_best(tmp_path: Path) -> None:
    data = five_trials()
    page, text = read(_report.write_study_report(tmp_path, data["results"], data["rest"], SPECS))
    best = {"lr": 0.01, "opt": "adam", "layers": 2.0}
    failed = {"lr": 0.9, "opt": "sgd", "layers": 4.0}  # trial 2: infeasible, no value
    worst_beyond = 4.0 + 0.15 * (4.0 - 0.25)  # failed trials sit a step beyond the worst value
    for name, x in [("param:lr", "lr"), ("param:opt", "opt"), ("param:layers", "layers")]:
        figure = page.figures[name]
        marked = trace(figure, FAILED_TRACE)
        assert marked["x"] == [str(failed[x]) if x == "opt" else failed[x]] and marked["y"] == [worst_beyond]
        assert "trial 2 INFEASIBLE: replica workerpool0[0] exited with code 1" in marked["text"][0]
        assert "ValueError: lr <too> big" in marked["text"][0]  # the reason's last line too, on hover
        star = trace(figure, BEST_TRACE)
        assert star["x"] == [str(best[x]) if x == "opt" else best[x]] and star["y"] == [0.25]
    history = page.figures["history"]
    assert trace(history, FAILED_TRACE)["x"] == [2] and trace(history, BEST_TRACE)["x"] == [4]
    contour = page.figures["contour"]
    assert len(trace(contour, FAILED_TRACE)["x"]) == 1 and trace(contour, BEST_TRACE)["y"] != []
    parallel = trace(page.figures["parallel"])
    dims = {d["label"]: d for d in parallel["dimensions"]}
    state = dims["state"]
    assert [state["ticktext"][v] for v in state["values"]] == ["SUCCEEDED", "INFEASIBLE", "SUCCEEDED", "SUCCEEDED",
                                                                "SUCCEEDED"]
    # the best trial has the strongest colour: the lowest loss on a reversed scale (minimize)
    assert min(parallel["line"]["color"]) == 0.25 and parallel["line"]["reversescale"] is True
    timeline = page.figures["timeline"]
    assert trace(timeline, "infeasible")["y"] == ["trial 2"] and trace(timeline, BEST_TRACE)["y"] == ["trial 4"]
    # the best trial heads the table, marked
    first = re.search(r'<tbody><tr class="([^"]*)" data-number="(\d+)"', text)
    assert first is not None and first.group(2) == "4" and "best" in first.group(1)
    assert page.rows["4"][3] == "SUCCEEDED (best)"


@needs_plotly
def test_numbers_sort_as_numbers_and_integer_parameters_get_integer_ticks(tmp_path: Path) -> None:
    rows = [ReportRow(str(i), [f"n={n}"], "SUCCEEDED", value=float(v), duration_s=d)
            for i, (n, v, d) in enumerate([(1, 10, 9.5), (2, 9, 100.0), (8, 2, 5.0)])]
    page, text = read(_report.write_jobs_report(tmp_path, rows))
    assert 'data-sort="10.0"' in page.row_html["0"] and 'data-sort="100.0"' in page.row_html["1"]
    assert "addEventListener(\"click\"" in text  # the headers sort the table
    axis = page.figures["param:n"]["layout"]["xaxis"]
    assert axis["tickvals"] == [1, 2, 8] and axis["tickformat"] == "d"


@needs_plotly
def test_importances_say_how_they_were_weighed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = five_trials()
    page, text = read(_report.write_study_report(tmp_path, data["results"], data["rest"], SPECS))
    bars = page.figures["importances"]
    assert "fANOVA (optuna)" in bars["layout"]["title"]["text"] and "fANOVA (optuna)" in text
    assert sorted(trace(bars)["y"]) == ["layers", "lr", "opt"] and sum(trace(bars)["x"]) == pytest.approx(1.0)
    # the contour is over the two most important parameters
    top_two = trace(bars)["y"][::-1][:2]
    assert page.figures["contour"]["layout"]["title"]["text"] == f"loss over {top_two[0]} and {top_two[1]}"

    monkeypatch.setitem(sys.modules, "optuna", None)  # optuna absent: the simpler measure, and the page says so
    page, text = read(_report.write_study_report(tmp_path, data["results"], data["rest"], SPECS))
    assert _report_views.SIMPLE in page.figures["importances"]["layout"]["title"]["text"]
    assert "fANOVA (optuna)" not in text.replace("install optuna for fANOVA", "")


def test_the_simpler_measure_finds_the_parameter_that_matters() -> None:
    rows = [ReportRow(str(i), [f"a={i}", f"b={(i * 7) % 5}", f"c={'xy'[i % 2]}"], "SUCCEEDED", value=float(i * i))
            for i in range(10)]
    weights = _report_views._rank_correlation(rows, ["a", "b", "c"])
    assert weights["a"] == pytest.approx(1.0) and weights["a"] > weights["b"] and weights["a"] > weights["c"]


def timed_jobs() -> List[ReportRow]:
    """Three jobs: 0 fails at once, 1 and 2 succeed after waiting in the queue."""
    return [ReportRow("0", ["x=0"], "FAILED", reason="boom", created_at=100.0, started_at=100.0, ended_at=110.0),
            ReportRow("1", ["x=1"], "SUCCEEDED", value=1.0, created_at=100.0, started_at=101.0, ended_at=160.0),
            ReportRow("2", ["x=2"], "SUCCEEDED", value=2.0, created_at=100.0, started_at=110.0, ended_at=130.0)]


@needs_plotly
def test_the_jobs_timeline_shows_queued_running_and_ended_by_state(tmp_path: Path) -> None:
    page, _ = read(_report.write_jobs_report(tmp_path, timed_jobs()))
    timeline = page.figures["timeline"]
    queued = trace(timeline, "queued")
    assert queued["y"] == ["job 1", "job 2"] and queued["x"] == [1000.0, 10000.0]  # ms from creation to start
    succeeded, failed = trace(timeline, "succeeded"), trace(timeline, "failed")
    assert succeeded["y"] == ["job 1", "job 2"] and succeeded["x"] == [59000.0, 20000.0]
    assert failed["y"] == ["job 0"] and "job 0 FAILED: boom" in failed["text"][0]
    # the failed job is marked on the parameter plot too
    assert trace(page.figures["param:x"], FAILED_TRACE)["x"] == [0.0]


@needs_plotly
def test_every_figure_is_one_plotly_accepts(tmp_path: Path) -> None:
    """The figures are written as plain JSON (`_figures`), not through plotly.py: plotly.py's own validation
    accepts every one of them, of a study (every kind of figure) and of a launcher's jobs, as plotly.js gets them."""
    import plotly.graph_objects as go

    data = five_trials()
    (tmp_path / "s").mkdir()
    (tmp_path / "j").mkdir()
    study, _ = read(_report.write_study_report(tmp_path / "s", data["results"], data["rest"], SPECS,
                                               early_stopping=True))
    assert {n.split(":")[0] for n in study.figures} == {
        "history", "importances", "param", "contour", "parallel", "intermediate", "timeline"}
    jobs, _ = read(_report.write_jobs_report(tmp_path / "j", timed_jobs()))
    assert "timeline" in jobs.figures and any(n.startswith("param:") for n in jobs.figures)
    for name, figure in [*study.figures.items(), *jobs.figures.items()]:
        accepted = go.Figure(figure)  # raises on a property plotly.js does not have, or a bad value
        assert len(accepted.data) == len(figure["data"]), name


def test_the_launchers_rows_take_the_jobs_times() -> None:
    from hydra.core.utils import JobReturn, JobStatus

    class Job:
        num, overrides, result_uri = 3, ["x=1"], "/nonexistent"

    ret = JobReturn()
    ret.status, ret._return_value = JobStatus.COMPLETED, 2.0
    outcome = JobOutcome("JOB_STATE_SUCCEEDED", None, "https://console.cloud.google.com/x", 10.0, 25.0, 100.0)
    row = _report.job_row(Job(), outcome, ret, Path("/tmp"))
    assert (row.duration_s, row.created_at, row.started_at, row.ended_at) == (75.0, 10.0, 25.0, 100.0)


@needs_plotly
def test_on_vertex_each_trial_links_to_its_own_job(tmp_path: Path) -> None:
    results, rest = study_inputs()
    tuning = "projects/p/locations/us-central1/hyperparameterTuningJobs/77"
    for trial in rest:
        trial["customJob"] = f"projects/p/locations/us-central1/customJobs/10{trial['id']}"
    rest[1].pop("customJob")  # a trial Vertex names no job for links to the tuning job
    outcome = TuningOutcome("JOB_STATE_SUCCEEDED", rest, name=tuning)
    page, _ = read(_report.report_sweep(tmp_path, results, outcome, {"parameters": SPECS}, None))
    links = {n: re.search(r'href="([^"]+)"', page.row_html[n]).group(1) for n in page.rows}  # type: ignore[union-attr]
    assert links["1"].startswith("https://console.cloud.google.com/") and "/training/101?project=p" in links["1"]
    assert "/training/104?" in links["4"] and "/training/77?" in links["2"]


@needs_plotly
def test_a_rebuilt_report_is_the_same_page(tmp_path: Path) -> None:
    data = five_trials()
    first = _report.write_study_report(tmp_path, data["results"], data["rest"], SPECS, early_stopping=True,
                                       link_for=lambda t: f"logs/{t}.log")
    assert first is not None
    text = first.read_text()
    first.unlink()
    assert _report.rebuild(tmp_path) == first and first.read_text() == text
    rows = [ReportRow("0", ["x=0"], "FAILED", reason=FAILURE, created_at=1.0, started_at=2.0, ended_at=3.0),
            ReportRow("1", ["x=1"], "SUCCEEDED", value={"a": 1.0, "b": 2.0}, intermediate=[(1.0, 2.0)])]
    jobs = _report.write_jobs_report(tmp_path, rows, title="t")
    assert jobs is not None
    text = jobs.read_text()
    assert _report.rebuild(tmp_path) == jobs and jobs.read_text() == text


@needs_plotly
def test_the_report_says_what_stayed_in_the_bucket_and_links_there(tmp_path: Path) -> None:
    from hydra_plugins.hydra_vertex_ai._backends.vertex_outputs import LeftInBucket, _record

    prefix = "gs://bucket/staging/sweeps/multirun/x/"
    _record(str(tmp_path), LeftInBucket(3, 50 * 1024 * 1024, [prefix]))
    page, text = read(_report.write_jobs_report(tmp_path, [ReportRow("0", ["x=1"], "SUCCEEDED", value=1.0)]))
    link = "https://console.cloud.google.com/storage/browser/bucket/staging/sweeps/multirun/x"
    assert f'<a href="{link}">3 file(s), 50.0 MB: {prefix}</a>' in text
    assert ("a", "href", link) in page.references
