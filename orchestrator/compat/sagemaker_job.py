"""Job-side parts of the SageMaker launcher that import Ray Tune at import time (kept out of
`orchestrator.compat.sagemaker`, which the submitting side imports)."""

from __future__ import annotations

from ray.tune import Callback

from .. import metrics

# Ray 1.x result names, in the order its `pretty_print` showed them.
LEGACY_LINES = (
    "training_iteration",
    "timesteps_total",
    "episodes_total",
    "episode_reward_mean",
    "episode_reward_max",
    "episode_reward_min",
    "episode_len_mean",
)


class LegacyResultLines(Callback):
    """Prints Ray 1.x's result names (`episode_reward_mean: 21.0`) once per iteration, as SageMaker's Ray images
    logged them, so that the users' `metric_definitions` regexes find their values in the job's log."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        for line in legacy_lines(result):
            print(line, flush=True)


def legacy_lines(result: dict) -> list[str]:
    out = []
    for name in LEGACY_LINES:
        value = metrics.lookup(result, metrics.LEGACY.get(name, name))
        if isinstance(value, int | float) and not isinstance(value, bool) and value == value:  # not NaN
            out.append(f"{name}: {value}")
    return out
