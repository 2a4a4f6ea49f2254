"""Print the README's config reference tables from config.py: every field, its default and its comment.

    python tools/config_reference.py > /tmp/reference.md
"""
import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

CONFIG = Path(__file__).resolve().parents[1] / "hydra_plugins" / "hydra_vertex_ai" / "config.py"
# (dataclass, prefix under hydra.launcher / hydra.sweeper)
SECTIONS = [
    ("VertexBackendConf", ""),
    ("JobSpecConf", "job."),
    ("SchedulingConf", "job.scheduling."),
    ("WorkerPoolConf", "job.worker_pools[i]."),
    ("SnapshotConf", "snapshot."),
    ("VertexAILauncherConf", ""),
    ("VertexVizierSweeperConf", ""),
]

# config field -> the Vertex API field it becomes (CustomJob / HyperparameterTuningJob, REST names)
VERTEX = {
    "project": "resource name `projects/{project}`", "location": "regional endpoint `{location}-aiplatform`",
    "machine_type": "`workerPoolSpecs[].machineSpec.machineType`",
    "accelerator_type": "`machineSpec.acceleratorType`", "accelerator_count": "`machineSpec.acceleratorCount`",
    "replica_count": "`workerPoolSpecs[].replicaCount` (chief 1, rest in workerpool1)",
    "boot_disk_type": "`diskSpec.bootDiskType`", "boot_disk_size_gb": "`diskSpec.bootDiskSizeGb`",
    "image_uri": "`containerSpec.imageUri`", "executor_image_uri": "`pythonPackageSpec.executorImageUri`",
    "requirements": "`pythonPackageSpec.packageUris` (a generated wheel)",
    "command": "`containerSpec.command`", "args": "`containerSpec.args`",
    "worker_pools": "`workerPoolSpecs[1..3]`",
    "service_account": "`jobSpec.serviceAccount`", "network": "`jobSpec.network`", "env": "`containerSpec.env`",
    "labels": "`labels`", "timeout_s": "`scheduling.timeout`",
    "restart_job_on_worker_restart": "`scheduling.restartJobOnWorkerRestart`", "strategy": "`scheduling.strategy`",
    "max_wait_duration_s": "`scheduling.maxWaitDuration`", "disable_retries": "`scheduling.disableRetries`",
    "base_output_dir": "`jobSpec.baseOutputDirectory`", "tensorboard": "`jobSpec.tensorboard`",
    "enable_web_access": "`jobSpec.enableWebAccess`", "metric_id": "`studySpec.metrics[0].metricId`",
    "goal": "`studySpec.metrics[0].goal`", "algorithm": "`studySpec.algorithm`",
    "max_trial_count": "`maxTrialCount`", "parallel_trial_count": "`parallelTrialCount`",
    "max_failed_trial_count": "`maxFailedTrialCount`", "measurement_selection": "`studySpec.measurementSelectionType`",
    "early_stopping": "`studySpec.medianAutomatedStoppingSpec` / `decayCurveStoppingSpec`",
    "params": "`studySpec.parameters`",
    "conditions": "`parameters[].conditionalParameterSpecs`", "resume": "an existing `hyperparameterTuningJobs/{id}`",
    "direction": "`studySpec.metrics[0].goal`", "n_trials": "`maxTrialCount`", "n_jobs": "`parallelTrialCount`",
    "sampler": "`studySpec.algorithm`",
}


def enums(tree: ast.Module) -> Dict[str, List[str]]:
    """Enum name -> its member names: the values a choice field accepts."""
    return {
        node.name: [t.id for stmt in node.body if isinstance(stmt, ast.Assign) for t in stmt.targets if isinstance(t, ast.Name)]
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "Enum" for b in node.bases)
    }


def choices(annotation: ast.expr, known: Dict[str, List[str]]) -> str:
    """` (one of a, b)` for an Enum-typed (or Optional[Enum]) field, else ''."""
    names = [n.id for n in ast.walk(annotation) if isinstance(n, ast.Name) and n.id in known]
    return f" (one of {', '.join(known[names[0]])})" if names else ""


def fields(tree: ast.Module, source: List[str]) -> Dict[str, List[Tuple[str, str, str]]]:
    """Dataclass name -> [(field, default, comment on the line above)], inherited fields first."""
    found: Dict[str, List[Tuple[str, str, str]]] = {}
    known = enums(tree)
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        rows = [row for base in node.bases if isinstance(base, ast.Name) for row in found.get(base.id, [])]
        for stmt in node.body:
            # `_target_` & co. and Hydra's `defaults` list are Hydra's machinery, not settings
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and not stmt.target.id.startswith("_") and stmt.target.id != "defaults"):
                comment = source[stmt.lineno - 2].strip().lstrip("# ") + choices(stmt.annotation, known)
                rows = [r for r in rows if r[0] != stmt.target.id] + [(stmt.target.id, default(stmt), comment)]
        found[node.name] = rows
    return found


def default(stmt: ast.AnnAssign) -> str:
    value = stmt.value
    if isinstance(value, ast.Call) and any(k.arg == "default_factory" for k in value.keywords):
        factory = next(k.value for k in value.keywords if k.arg == "default_factory")
        if isinstance(factory, ast.Name):
            return {"list": "[]", "dict": "{}"}.get(factory.id, "(see below)")
        return "(see config.py)"
    if isinstance(value, ast.Attribute):  # an Enum member: users write its name
        return value.attr
    return ast.unparse(value) if value is not None else "required"


def tables() -> Iterator[str]:
    source = CONFIG.read_text().splitlines()
    found = fields(ast.parse(CONFIG.read_text()), source)
    for name, prefix in SECTIONS:
        own = found[name] if not name.endswith(("LauncherConf", "SweeperConf")) else \
            found[name][len(found["VertexBackendConf"]):]
        yield f"\n`{name}`\n\n| key | default | meaning | Vertex AI |\n|---|---|---|---|"
        for field, value, comment in own:
            if field in ("job", "snapshot", "scheduling", "worker_pools") and name != "JobSpecConf" or (
                field == "scheduling"
            ):
                value = "(below)" if field != "worker_pools" else "[]"
            yield f"| `{prefix}{field}` | `{value}` | {comment} | {VERTEX.get(field, '')} |"


if __name__ == "__main__":
    sys.stdout.write("\n".join(tables()) + "\n")
