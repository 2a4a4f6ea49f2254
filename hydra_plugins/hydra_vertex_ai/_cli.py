"""`hydra-vertex-ai`: list, follow, cancel, collect and report the sweeps of the vertex_ai launcher and vertex_vizier sweeper.

A sweep is named by its sweep id (`<job name>-<YYYYmmdd-HHMMSS>-<hex>`) and found through its manifest
(`<staging_dir>/<sweep id>/manifest.json`): give `--staging gs://BUCKET/PATH` for the vertex backend; local
sweeps are searched under ./multirun/**/.vertex_ai (and ./outputs/**); a manifest path or URI works too.
Works with both backends and with the emulator (the manifest records its endpoint). Errors are one line.

Private module (Hydra's plugin scan skips it); run as `hydra-vertex-ai` or `python -m hydra_plugins.hydra_vertex_ai._cli`.
"""
import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import _storage
from ._progress import JobRow, count_states, format_elapsed, relative_path, shorten
from ._staging import ManifestNotFound, Staging, find_manifest, list_manifests, read_manifest, replica_log
from ._vertex_facts import CANCELLING, TERMINAL_STATES, console_link, short_state

log = logging.getLogger(__name__)

PROG = "hydra-vertex-ai"
# short states of jobs that may still change (NOT_CREATED: never submitted; it cannot change on its own)
UNFINISHED = {"QUEUED", "PENDING", "RUNNING", "PAUSED", "CANCELLING", "ACTIVE", "REQUESTED", "STOPPING"}
FOLLOW_POLL_S = 1.0
CANCEL_WAIT_S = 30.0


class CliError(Exception):
    """A one-line error for the user."""


@dataclass
class Sweep:
    """A sweep as its manifest describes it, and how to reach its jobs."""

    uri: str
    manifest: Dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest["sweep_id"])

    @property
    def staging(self) -> Staging:
        return Staging(str(self.manifest["staging_dir"]), self.id)

    @property
    def on_vertex(self) -> bool:
        return self.manifest.get("backend") == "vertex"

    @property
    def is_study(self) -> bool:
        return self.manifest.get("kind") == "study"

    # --- the backend's view ----------------------------------------------------------------------------

    @cached_property
    def client(self) -> Any:
        """One JobServiceClient for the command (`logs --follow` and `cancel` poll through it)."""
        from ._backends.vertex_client import make_client

        return make_client(str(self.manifest["location"]), self.manifest.get("api_endpoint"))

    @property
    def parent(self) -> str:
        return f"projects/{self.manifest['project']}/locations/{self.manifest['location']}"

    def vertex_jobs(self) -> Dict[str, Any]:
        """hydra_uid -> the CustomJob of this sweep (one List call, filtered by the sweep's label)."""
        from ._backends.vertex_client import RPC_TIMEOUT_S

        request = {"parent": self.parent, "filter": f'labels.hydra_sweep="{self.id}"',
                   "read_mask": {"paths": ["name", "state", "labels", "start_time", "end_time", "error"]}}
        listed = self.client.list_custom_jobs(request=request, timeout=RPC_TIMEOUT_S)
        return {job.labels.get("hydra_uid", job.name): job for job in listed}

    def tuning_job(self) -> Optional[Any]:
        from ._backends.vertex_client import RPC_TIMEOUT_S

        name = self.manifest.get("tuning_job")
        return self.client.get_hyperparameter_tuning_job(name=name, timeout=RPC_TIMEOUT_S) if name else None

    def rows(self) -> List[JobRow]:
        """One row per job (a launch) or trial (a study)."""
        if self.is_study:
            return self._trial_rows()
        if self.on_vertex:
            found = self.vertex_jobs()
            rows = []
            for job in self.manifest["jobs"]:
                item = found.get(job["hydra_uid"])
                state = short_state(item.state.name) if item is not None else "NOT_CREATED"
                rows.append(JobRow(str(job["num"]), _overrides(job), state, _elapsed(item),
                                   console_link(item.name) if item is not None else ""))
            return rows
        return [self._local_row(job) for job in self.manifest["jobs"]]

    def _local_row(self, job: Dict[str, Any]) -> JobRow:
        from ._backends.processes import OUTCOME_FILE, PIDS_FILE, local_job_state

        workdir = Path(job["job_dir"])
        state = local_job_state(workdir, _storage.exists(job["result"]))
        if state is None:
            state = "QUEUED" if self.launcher_alive() else "NOT_CREATED"
        elapsed = None
        if (workdir / PIDS_FILE).exists():
            end = (workdir / OUTCOME_FILE).stat().st_mtime if (workdir / OUTCOME_FILE).exists() else time.time()
            elapsed = end - (workdir / PIDS_FILE).stat().st_mtime
        return JobRow(str(job["num"]), _overrides(job), short_state(state), elapsed, str(replica_log(workdir)))

    def _trial_rows(self) -> List[JobRow]:
        """A study's trials, the best first: parameters as Hydra overrides, objective, state, elapsed, where."""
        from . import _report

        if self.on_vertex:
            job = self.tuning_job()
            if job is None:
                return []
            from ._backends.vertex_client import trial_rest

            trials = [trial_rest(t) for t in job.trials]
            link = _report.vertex_trial_links(job.name, trials)
            rows = [self._trial_row(rest, link(str(rest["id"]))) for rest in trials]
        else:
            try:
                trials = json.loads(_storage.read_bytes(self.staging.trials_record))
            except (OSError, ValueError):
                trials = []
            rows = [self._trial_row(rest, str(replica_log(self.staging.trial_dir(str(rest["id"])))))
                    for rest in trials]
        best = _report.views.best_row(rows, str(self.manifest.get("goal") or "minimize"))
        return ([best] if best is not None else []) + [r for r in rows if r is not best]

    def _trial_row(self, rest: Dict[str, Any], where: str) -> JobRow:
        from . import _search_space

        pmap = {k: tuple(v) for k, v in (self.manifest.get("parameter_map") or {}).items()}
        values = {p["parameterId"]: p.get("value") for p in rest.get("parameters", [])}
        params = " ".join(_search_space.overrides_from_values(pmap, values)) if pmap else \
            " ".join(f"{k}={v}" for k, v in values.items())
        metrics = (rest.get("finalMeasurement") or {}).get("metrics") or [{}]
        value = metrics[0].get("value")
        return JobRow(str(rest["id"]), params, short_state(str(rest.get("state"))), _rest_elapsed(rest), where,
                      float(value) if isinstance(value, (int, float)) else None)

    def launcher_alive(self) -> bool:
        """Whether the process that launched this local sweep, or its detached supervisor, still runs."""
        from ._backends.local import supervisor_alive
        from ._backends.processes import pid_alive

        owner = self.manifest.get("owner") or [None, None]
        return bool(owner[0] and pid_alive(int(owner[0]), owner[1])) or supervisor_alive(self.staging)


def _overrides(job: Dict[str, Any]) -> str:
    from hydra.core.utils import filter_overrides

    return " ".join(filter_overrides(job.get("overrides") or []))


def _elapsed(item: Any) -> Optional[float]:
    """Seconds from a job's (or trial's) start to its end, or to now while it runs."""
    if item is None or not item.start_time:
        return None
    end = item.end_time.timestamp() if item.end_time else time.time()
    return max(0.0, end - item.start_time.timestamp())


def _rest_elapsed(rest: Dict[str, Any]) -> Optional[float]:
    """A REST Trial's elapsed seconds: start to end, or to now while it runs."""
    from ._report import _epoch

    start, end = _epoch(rest.get("startTime")), _epoch(rest.get("endTime"))
    return None if start is None else max(0.0, (end or time.time()) - start)


def load(ref: str, staging: Optional[str]) -> Sweep:
    try:
        uri = find_manifest(ref, [staging] if staging else [], os.getcwd())
        return Sweep(uri, read_manifest(uri))
    except ManifestNotFound as e:
        raise CliError(str(e)) from None


# --- verbs -----------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """Recent sweeps, newest first: those of the given staging dir, or of ./multirun and the per-user index."""
    from . import _sweep_index

    uris = list_manifests(args.staging_dir, os.getcwd())
    if args.staging_dir is None:  # the newest of the index only: each may be a read from a bucket
        uris += _sweep_index.recent()[: args.limit]
    sweeps: Dict[str, Sweep] = {}
    for uri in uris:
        try:
            sweep = Sweep(uri, read_manifest(uri))
        except Exception:  # an index entry whose sweep was deleted, a bucket gone: not worth an error
            continue
        sweeps.setdefault(sweep.id, sweep)
    if not sweeps:
        where = args.staging_dir or f"{os.path.abspath('multirun')} or {_sweep_index.index_path()}"
        print(f"no sweeps found in {where}")
        return 0
    table: List[Sequence[str]] = [("SWEEP", "BACKEND", "KIND", "AGE", "STATES", "SWEEP DIR")]
    for sweep in sorted(sweeps.values(), key=lambda s: -float(s.manifest.get("created", 0)))[: args.limit]:
        try:
            counts = count_states([r.state for r in sweep.rows()]) or "no jobs yet"
        except Exception as e:  # one unreachable sweep must not hide the others
            counts = f"? ({_one_line(e)})"
        age = format_elapsed(time.time() - float(sweep.manifest.get("created", time.time()))) + " ago"
        kind = "study" if sweep.is_study else f"{len(sweep.manifest.get('jobs', []))} job(s)"
        table.append((sweep.id, str(sweep.manifest.get("backend")), kind, age, counts,
                      relative_path(str(sweep.manifest.get("sweep_dir", "")))))
    _print_table(table)
    return 0


def _print_table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    """Columns aligned under their header (the columns in `right` right-aligned); the last one is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells[:-1] + [row[-1]]).rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    sweep = load(args.sweep, args.staging)
    rows = sweep.rows()
    what = f"tuning job {sweep.manifest.get('tuning_job') or '(not created)'}" if sweep.is_study else "launch"
    print(f"sweep {sweep.id} ({sweep.manifest.get('backend')} backend, {what}): {count_states([r.state for r in rows])}")
    print(f"sweep dir {relative_path(str(sweep.manifest.get('sweep_dir')))}")
    if sweep.is_study:  # the best trial first
        metric = f"{sweep.manifest.get('metric_id') or 'objective'} ({sweep.manifest.get('goal') or 'minimize'})"
        table: List[Sequence[str]] = [("TRIAL", "PARAMETERS", metric, "STATE", "ELAPSED", "LOGS")]
        table += [(r.num, r.overrides, "" if r.value is None else f"{r.value:.6g}", r.state,
                   format_elapsed(r.elapsed), relative_path(r.where)) for r in rows]
        _print_table(table, right=(0, 2, 4))
    else:
        table = [("JOB", "OVERRIDES", "STATE", "ELAPSED", "LOGS")]
        table += [(r.num, shorten(r.overrides), r.state, format_elapsed(r.elapsed), relative_path(r.where)) for r in rows]
        _print_table(table, right=(0, 3))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    sweep = load(args.sweep, args.staging)
    rows = {r.num: r for r in sweep.rows()}
    if not rows:
        raise CliError(f"sweep {sweep.id} has no job yet")
    num = args.job if args.job is not None else min(rows, key=lambda n: (len(n), n))
    if num not in rows:
        raise CliError(f"sweep {sweep.id} has no job {num} (jobs: {', '.join(rows)})")
    uri = _log_uri(sweep, num)
    shown = 0
    while True:
        done = rows[num].state not in UNFINISHED
        text = _read(uri) if uri else b""
        if len(text) > shown:
            sys.stdout.write(text[shown:].decode(errors="replace"))
            sys.stdout.flush()
            shown = len(text)
        if not args.follow or done:
            break
        time.sleep(FOLLOW_POLL_S)
        rows = {r.num: r for r in sweep.rows()}
    if uri is None or (shown == 0 and not args.follow):
        where = f": {rows[num].where}" if rows[num].where else ""
        if rows[num].state in UNFINISHED or rows[num].state == "NOT_CREATED" or uri is None:
            print(f"(no log of job {num} yet{where})", file=sys.stderr)
        else:
            print(f"(job {num} ended {rows[num].state} without writing to its log{where})", file=sys.stderr)
    return 0


def _log_uri(sweep: Sweep, num: str) -> Optional[str]:
    """The chief's log: its local file, or the bucket copy of the job's Hydra log (vertex)."""
    if not sweep.on_vertex:
        return _local_log(sweep, num)
    if sweep.is_study:
        return None  # trials log to Cloud Logging; the console link shows them
    job = next(j for j in sweep.manifest["jobs"] if str(j["num"]) == num)
    outputs, subdir = sweep.manifest.get("outputs_uri"), job.get("subdir")
    if not outputs or subdir is None:
        return None
    return _storage.join(str(outputs), str(subdir), f"{sweep.manifest.get('job_name')}.log")


def _local_log(sweep: Sweep, num: str) -> Optional[str]:
    if sweep.is_study:
        return str(replica_log(sweep.staging.trial_dir(num)))
    job = next(j for j in sweep.manifest["jobs"] if str(j["num"]) == num)
    return str(replica_log(job["job_dir"]))


def _read(uri: str) -> bytes:
    try:
        return _storage.read_bytes(uri) if _storage.exists(uri) else b""
    except OSError:
        return b""


def cmd_cancel(args: argparse.Namespace) -> int:
    sweep = load(args.sweep, args.staging)
    targets = [r for r in sweep.rows() if r.state in UNFINISHED]
    owner = sweep.launcher_alive() if not sweep.on_vertex else False
    if sweep.is_study and sweep.on_vertex:
        job = sweep.tuning_job()
        targets = [JobRow("study", "", short_state(job.state.name), None, job.name)] if job and \
            job.state.name not in TERMINAL_STATES else []
    if not targets and not owner:
        print(f"sweep {sweep.id}: nothing unfinished to cancel")
        return 0
    print(f"sweep {sweep.id}: will cancel {len(targets)} unfinished job(s)" + (" and stop its launcher" if owner else ""))
    for r in targets:
        print(f"  #{r.num} {shorten(r.overrides)} ({r.state}) {r.where}")
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError("not a terminal: re-run with --yes to cancel")
        if input("Cancel them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing cancelled")
            return 1
    if sweep.on_vertex:
        _cancel_vertex(sweep, targets)
    else:
        _cancel_local(sweep)
    left = [r for r in sweep.rows() if r.state in UNFINISHED - {"CANCELLING"}]
    for r in targets:
        print(f"cancelled #{r.num} {shorten(r.overrides)}")
    if left:
        raise CliError(f"{len(left)} job(s) still unfinished: {', '.join('#' + r.num for r in left)}")
    return 0


def _cancel_vertex(sweep: Sweep, targets: Sequence[JobRow]) -> None:
    from google.api_core import exceptions as ex

    from ._backends.vertex_client import RPC_TIMEOUT_S

    client = sweep.client
    if sweep.is_study:
        names = [str(sweep.manifest["tuning_job"])]
        cancel = client.cancel_hyperparameter_tuning_job
    else:
        names = [j.name for j in sweep.vertex_jobs().values() if j.state.name not in TERMINAL_STATES]
        cancel = client.cancel_custom_job
    for name in names:
        try:
            cancel(name=name, timeout=RPC_TIMEOUT_S)
        except (ex.FailedPrecondition, ex.NotFound):
            pass  # it ended meanwhile
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline and any(r.state in UNFINISHED - {short_state(CANCELLING)} for r in sweep.rows()):
        time.sleep(FOLLOW_POLL_S)


def _cancel_local(sweep: Sweep) -> None:
    """Stop the launcher (or supervisor) first, so it starts nothing more, then every job still running."""
    from ._backends.local import SUPERVISOR_FILE
    from ._backends.processes import pid_alive, stop_recorded

    for record in (sweep.manifest.get("owner"), _json(Path(sweep.staging.root) / SUPERVISOR_FILE)):
        if record and record[0] != os.getpid() and pid_alive(int(record[0]), record[1]):
            os.kill(int(record[0]), signal.SIGTERM)  # it cancels its own jobs, as on Ctrl-C
            deadline = time.monotonic() + CANCEL_WAIT_S
            while time.monotonic() < deadline and pid_alive(int(record[0]), record[1]):
                time.sleep(0.1)
    dirs = [Path(j["job_dir"]) for j in sweep.manifest.get("jobs", [])] if not sweep.is_study else \
        [p for p in Path(sweep.staging.trials_dir).glob("*/")]
    for workdir in dirs:
        stop_recorded(workdir)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def cmd_collect(args: argparse.Namespace) -> int:
    sweep = load(args.sweep, args.staging)
    rows = sweep.rows()
    running = [r for r in rows if r.state in UNFINISHED]
    if sweep.is_study and sweep.on_vertex:
        job = sweep.tuning_job()
        if job is not None and job.state.name not in TERMINAL_STATES:
            running = running or [JobRow("study", "", short_state(job.state.name), None, job.name)]
    elif not sweep.on_vertex and sweep.launcher_alive() and any(r.state == "QUEUED" for r in rows):
        running = running or [r for r in rows if r.state == "QUEUED"]
    if running:
        print(f"{PROG}: sweep {sweep.id} is still running: {count_states([r.state for r in rows])}; "
              f"collect again once it has ended", file=sys.stderr)
        return 3
    sweep_dir = Path(str(sweep.manifest["sweep_dir"]))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    outputs = sweep.manifest.get("outputs_uri")
    if sweep.on_vertex and outputs:
        from ._backends.vertex_outputs import OutputFilter, sync_outputs

        left = sync_outputs({str(sweep_dir): str(outputs)}, which=OutputFilter(**sweep.manifest.get("sync_outputs", {})))
        if left.count:  # the run's end line, which the command's WARNING-level logging would not show
            print(left.line())
    if sweep.is_study:
        return _collect_study(sweep, sweep_dir)
    _report_launch(sweep, sweep_dir, rows)
    print(f"sweep {sweep.id}: {count_states([r.state for r in rows])}; outputs in {sweep_dir}")
    return 0


def _collect_study(sweep: Sweep, sweep_dir: Path) -> int:
    from . import _report, _sweep
    from .config import Goal, VertexVizierSweeperConf

    results_path = sweep_dir / _sweep.RESULTS_FILE
    if not sweep.on_vertex:  # the local study engine lives in the sweeper's process: it wrote the results
        if not results_path.exists():
            raise CliError(f"no {results_path}: a local study's results are written by the sweeper that ran it")
        print(f"sweep {sweep.id}: results in {results_path}")
        return 0
    name = sweep.manifest.get("tuning_job")
    if not name:
        raise CliError(f"sweep {sweep.id} recorded no tuning job: nothing was submitted")
    from ._backends.vertex import VertexBackend

    backend = VertexBackend(sweep.client, project=str(sweep.manifest["project"]),
                            location=str(sweep.manifest["location"]), staging_dir=sweep.staging.staging_dir,
                            sweep_id=sweep.id)
    outcome = backend.tuning_snapshot(str(name))
    if outcome is None:
        raise CliError(f"cannot read {name}")
    conf = VertexVizierSweeperConf(metric_id=str(sweep.manifest["metric_id"]), goal=Goal(sweep.manifest["goal"]))
    pmap = {k: tuple(v) for k, v in (sweep.manifest.get("parameter_map") or {}).items()}
    results = _sweep.write_results(results_path, conf, pmap, list(sweep.manifest.get("fixed") or []), outcome)
    _report.write_study_report(sweep_dir, results, outcome.trials,
                               link_for=_report.vertex_trial_links(str(name), outcome.trials))
    print(f"sweep {sweep.id}: {len(outcome.trials)} trial(s); results in {results_path}")
    return 0


def _report_launch(sweep: Sweep, sweep_dir: Path, rows: Sequence[JobRow]) -> None:
    """report.html from the jobs' results, where they can be read here (never fails `collect`)."""
    from . import _report

    try:
        report_rows = []
        for job, row in zip(sweep.manifest["jobs"], rows):
            report_rows.append(_report.ReportRow(number=row.num, overrides=row.overrides.split(), state=row.state,
                                                 value=_result_value(job["result"]), duration_s=row.elapsed,
                                                 reason=None, link=row.where or None))
        _report.write_jobs_report(sweep_dir, report_rows)
    except Exception as e:
        log.warning("report.html not written: %s", _one_line(e))


def _result_value(uri: str) -> Any:
    from . import _payload, _report

    try:
        ret = _payload.load_result(_storage.read_bytes(uri))
        return _report.numeric_value(ret._return_value)
    except Exception:
        return None


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild report.html from what the run recorded for it in the sweep dir (the same page), or else from the
    sweep's records: its jobs' results, or its optimization_results.yaml."""
    from . import _report, _sweep

    sweep = load(args.sweep, args.staging)
    sweep_dir = Path(str(sweep.manifest["sweep_dir"]))
    if _report.rebuild(sweep_dir) is not None:
        pass
    elif not sweep.is_study:
        _report_launch(sweep, sweep_dir, sweep.rows())
    else:
        results_path = sweep_dir / _sweep.RESULTS_FILE
        if not results_path.exists():
            raise CliError(f"no {results_path}: run `{PROG} collect {sweep.id}` first")
        import yaml

        _report.write_study_report(sweep_dir, yaml.safe_load(results_path.read_text()))
    report = sweep_dir / _report.REPORT_FILE
    if not report.exists():
        raise CliError(f"no report written (is plotly installed? {_report.INSTALL_HINT})")
    print(report)
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    """Hidden: run a detached local sweep's jobs (`hydra.launcher.wait=false`), as a re-attached launcher."""
    from ._backends.local import JOB_SPEC_FILE, LocalBackend

    sweep = Sweep(args.manifest, read_manifest(args.manifest))
    backend = LocalBackend(sweep.staging, sweep.manifest.get("max_parallel"))
    backend.attach = True
    backend.job_overrides = {str(j["num"]): _overrides(j) for j in sweep.manifest["jobs"]}
    specs = [json.loads((Path(j["job_dir"]) / JOB_SPEC_FILE).read_text()) for j in sweep.manifest["jobs"]]
    backend.run_jobs(specs)
    return 0


# --- the command line ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        if name != "list":
            sub.add_argument("sweep", metavar="SWEEP", help="sweep id, or the path/URI of its manifest.json")
            sub.add_argument("--staging", default=None,
                             help="the staging_dir the sweep used (gs://... for the vertex backend)")
        return sub

    ls = verb("list", "recent sweeps with their age and job counts by state")
    ls.add_argument("staging_dir", nargs="?", default=None, metavar="STAGING_DIR",
                    help="a staging_dir (local or gs://); default: the local sweeps under ./multirun and ./outputs")
    ls.add_argument("--limit", type=int, default=20, help="show at most this many sweeps (newest first)")
    verb("status", "one row per job or trial: number, overrides, state, elapsed, console link or log path")
    logs = verb("logs", "the chief's log of one job (local file, or the bucket copy on vertex)")
    logs.add_argument("job", nargs="?", default=None, metavar="JOB", help="job number or trial id (default: the first)")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    cancel = verb("cancel", "cancel every unfinished job (or the tuning job) of the sweep, after showing them")
    cancel.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    verb("collect", "write what the sweep produced into its sweep dir (outputs, optimization_results.yaml); "
                    "exits 3 while jobs still run")
    verb("report", "rebuild the sweep dir's report.html from the sweep's records, and print its path")
    sup = verbs.add_parser("_supervise")  # internal: the detached runner of a local sweep
    sup.add_argument("manifest")
    return p


COMMANDS = {"list": cmd_list, "status": cmd_status, "logs": cmd_logs, "cancel": cmd_cancel,
            "collect": cmd_collect, "report": cmd_report, "_supervise": cmd_supervise}


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError (Python's
    documented recipe, library/signal.html "Note on SIGPIPE")."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verb == "_supervise" else logging.WARNING,
                        format="[%(asctime)s][%(name)s] %(message)s")
    try:
        return COMMANDS[args.verb](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `status ... | head`: the reader has all it wanted
        _quiet_stdout()
        return 0
    except CliError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # no credentials, an API error, an unreadable bucket: one line, no traceback
        from ._errors import CredentialsError, VertexAPIError

        kind = "" if isinstance(e, (VertexAPIError, CredentialsError)) else f"{type(e).__name__}: "
        print(f"{PROG}: error: {kind}{_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
