"""rl-orchestrator: self-hosted reinforcement-learning jobs on Ray.

The Python API mirrors the `rlo` command line:

    from orchestrator import Estimator, load_spec
    run = Estimator.from_yaml("cluster_configs/local-cartpole.yaml").fit(wait=True)
    run.metrics(), run.checkpoints()
"""

from .errors import EngineError, JobFailed, PlanError, RloError, SpecError, UserError
from .estimator import Estimator
from .planner import Plan, plan_env_runners, plan_spec
from .run import Run, attach, list_runs
from .serving import PredictionError, Predictor
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
