"""Tune callback (runs in the driver): one JSONL record per iteration and one `[rlo:metrics]` log line."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ray.tune import Callback

from orchestrator import events, metrics

# What a record keeps of RLlib's result (nested keys flattened with `/`). Small on purpose: the full result
# stays in Tune's own result.json / TensorBoard files.
KEEP = (
    "training_iteration",
    "time_total_s",
    "time_this_iter_s",
    metrics.ENV_STEPS,
    "num_env_steps_trained_lifetime",
    metrics.RETURN_MEAN,
    "env_runners/episode_return_min",
    "env_runners/episode_return_max",
    "env_runners/episode_len_mean",
    "env_runners/num_episodes_lifetime",
    "env_runners/num_env_steps_sampled",
    "evaluation/env_runners/episode_return_mean",
)


EPISODE_KEYS = (
    metrics.RETURN_MEAN,
    "env_runners/episode_return_min",
    "env_runners/episode_return_max",
    "env_runners/episode_len_mean",
)


def compact_result(result: dict, reward_scale: float = 1.0) -> dict:
    """The record kept per iteration. Returns are divided by `reward_scale` (rewards scaled for learning
    only), so every reported return is in the env's own units."""
    rec = {"timestamp": time.time()}
    for key in KEEP:
        value = metrics.lookup(result, key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):  # RLlib's "no episode yet"
            if reward_scale != 1.0 and "episode_return" in key and isinstance(value, int | float):
                value = value / reward_scale
            rec[key] = value
    learners = result.get("learners") or {}
    for module, stats in learners.items():
        if isinstance(stats, dict):
            for k in ("total_loss", "policy_loss", "vf_loss", "entropy", "mean_kl_loss"):
                if k in stats:
                    rec[f"learners/{module}/{k}"] = stats[k]
    return events._clean(rec)


class MetricsLogger(Callback):
    """Writes `metrics.jsonl` in the run's folder and prints one structured line per iteration."""

    def __init__(self, run_dir: str | Path, reward_scale: float = 1.0) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.reward_scale = reward_scale
        self._last_episode_stats: dict = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = compact_result(result, self.reward_scale)
        # RLlib reports episode statistics only in iterations where an episode ended (long episodes span
        # several iterations). Like RLlib's old stack, keep the last window's values until new ones arrive.
        held = self._last_episode_stats.setdefault(trial.trial_id, {})  # per trial (a sweep runs several)
        for key in EPISODE_KEYS:
            if key not in rec and key in held:
                rec[key] = held[key]
        held.update({k: rec[k] for k in EPISODE_KEYS if k in rec})
        rec["trial_id"] = trial.trial_id
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        events.emit("metrics", rec)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        last = compact_result(trial.last_result or {}, self.reward_scale)
        events.emit(
            "checkpoint",
            {
                "path": checkpoint.path,
                "iteration": last.get("training_iteration"),
                "trial_id": trial.trial_id,
                "metrics": {k: last.get(k) for k in (metrics.RETURN_MEAN, metrics.ENV_STEPS)},
            },
        )
