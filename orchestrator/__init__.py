"""rl-orchestrator: self-hosted reinforcement-learning jobs on Ray.

The Python API mirrors the `rlo` command line:

    from orchestrator import Estimator, load_spec
    run = Estimator.from_yaml("cluster_configs/local-cartpole.yaml").fit(wait=True)
    run.metrics(), run.checkpoints()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562), so that `import orchestrator.contract` inside a job loads the job's side only,
# not the submitting side (Estimator, submit, Serve client) with it.
_WHERE = {
    **dict.fromkeys(("EngineError", "JobFailed", "PlanError", "RloError", "SpecError", "UserError"), "errors"),
    "Estimator": "estimator",
    **dict.fromkeys(("Plan", "plan_env_runners", "plan_spec"), "planner"),
    **dict.fromkeys(("Run", "attach", "list_runs"), "run"),
    **dict.fromkeys(("PredictionError", "Predictor"), "predictor"),
    **dict.fromkeys(
        (
            "CheckpointConfig",
            "ClusterSpec",
            "HeadConfiguration",
            "JobSpec",
            "ScheduleSpec",
            "Spec",
            "WorkerConfiguration",
            "load_spec",
            "parse_spec",
        ),
        "spec",
    ),
}

if TYPE_CHECKING:
    from .errors import EngineError, JobFailed, PlanError, RloError, SpecError, UserError
    from .estimator import Estimator
    from .planner import Plan, plan_env_runners, plan_spec
    from .predictor import PredictionError, Predictor
    from .run import Run, attach, list_runs
    from .spec import (
        CheckpointConfig,
        ClusterSpec,
        HeadConfiguration,
        JobSpec,
        ScheduleSpec,
        Spec,
        WorkerConfiguration,
        load_spec,
        parse_spec,
    )


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "CheckpointConfig",
    "ClusterSpec",
    "EngineError",
    "Estimator",
    "HeadConfiguration",
    "JobFailed",
    "JobSpec",
    "Plan",
    "PlanError",
    "PredictionError",
    "Predictor",
    "RloError",
    "Run",
    "ScheduleSpec",
    "Spec",
    "SpecError",
    "UserError",
    "WorkerConfiguration",
    "attach",
    "list_runs",
    "load_spec",
    "parse_spec",
    "plan_env_runners",
    "plan_spec",
]
