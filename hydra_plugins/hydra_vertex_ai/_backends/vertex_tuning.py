"""HyperparameterTuningJobs on Vertex AI: create exactly once, wait with progress, cancel on Ctrl-C, collect.

The job's name is printed as soon as it is known (re-attaching needs it); an interrupt during the create
still finds and cancels the job the create made."""
import logging
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, Optional

from .._errors import VertexAPIError
from .._progress import Progress
from .._signals import shielded
from .._vertex_facts import FAILED, PAUSED, SUCCEEDED, TERMINAL_STATES, cancel_command, console_link, short_state, where
from .base import FailureWatch, TuningOutcome, summarize_trials
from .vertex_client import CANCEL_WAIT_S, RPC_TIMEOUT_S, Unreachable, VertexClient, error_message, proto_of, trial_rest

log = logging.getLogger(__name__)



class TuningJobs:
    """The tuning jobs of one project and region."""

    def __init__(self, api: VertexClient, poll_interval_s: float) -> None:
        self.api = api
        self.client = api.client
        self.poll_interval_s = poll_interval_s
        # after Ctrl-C: the tuning job it cancelled, as it stood (None: none created, or it could not be read)
        self.interrupted: Optional[TuningOutcome] = None

    def run(self, job: Dict[str, Any], on_created: Callable[[str], None]) -> TuningOutcome:
        """Create the HyperparameterTuningJob `job` (REST dict) exactly once (by its `hydra_uid`), wait for its end.

        One interrupt handler covers everything from the create to the end of the wait: a Ctrl-C that lands
        anywhere (the create in backoff or on the wire, `on_created` writing the manifest, between two polls)
        cancels the job the create made. The create runs in a thread, so Ctrl-C acts at once and the name it
        returns is kept even when the interrupt lands as it returns; otherwise the job is found by its label."""
        uid = job.get("labels", {}).get("hydra_uid")
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vertex-tuning-create")
        future = pool.submit(self._create, job, uid, stop)
        announced = False
        try:
            while not future.done():
                wait([future], timeout=0.2)
            name = future.result()
            announce(name)
            announced = True
            try:
                on_created(name)
            except Exception as e:  # a record for re-attaching (printed above), never a reason to stop
                log.warning("could not record tuning job %s in the sweep's manifest: %s", name, e)
            return self._finish(name)
        except KeyboardInterrupt as e:
            with shielded(lambda: "cancelling the tuning job"):
                stop.set()
                found = self._created_name(future, uid)
                if found is None:
                    print(f"Interrupted ({e}): no tuning job was created" if str(e) else
                          "Interrupted: no tuning job was created", file=sys.stderr, flush=True)
                else:
                    if not announced:
                        announce(found)
                    self._cancel_interrupted(found, e)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _create(self, job: Dict[str, Any], uid: Optional[str], stop: threading.Event) -> str:
        from google.cloud.aiplatform_v1 import HyperparameterTuningJob

        proto = proto_of(HyperparameterTuningJob, job)
        created = self.api.create_once(
            f"creating HyperparameterTuningJob '{job.get('displayName', '')}'",
            lambda: self.client.create_hyperparameter_tuning_job(
                parent=self.api.parent, hyperparameter_tuning_job=proto, timeout=RPC_TIMEOUT_S
            ),
            (lambda: self._find(uid)) if uid else (lambda: None),
            stop,
        )
        return str(created.name)

    def _created_name(self, future: "Future[str]", uid: Optional[str]) -> Optional[str]:
        """After an interrupt: the name of the job the create made, if it made one (looked up by its label)."""
        done, _ = wait([future], timeout=CANCEL_WAIT_S)
        if done and future.exception() is None:
            return future.result()
        if uid is None:
            return None
        try:
            found = self.api.call("looking up the tuning job being created", lambda: self._find(uid),
                                  budget_s=min(self.api.retry_timeout_s, CANCEL_WAIT_S))
        except VertexAPIError as e:
            print(f"could not look up the tuning job labelled hydra_uid={uid}: {e}; if it exists, cancel it",
                  file=sys.stderr, flush=True)
            return None
        return str(found.name) if found is not None else None

    def wait(self, name: str) -> TuningOutcome:
        """Wait for the existing tuning job `name` to end (Ctrl-C cancels it and re-raises); how it ended."""
        try:
            return self._finish(name)
        except KeyboardInterrupt as e:
            with shielded(lambda: f"cancelling {name}"):
                self._cancel_interrupted(name, e)
            raise

    def snapshot(self, name: str) -> Optional[TuningOutcome]:
        """The tuning job as it stands (its trials so far), or None if it cannot be read."""
        try:
            current = self._get(name)
        except Exception as e:  # an interrupt or `collect` must not fail on a flaky read
            log.warning("could not read %s: %s", name, e)
            return None
        return self._outcome(name, current)

    def _finish(self, name: str) -> TuningOutcome:
        """Wait for `name` to end. An outage longer than retry_timeout_s cancels nothing: it says how to re-attach."""
        try:
            final = self._wait(name)
        except Unreachable as e:
            raise VertexAPIError(
                f"{e}\nVertex AI did not answer for longer than retry_timeout_s; the tuning job was not cancelled. "
                f"Re-attach when the service answers: hydra.sweeper.resume={name} (or cancel it: {cancel_command(name)})"
            ) from e
        except FailingAlike as e:  # our rule, not Vertex's: the service would run the whole budget
            with shielded(lambda: f"cancelling {name}"):
                after = self._cancel(name, e)
            return self._outcome(name, after or self._get(name), f"{e}\nsee {where(name)}", FAILED)
        return self._outcome(name, final)

    def _outcome(self, name: str, final: Any, error: Optional[str] = None, state: Optional[str] = None) -> TuningOutcome:
        state = state or final.state.name
        if error is None and state != SUCCEEDED:
            reason = error_message(final)
            error = f"{reason}\nsee {where(name)}" if reason else None
        trials = [trial_rest(t) for t in final.trials]
        args = final.trial_job_spec.worker_pool_specs[0].container_spec.args
        return TuningOutcome(state, trials, error, name, payload_uri=args[0] if args else None)

    def _find(self, uid: str) -> Optional[Any]:
        found = self.client.list_hyperparameter_tuning_jobs(
            request={"parent": self.api.parent, "filter": f'labels.hydra_uid="{uid}"',
                     "read_mask": {"paths": ["name", "state"]}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _get(self, name: str, budget_s: Optional[float] = None) -> Any:
        return self.api.call(f"reading {name}", lambda: self.client.get_hyperparameter_tuning_job(
            name=name, timeout=RPC_TIMEOUT_S), budget_s=budget_s)

    def _wait(self, name: str) -> Any:
        """One GET per poll (a single job); progress shows trials by state and the best value so far."""
        progress = Progress(f"Vertex AI tuning job {name.split('/')[-1]}")
        watch: Optional[FailureWatch] = None
        try:
            while True:
                current = self._get(name)
                state = current.state.name
                trials = [trial_rest(t) for t in current.trials]
                goal = current.study_spec.metrics[0].goal.name if current.study_spec.metrics else "MINIMIZE"
                progress.update(f"{short_state(state).lower()}; {summarize_trials(trials, goal == 'MAXIMIZE')}")
                if state in TERMINAL_STATES:
                    return current
                # the first failure's reason at once, and the same stop rule as the local study engine
                watch = watch or FailureWatch(int(current.parallel_trial_count or 1), console_link(name))
                stop = watch.update(trials)
                if stop:
                    raise FailingAlike(stop)
                if state == PAUSED:
                    log.warning("%s is PAUSED: stalled until resumed", name)
                time.sleep(self.poll_interval_s)
        finally:
            progress.close()

    def _cancel_interrupted(self, name: str, reason: KeyboardInterrupt) -> None:
        """Ctrl-C: cancel the tuning job and keep how far it got (`interrupted`)."""
        after = self._cancel(name, reason)
        self.interrupted = self._outcome(name, after) if after is not None else None

    def _cancel(self, name: str, reason: BaseException) -> Optional[Any]:
        """Cancel the tuning job and say whether Vertex confirmed it ('Interrupted' only for an interrupt);
        the job as read after the cancel, None if it could not be read."""
        budget = min(self.api.retry_timeout_s, CANCEL_WAIT_S)
        error = self.api.cancel(name, lambda: self.client.cancel_hyperparameter_tuning_job(
            name=name, timeout=RPC_TIMEOUT_S), budget)
        after = None
        try:
            after = self._get(name, budget_s=min(budget, 5.0))
        except VertexAPIError:
            pass
        state = after.state.name if after is not None else "?"
        if isinstance(reason, KeyboardInterrupt):
            head = "Interrupted"
        elif isinstance(reason, FailingAlike):
            head = "Stopped early"
        else:
            head = f"Stopped by an error ({type(reason).__name__})"
        if error is None:
            print(f"{head}: cancelled Vertex AI tuning job {name} ({short_state(state)})", file=sys.stderr, flush=True)
        else:
            print(f"{head}: could NOT confirm the cancellation of Vertex AI tuning job {name} ({error}); it may still "
                  f"be running (and billed). Cancel it with: {cancel_command(name)}\nor re-attach: "
                  f"hydra.sweeper.resume={name}", file=sys.stderr, flush=True)
        return after


class FailingAlike(Exception):
    """The study's first trials all failed the same way (FailureWatch's rule): stop paying for more."""


def announce(name: str) -> None:
    """The tuning job's name as soon as it is known: what `hydra.sweeper.resume` needs after any failure."""
    print(f"Vertex AI tuning job {name} ({console_link(name)}); re-attach with hydra.sweeper.resume={name}",
          file=sys.stderr, flush=True)
