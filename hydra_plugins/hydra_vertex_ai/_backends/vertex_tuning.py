"""HyperparameterTuningJobs on Vertex AI: create exactly once, wait with progress, cancel on Ctrl-C, collect."""
import logging
import sys
import threading
import time
from typing import Any, Dict, Optional

from .._progress import Progress
from .._vertex_facts import CANCELLING, PAUSED, SUCCEEDED, TERMINAL_STATES, console_link, short_state, where
from .base import TuningOutcome, summarize_trials
from .vertex_client import RPC_TIMEOUT_S, VertexClient, error_message, proto_of, trial_rest

log = logging.getLogger(__name__)

# After Ctrl-C: how long to wait for the cancellation to register (CANCELLING or terminal).
CANCEL_WAIT_S = 30.0


class TuningJobs:
    """The tuning jobs of one project and region."""

    def __init__(self, api: VertexClient, poll_interval_s: float) -> None:
        self.api = api
        self.client = api.client
        self.poll_interval_s = poll_interval_s

    def create(self, job: Dict[str, Any]) -> str:
        """Create the HyperparameterTuningJob `job` (REST dict) exactly once (by its `hydra_uid`); its name."""
        from google.cloud.aiplatform_v1 import HyperparameterTuningJob

        proto = proto_of(HyperparameterTuningJob, job)
        uid = job.get("labels", {}).get("hydra_uid")
        created = self.api.create_once(
            f"creating HyperparameterTuningJob '{job.get('displayName', '')}'",
            lambda: self.client.create_hyperparameter_tuning_job(
                parent=self.api.parent, hyperparameter_tuning_job=proto, timeout=RPC_TIMEOUT_S
            ),
            (lambda: self._find(uid)) if uid else (lambda: None),
            threading.Event(),
        )
        log.info("Created HyperparameterTuningJob %s: %s", created.name, console_link(created.name))
        return str(created.name)

    def wait(self, name: str) -> TuningOutcome:
        """Wait for the tuning job `name` to end (Ctrl-C cancels it and re-raises); how it ended."""
        try:
            final = self._wait(name)
        except KeyboardInterrupt:
            self.cancel(name)
            raise
        state = final.state.name
        error = error_message(final) if state != SUCCEEDED else None
        trials = [trial_rest(t) for t in final.trials]
        args = final.trial_job_spec.worker_pool_specs[0].container_spec.args
        message = f"{error}\nsee {where(name)}" if error else None
        return TuningOutcome(state, trials, message, name, payload_uri=args[0] if args else None)

    def _find(self, uid: str) -> Optional[Any]:
        found = self.client.list_hyperparameter_tuning_jobs(
            request={"parent": self.api.parent, "filter": f'labels.hydra_uid="{uid}"',
                     "read_mask": {"paths": ["name", "state"]}},
            timeout=RPC_TIMEOUT_S,
        )
        return next(iter(found), None)

    def _get(self, name: str) -> Any:
        return self.api.call(f"reading {name}", lambda: self.client.get_hyperparameter_tuning_job(
            name=name, timeout=RPC_TIMEOUT_S))

    def _wait(self, name: str) -> Any:
        """One GET per poll (a single job); progress shows trials by state and the best value so far."""
        progress = Progress(f"Vertex AI tuning job {name.split('/')[-1]}")
        try:
            while True:
                current = self._get(name)
                state = current.state.name
                trials = [trial_rest(t) for t in current.trials]
                goal = current.study_spec.metrics[0].goal.name if current.study_spec.metrics else "MINIMIZE"
                progress.update(f"{short_state(state).lower()}; {summarize_trials(trials, goal == 'MAXIMIZE')}")
                if state in TERMINAL_STATES:
                    return current
                if state == PAUSED:
                    log.warning("%s is PAUSED: stalled until resumed", name)
                time.sleep(self.poll_interval_s)
        finally:
            progress.close()

    def cancel(self, name: str) -> None:
        from google.api_core import exceptions as ex

        try:
            self.api.call(f"cancelling {name}", lambda: self.client.cancel_hyperparameter_tuning_job(
                name=name, timeout=RPC_TIMEOUT_S))
        except Exception as e:
            if not isinstance(e.__cause__, (ex.FailedPrecondition, ex.NotFound)):  # not already finished
                log.error("%s", e)
        deadline = time.monotonic() + CANCEL_WAIT_S
        state = "?"
        while time.monotonic() < deadline:
            try:
                state = self.client.get_hyperparameter_tuning_job(name=name, timeout=RPC_TIMEOUT_S).state.name
            except Exception:  # the interrupt wins over a flaky read
                break
            if state in TERMINAL_STATES or state == CANCELLING:
                break
            time.sleep(min(self.poll_interval_s, 1.0))
        print(f"Interrupted: cancelled Vertex AI tuning job {name} ({short_state(state)})", file=sys.stderr, flush=True)

