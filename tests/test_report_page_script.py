"""The report page's own script, run by Node against a small stand-in of the browser's DOM (no browser needed):
every figure is handed to Plotly with the page's template, and a click on a header sorts the table by that
column (numbers as numbers, empty cells last; a second click reverses). Skipped where Node is not installed."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hydra_plugins.hydra_vertex_ai import _report

NODE = shutil.which("node")

# document with: two figure blocks, the template block, and a table whose "value" column (index 1) holds
# 10, 9.5, (empty) and 100 in its data-sort attributes
DOM = r"""
function el(attrs, text, children) {
  return {attrs: attrs, textContent: text || "", children: children || [], classList: new Set(),
          getAttribute: function (k) { return this.attrs[k]; }, hasAttribute: function (k) { return k in this.attrs; },
          listeners: {}, addEventListener: function (e, f) { this.listeners[e] = f; }};
}
function classList(node) {
  var set = new Set();
  node.classList = {add: function () { for (var a of arguments) set.add(a); },
                    remove: function () { for (var a of arguments) set.delete(a); },
                    contains: function (c) { return set.has(c); }};
}
var figures = [el({"data-target": "figure-0"}, JSON.stringify({data: [1], layout: {title: "a"}})),
               el({"data-target": "figure-1"}, JSON.stringify({data: [2], layout: {title: "b"}}))];
var template = el({}, JSON.stringify({layout: {font: {size: 13}}}));
var headers = [el({}, "job"), el({}, "value")];
headers.forEach(classList);
function row(n, sortKey) {
  var cells = [el({"data-sort": n}, n), el(sortKey === null ? {} : {"data-sort": sortKey}, "")];
  var tr = el({}, "", cells); tr.number = n; return tr;
}
var tbody = {children: [row("0", "10.0"), row("1", "9.5"), row("2", null), row("3", "100.0")],
             appendChild: function (tr) { this.children = this.children.filter(function (c) { return c !== tr; });
                                          this.children.push(tr); }};
var plotted = [];
var Plotly = {newPlot: function (div, data, layout) { plotted.push([div, data, layout]); }};
var document = {
  querySelectorAll: function (q) {
    return {"script.report-figure": figures, "#rows th": headers}[q];
  },
  querySelector: function (q) { return {"#rows tbody": tbody}[q]; },
  getElementById: function (id) { return id === "report-template" ? template : id; },
};
"""

CHECKS = r"""
var out = {plotted: plotted.map(function (p) { return [p[0], p[2].template.layout.font.size]; })};
headers[1].listeners.click();
out.ascending = tbody.children.map(function (tr) { return tr.number; });
headers[1].listeners.click();
out.descending = tbody.children.map(function (tr) { return tr.number; });
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(NODE is None, reason="needs node to run the page's script")
def test_the_page_script_plots_every_figure_and_sorts_the_table(tmp_path: Path) -> None:
    script = tmp_path / "page.js"
    script.write_text(DOM + _report._RENDER + CHECKS)
    done = subprocess.run([str(NODE), str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["plotted"] == [["figure-0", 13], ["figure-1", 13]]  # each figure, with the page's template
    assert out["ascending"] == ["1", "0", "3", "2"]  # 9.5 < 10 < 100 as numbers; the empty cell last
    assert out["descending"] == ["3", "0", "1", "2"]  # reversed; the empty cell still last
