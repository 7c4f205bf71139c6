"""The auto-scaling simulator of SageMaker RL's "predictive auto-scaling" example, for Gymnasium/RLlib.

Importing this package registers the Gymnasium id ``rlo/AutoScale-v0`` (scalar env
:class:`AutoScaleEnv`; ``gymnasium.make_vec`` builds the NumPy-batched :class:`AutoScaleVectorEnv`).

- :mod:`.env` — one env (dynamics, reward, observation, the choices made where the reference left room)
- :mod:`.batched` — N envs at once, equal step for step to N scalar envs
- :mod:`.load` — the load simulator
- :mod:`.baselines` — rule-based autoscalers (static fleet, step scaling, target tracking) and their tuning
- :mod:`.ceiling` — the clairvoyant reference (reads the future load; not deployable): the headroom above the rules
- :mod:`.evaluation` — one evaluation path for baselines and RL policies, with confidence intervals
- :mod:`.plot` — the load-profile figure
"""

from __future__ import annotations

import gymnasium as gym

from orchestrator.autoscale.baselines import (
    TUNED,
    StaticFleet,
    StepScaling,
    TargetTracking,
    default_baselines,
    make_baseline,
    tune_baseline,
)
from orchestrator.autoscale.batched import AutoScaleVectorEnv, BatchedAutoScale
from orchestrator.autoscale.ceiling import TUNED_CEILING, Clairvoyant, default_references, tune_ceiling
from orchestrator.autoscale.config import AutoScaleConfig, AutoScaleConfigError
from orchestrator.autoscale.env import AutoScaleEnv, InvalidActionError
from orchestrator.autoscale.evaluation import (
    EVAL_SEEDS,
    TRAIN_SEEDS,
    EvaluationReport,
    evaluate,
    run_episodes,
)
from orchestrator.autoscale.load import BatchedLoadSimulator, LoadSimulator
from orchestrator.autoscale.plot import plot_load_profile

ENV_ID = "rlo/AutoScale-v0"


def register_env() -> None:
    """Register ``rlo/AutoScale-v0`` with Gymnasium; safe to call more than once."""
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="orchestrator.autoscale.env:AutoScaleEnv",
            vector_entry_point="orchestrator.autoscale.batched:AutoScaleVectorEnv",
        )


register_env()

__all__ = [
    "ENV_ID",
    "EVAL_SEEDS",
    "TRAIN_SEEDS",
    "TUNED",
    "TUNED_CEILING",
    "AutoScaleConfig",
    "AutoScaleConfigError",
    "AutoScaleEnv",
    "AutoScaleVectorEnv",
    "BatchedAutoScale",
    "BatchedLoadSimulator",
    "Clairvoyant",
    "EvaluationReport",
    "InvalidActionError",
    "LoadSimulator",
    "StaticFleet",
    "StepScaling",
    "TargetTracking",
    "default_baselines",
    "default_references",
    "evaluate",
    "make_baseline",
    "plot_load_profile",
    "register_env",
    "run_episodes",
    "tune_baseline",
    "tune_ceiling",
]
