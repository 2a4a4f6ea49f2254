"""report.html (issue #16): one module writes it for the sweeper and the launcher, from their own records.

The page is parsed as a browser would see it: every trial or job is a table row, every figure's data is a JSON
block handed to plotly, and nothing on the page loads from the network.
"""
import json
import logging
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from hydra_plugins.hydra_vertex_ai import _report
from hydra_plugins.hydra_vertex_ai._report import ReportRow

TESTS = Path(__file__).parent
QUADRATIC = TESTS / "apps" / "quadratic" / "app.py"
LOG_SPEC = {"parameterId": "lr", "doubleValueSpec": {"minValue": 1e-4, "maxValue": 1.0}, "scaleType": "UNIT_LOG_SCALE"}
CAT_SPEC = {"parameterId": "opt", "categoricalValueSpec": {"values": ["adam", "sgd"]}}
INT_SPEC = {"parameterId": "layers", "integerValueSpec": {"minValue": "1", "maxValue": "4"}}
FAILURE = "replica workerpool0[0] exited with code 1; last lines of log:\nTraceback ...\nValueError: lr <too> big"

needs_plotly = pytest.mark.skipif(
    __import__("importlib").util.find_spec("plotly") is None, reason='needs pip install "hydra-vertex-ai[report]"'
)


class Page(HTMLParser):
    """What a test needs from report.html: rows by number, figures by name, every URL-bearing attribute."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: Dict[str, List[str]] = {}
        self.row_html: Dict[str, str] = {}
        self.figures: Dict[str, Dict[str, Any]] = {}
        self.references: List[Tuple[str, str, str]] = []  # (tag, attribute, value) for src/href/data/action
        self.tags: List[str] = []
        self.bundle_scripts = 0
        self.outside_bundle: List[str] = []  # every text but the plotly.js bundle's
        self._script: Optional[Dict[str, str]] = None
        self._row: Optional[str] = None
        self._cell: Optional[List[str]] = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for key in ("src", "href", "data", "action", "srcset", "poster"):
            if key in a:
                self.references.append((tag, key, a[key]))
        self.outside_bundle.append(" ".join(f"{k}={v}" for k, v in a.items()))
        if tag == "script":
            self._script = a
        elif tag == "tr" and "data-number" in a:
            self._row = a["data-number"]
            self.rows[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None
        elif tag == "td" and self._row is not None and self._cell is not None:
            self.rows[self._row].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            if self._script.get("class") == "report-figure":
                self.figures[self._script["data-figure"]] = json.loads(data)
            elif "Plotly" in data and "define" in data and len(data) > 1_000_000:
                self.bundle_scripts += 1
                return
        if self._cell is not None:
            self._cell.append(data)
        self.outside_bundle.append(data)


def read(path: Optional[Path]) -> Tuple[Page, str]:
    assert path is not None, "no report written"
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    for number in page.rows:
        start = text.index(f'data-number="{number}"')
        page.row_html[number] = text[start:text.index("</tr>", start)]
    return page, text


def assert_self_contained(page: Page, text: str, allowed: Tuple[str, ...] = ()) -> None:
    """No element loads anything (no <script src>, <link href>, <img src>, CSS url()), plotly.js is inline once,
    and no text outside the plotly.js bundle names a network URL but the `allowed` (e.g. a console link)."""
    assert page.bundle_scripts == 1
    assert "link" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    for tag, key, value in page.references:
        assert tag == "a" and key == "href", (tag, key, value)  # only the table's log links
        assert value in allowed or "://" not in value and not value.startswith("//"), value
    outside = "\n".join(page.outside_bundle)
    for url in allowed:
        outside = outside.replace(url, "")
    assert "http://" not in outside and "https://" not in outside
    assert "url(" not in outside and "@import" not in outside


def trace(figure: Dict[str, Any], name: Optional[str] = None) -> Dict[str, Any]:
    traces = figure["data"] if name is None else [t for t in figure["data"] if t.get("name") == name]
    return traces[0]


def study_inputs() -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """Four trials: 1 succeeds, 2 fails (infeasible), 3 is stopped early at step 2 of 3, 4 succeeds best;
    trial 4 ends before trial 3 does."""
    def measurements(*values: float) -> List[Dict[str, Any]]:
        return [{"stepCount": str(i + 1), "metrics": [{"metricId": "loss", "value": v}]} for i, v in enumerate(values)]

    def params(lr: float, opt: str, layers: float) -> List[Dict[str, Any]]:
        return [{"parameterId": "lr", "value": lr}, {"parameterId": "opt", "value": opt},
                {"parameterId": "layers", "value": layers}]

    results = {
        "name": "vertex_vizier", "tuning_job": "/tmp/x/trials", "state": "SUCCEEDED", "metric_id": "loss",
        "goal": "minimize", "best_trial": "4", "best_value": 0.25, "best_params": ["lr=0.01", "opt=adam", "layers=2"],
        "fixed_params": ["n=3"],
        "trials": [
            {"id": "1", "state": "SUCCEEDED", "params": ["lr=0.1", "opt=sgd", "layers=1"], "value": 1.5,
             "infeasible_reason": None},
            {"id": "2", "state": "INFEASIBLE", "params": ["lr=0.9", "opt=sgd", "layers=4"], "value": None,
             "infeasible_reason": FAILURE},
            {"id": "3", "state": "SUCCEEDED", "params": ["lr=0.0001", "opt=adam", "layers=3"], "value": 4.0,
             "infeasible_reason": None},
            {"id": "4", "state": "SUCCEEDED", "params": ["lr=0.01", "opt=adam", "layers=2"], "value": 0.25,
             "infeasible_reason": None},
        ],
    }
    rest = [
        {"id": "1", "parameters": params(0.1, "sgd", 1.0), "measurements": measurements(3.0, 2.0, 1.5),
         "startTime": "2024-05-01T10:00:00.123456789Z", "endTime": "2024-05-01T10:01:30.123Z"},
        {"id": "2", "parameters": params(0.9, "sgd", 4.0), "measurements": [],
         "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T10:00:05Z"},
        {"id": "3", "parameters": params(0.0001, "adam", 3.0), "measurements": measurements(5.0, 4.0),
         "startTime": "2024-05-01T10:01:30Z", "endTime": "2024-05-01T10:03:00Z"},
        {"id": "4", "parameters": params(0.01, "adam", 2.0), "measurements": measurements(1.0, 0.5, 0.25),
         "startTime": "2024-05-01T10:00:05Z", "endTime": "2024-05-01T10:02:00Z"},
    ]
    return results, rest


# ---------------------------------------------------------------------------------------------------------------
# The module, on synthetic records


@needs_plotly
def test_study_report_shows_every_trial_and_each_plots_data(tmp_path: Path) -> None:
    results, rest = study_inputs()
    path = _report.write_study_report(tmp_path, results, rest, [LOG_SPEC, CAT_SPEC, INT_SPEC], early_stopping=True,
                                      link_for=lambda trial: f".vertex_ai/s/trials/{trial}/workerpool0-0.log")
    assert path == tmp_path / "report.html"
    page, text = read(path)
    assert_self_contained(page, text)
    assert set(page.rows) == {"1", "2", "3", "4"}
    # trial, parameters, objective, state, duration, reason, log
    assert page.rows["1"][:5] == ["1", "lr=0.1 opt=sgd layers=1", "1.5", "SUCCEEDED", "1m30s"]
    assert page.rows["4"][6] == ".vertex_ai/s/trials/4/workerpool0-0.log"
    assert 'href=".vertex_ai/s/trials/4/workerpool0-0.log"' in page.row_html["4"]

    # history: succeeded trials by trial number, and the best so far
    history = page.figures["history"]
    assert trace(history, "loss")["y"] == [1.5, 4.0, 0.25]
    assert trace(history, "best so far")["y"] == [1.5, 1.5, 0.25]
    assert trace(history, "loss")["x"] == [1, 3, 4]
    # one plot per parameter: log axis for the log-scaled one, categories as categories
    lr = page.figures["param:lr"]
    assert lr["layout"]["xaxis"]["type"] == "log"
    assert sorted(zip(trace(lr)["x"], trace(lr)["y"])) == [(0.0001, 4.0), (0.01, 0.25), (0.1, 1.5)]
    opt = page.figures["param:opt"]
    assert opt["layout"]["xaxis"]["type"] == "category"
    assert opt["layout"]["xaxis"]["categoryarray"] == ["adam", "sgd"]
    assert sorted(zip(trace(opt)["x"], trace(opt)["y"])) == [("adam", 0.25), ("adam", 4.0), ("sgd", 1.5)]
    layers = page.figures["param:layers"]
    assert layers["layout"]["xaxis"].get("type") is None  # linear, with integer ticks at the values tried
    assert layers["layout"]["xaxis"]["tickvals"] == [1, 2, 3, 4] and layers["layout"]["xaxis"]["tickformat"] == "d"
    assert sorted(trace(layers)["x"]) == [1.0, 2.0, 3.0]
    # parallel coordinates over every parameter, coloured by the objective; the failed trial 2 beyond the worst
    parallel = trace(page.figures["parallel"])
    assert parallel["type"] == "parcoords"
    dims = {d["label"]: d for d in parallel["dimensions"]}
    assert set(dims) == {"lr (log)", "opt", "layers", "loss", "state"}
    assert dims["loss"]["values"] == [1.5, 4.0 + 0.15 * 3.75, 4.0, 0.25] == parallel["line"]["color"]
    assert dims["state"]["ticktext"] == ["INFEASIBLE", "SUCCEEDED"] and dims["state"]["values"] == [1, 0, 1, 1]
    assert dims["lr (log)"]["values"] == pytest.approx([-1.0, -0.0457575, -4.0, -2.0])
    assert dims["opt"]["ticktext"] == ["adam", "sgd"] and dims["opt"]["values"] == [1, 1, 0, 0]
    assert dims["layers"]["tickformat"] == "d"
    # the learning curves, the early-stopped one marked
    curves = {t["name"]: t for t in page.figures["intermediate"]["data"]}
    assert set(curves) == {"trial 1", "trial 3 (stopped early)", "trial 4 (best)"}
    assert curves["trial 3 (stopped early)"]["y"] == [5.0, 4.0] and curves["trial 3 (stopped early)"]["x"] == [1, 2]
    assert curves["trial 3 (stopped early)"]["line"]["dash"] == "dot"


@needs_plotly
def test_a_failed_and_an_early_stopped_trial_show_with_their_reasons(tmp_path: Path) -> None:
    results, rest = study_inputs()
    page, _ = read(_report.write_study_report(tmp_path, results, rest, [LOG_SPEC, CAT_SPEC, INT_SPEC],
                                              early_stopping=True))
    failed, stopped = page.rows["2"], page.rows["3"]
    assert failed[3] == "INFEASIBLE" and failed[2] == "" and failed[4] == "5.0s"
    assert "exited with code 1" in failed[5] and "ValueError: lr <too> big" in failed[5]  # summary and traceback
    assert stopped[3] == "SUCCEEDED (stopped early)"
    assert stopped[5] == "stopped early at step 2 of 3 (early stopping rule)"
    assert page.rows["1"][5] == "" and page.rows["4"][5] == ""
    # without early stopping in the study, a short curve is just a short curve
    page, _ = read(_report.write_study_report(tmp_path, results, rest, [LOG_SPEC, CAT_SPEC, INT_SPEC]))
    assert page.rows["3"][3] == "SUCCEEDED" and "trial 3" in {t["name"] for t in page.figures["intermediate"]["data"]}


@needs_plotly
def test_the_study_report_from_optimization_results_alone(tmp_path: Path) -> None:
    """What a rebuild from optimization_results.yaml has: no REST trials, no specs; still every trial and plot."""
    results, _ = study_inputs()
    page, text = read(_report.write_study_report(tmp_path, results))
    assert_self_contained(page, text)
    assert set(page.rows) == {"1", "2", "3", "4"}
    assert trace(page.figures["history"], "loss")["y"] == [1.5, 4.0, 0.25]  # by trial number
    assert page.figures["param:opt"]["layout"]["xaxis"]["type"] == "category"
    assert "parallel" in page.figures and "intermediate" not in page.figures


@needs_plotly
def test_user_text_is_escaped(tmp_path: Path) -> None:
    evil = "</script><script>alert(1)</script>"
    rows = [ReportRow("0", [f"name={evil}", "x=1"], "FAILED", reason=f"boom {evil} & <b>"),
            ReportRow("1", ["name=ok", "x=2"], "SUCCEEDED", value=2.0)]
    path = _report.write_jobs_report(tmp_path, rows, title=f"title {evil}")
    assert path is not None
    page, text = read(path)
    from plotly.offline import get_plotlyjs

    ours = text.replace(get_plotlyjs(), "")
    assert evil not in text and "<b>" not in ours and "<script>alert" not in ours
    assert page.rows["0"][1] == f"name={evil} x=1" and page.rows["0"][5] == f"boom {evil} & <b>"
    assert set(page.figures["param:name"]["data"][0]["x"]) == {"ok"}  # the figure's JSON survives intact


@needs_plotly
def test_jobs_report_lists_every_job_and_plots_numbers_against_each_varying_key(tmp_path: Path) -> None:
    rows = [
        ReportRow("0", ["n=3", "x=0", "opt=a"], "FAILED", reason="ValueError: x=0 is below 1",
                  link=".vertex_ai/j/0.log"),
        ReportRow("1", ["n=3", "x=1", "opt=a"], "SUCCEEDED", value=2.0, duration_s=75.0),
        ReportRow("2", ["n=3", "x=2", "opt=b"], "SUCCEEDED", value=1.0, link="https://console.cloud.google.com/j/2"),
    ]
    page, text = read(_report.write_jobs_report(tmp_path, rows))
    assert_self_contained(page, text, allowed=("https://console.cloud.google.com/j/2",))
    assert set(page.rows) == {"0", "1", "2"}
    # job, overrides, return value, state, duration, reason, log
    assert page.rows["0"] == ["0", "n=3 x=0 opt=a", "", "FAILED", "", "ValueError: x=0 is below 1",
                              ".vertex_ai/j/0.log"]
    assert page.rows["1"][2:5] == ["2", "SUCCEEDED", "1m15s"] and page.rows["2"][6] == "console"
    assert set(page.figures) == {"param:x", "param:opt"}  # n is the same for every job
    x = trace(page.figures["param:x"], "return value")
    assert (x["x"], x["y"]) == ([1.0, 2.0], [2.0, 1.0])
    opt = page.figures["param:opt"]
    assert opt["layout"]["xaxis"]["type"] == "category" and trace(opt)["x"] == ["a", "b"]


@needs_plotly
def test_flat_mappings_of_numbers_plot_one_series_each_and_other_values_none(tmp_path: Path) -> None:
    assert _report.numeric_value({"loss": 1, "acc": 0.5}) == {"loss": 1.0, "acc": 0.5}
    assert _report.numeric_value(3) == 3.0
    for other in (None, True, "1.0", {"a": {"b": 1}}, {"a": "x"}, [1, 2], {}):
        assert _report.numeric_value(other) is None
    rows = [ReportRow(str(i), [f"x={i}"], "SUCCEEDED", value={"loss": 10.0 - i, "acc": i / 10}) for i in range(3)]
    rows.append(ReportRow("3", ["x=3"], "SUCCEEDED", value=None))  # returned something else: no point
    page, _ = read(_report.write_jobs_report(tmp_path, rows))
    assert page.rows["0"][2] == "loss=10, acc=0"
    series = {t["name"]: (t["x"], t["y"]) for t in page.figures["param:x"]["data"]}
    assert series == {"loss": ([0.0, 1.0, 2.0], [10.0, 9.0, 8.0]), "acc": ([0.0, 1.0, 2.0], [0.0, 0.1, 0.2])}


def test_launch_calls_of_one_multirun_add_up(tmp_path: Path) -> None:
    """Hydra sweepers may launch in batches: each launch() adds its jobs; a new multirun starts afresh."""
    first = _report._merge_earlier_rows(tmp_path, "s1", [ReportRow("0", ["x=0"], "SUCCEEDED", value=1.0)])
    second = _report._merge_earlier_rows(tmp_path, "s1", [ReportRow("1", ["x=1"], "FAILED", reason="r")])
    assert [r.number for r in first] == ["0"] and [(r.number, r.value) for r in second] == [("0", 1.0), ("1", None)]
    other = _report._merge_earlier_rows(tmp_path, "s2", [ReportRow("0", ["x=5"], "SUCCEEDED")])
    assert [r.overrides for r in other] == [["x=5"]]


def test_without_plotly_one_line_says_how_to_get_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    for name in [m for m in sys.modules if m == "plotly" or m.startswith("plotly.")] + ["plotly"]:
        monkeypatch.setitem(sys.modules, name, None)
    results, rest = study_inputs()
    with caplog.at_level(logging.DEBUG, logger=_report.__name__):
        assert _report.write_study_report(tmp_path, results, rest, [LOG_SPEC]) is None
    hints = [r for r in caplog.records if r.name == _report.__name__]
    assert len(hints) == 1 and hints[0].levelno == logging.INFO
    assert 'pip install "hydra-vertex-ai[report]"' in hints[0].getMessage() and "\n" not in hints[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=_report.__name__):
        assert _report.write_jobs_report(tmp_path, [ReportRow("0", ["x=1"], "SUCCEEDED", value=1.0)]) is None
    assert len(caplog.records) == 1 and "hydra-vertex-ai[report]" in caplog.records[0].getMessage()
    assert not (tmp_path / "report.html").exists()


@needs_plotly
def test_an_error_while_writing_is_a_warning_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("plotting broke")

    monkeypatch.setattr(_report, "render_study", broken)
    monkeypatch.setattr(_report, "render_jobs", broken)
    results, rest = study_inputs()
    with caplog.at_level(logging.WARNING, logger=_report.__name__):
        assert _report.write_study_report(tmp_path, results, rest) is None
        assert _report.write_jobs_report(tmp_path, []) is None
        assert _report.report_sweep(tmp_path, results, object(), {}, None) is None  # not even a TuningOutcome
        assert _report.report_launch(tmp_path, "s", [object()], [object()], [object()]) is None
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4


# ---------------------------------------------------------------------------------------------------------------
# End to end, on the local backend


def run_quadratic(
    tmp_path: Path, *args: str, env: Optional[Dict[str, str]] = None
) -> "subprocess.CompletedProcess[str]":
    cmd = [sys.executable, str(QUADRATIC), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env} if env else None)


@needs_plotly
def test_a_local_sweep_writes_the_report(tmp_path: Path) -> None:
    # Grid order, one trial at a time: x=0 fails, x=2 and x=2.5 complete their 10 steps, x=9 is far above their
    # running averages from its first step, so the median rule stops it.
    proc = run_quadratic(tmp_path, "hydra/sweeper=vertex_vizier", "hydra.sweeper.algorithm=grid",
                         "hydra.sweeper.parallel_trial_count=1", "hydra.sweeper.max_failed_trial_count=2",
                         "hydra.sweeper.early_stopping=median", "fail_when_x_below=1", "report_steps=10",
                         "step_s=0.15", "x=choice(0,2,2.5,9)")
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    assert f"Report: {sweep / 'report.html'}" in proc.stderr + proc.stdout
    page, text = read(sweep / "report.html")
    assert_self_contained(page, text)
    assert set(page.rows) == {"1", "2", "3", "4"}
    assert [page.rows[n][1] for n in "1234"] == ["x=0", "x=2", "x=2.5", "x=9"]
    failed, stopped = page.rows["1"], page.rows["4"]
    assert failed[3] == "INFEASIBLE" and "ValueError: x=0 is below 1" in failed[5]
    assert stopped[3] == "SUCCEEDED (stopped early)" and stopped[5].startswith("stopped early at step")
    for _number, cells in page.rows.items():  # a duration and a relative link to the trial's log, which exists
        assert cells[4].endswith("s")
        assert not os.path.isabs(cells[6]) and (sweep / cells[6]).is_file(), cells
    assert set(page.figures) == {"history", "param:x", "parallel", "intermediate", "timeline"}
    assert trace(page.figures["history"], "objective")["y"] == pytest.approx([1.01, 1.26, float(stopped[2])])
    assert sorted(trace(page.figures["param:x"])["x"]) == [2.0, 2.5, 9.0]
    curves = {t["name"] for t in page.figures["intermediate"]["data"]}
    assert curves == {"trial 2 (best)", "trial 3", "trial 4 (stopped early)"}

    # `hydra-vertex-ai report SWEEP` rebuilds it from the sweep's records
    first = (sweep / "report.html").read_text()
    (sweep / "report.html").unlink()
    [manifest] = (sweep / ".vertex_ai").glob("*/manifest.json")
    cli = subprocess.run([sys.executable, "-m", "hydra_plugins.hydra_vertex_ai._cli", "report", str(manifest)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and cli.stdout.strip() == str(sweep / "report.html"), cli.stderr
    assert (sweep / "report.html").read_text() == first  # the same page: nothing is lost on a rebuild


@needs_plotly
def test_a_local_launcher_multirun_writes_the_report(tmp_path: Path) -> None:
    proc = run_quadratic(tmp_path, "hydra/launcher=vertex_ai", "hydra.launcher.backend=local",
                         "hydra.launcher.max_parallel=2", "fail_when_x_below=1", "x=0,2,3", "opt=a,b")
    assert proc.returncode != 0 and "ValueError: x=0 is below 1" in proc.stderr  # Hydra re-raises the failure
    sweep = tmp_path / "sweep"
    assert f"Report: {sweep / 'report.html'}" in proc.stderr + proc.stdout
    page, text = read(sweep / "report.html")
    assert_self_contained(page, text)
    assert set(page.rows) == {str(i) for i in range(6)}
    for _number, cells in page.rows.items():
        x, opt = int(cells[1].split("x=")[1].split()[0]), cells[1].split("opt=")[1]
        if x == 0:
            assert cells[3] == "FAILED" and cells[5] == "x=0 is below 1" and cells[2] == ""
        else:
            expected = (x - 2) ** 2 + {"a": 1, "b": 0}[opt] + 0.01
            assert cells[3] == "SUCCEEDED" and float(cells[2]) == pytest.approx(expected)
        assert cells[4].endswith("s") and (sweep / cells[6]).is_file()
    assert set(page.figures) == {"param:x", "param:opt", "timeline"}
    bars = page.figures["timeline"]["data"]  # every job from its start to its end, by state
    assert sorted(y for b in bars if b["name"] in ("succeeded", "failed") for y in b["y"]) == [f"job {i}" for i in range(6)]
    x = trace(page.figures["param:x"])
    assert sorted((px, round(py, 6)) for px, py in zip(x["x"], x["y"])) == [(2.0, 0.01), (2.0, 1.01), (3.0, 1.01),
                                                                              (3.0, 2.01)]
    assert page.figures["param:opt"]["layout"]["xaxis"]["type"] == "category"


def test_a_sweep_without_plotly_succeeds_and_logs_the_hint(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    (hidden / "plotly").mkdir(parents=True)
    (hidden / "plotly" / "__init__.py").write_text("raise ImportError('plotly is hidden by the test')\n")
    proc = run_quadratic(tmp_path, "hydra/sweeper=vertex_vizier", "hydra.sweeper.max_trial_count=2",
                         "hydra.sweeper.parallel_trial_count=2", "x=interval(0,4)", env={"PYTHONPATH": str(hidden)})
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert output.count('pip install "hydra-vertex-ai[report]"') == 1
    assert (tmp_path / "sweep" / "optimization_results.yaml").exists()
    assert not (tmp_path / "sweep" / "report.html").exists()
