"""Tune callback (runs in the driver): one JSONL record per iteration and one `[rlo:metrics]` log line."""

from __future__ import annotations

import json
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


def compact_result(result: dict) -> dict:
    rec = {"timestamp": time.time()}
    for key in KEEP:
        value = metrics.lookup(result, key)
        if value is not None:
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

    def __init__(self, run_dir: str | Path, stop: dict[str, float] | None = None) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stop = stop or {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = compact_result(result)
        rec["trial_id"] = trial.trial_id
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        events.emit("metrics", rec)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        last = trial.last_result or {}
        events.emit(
            "checkpoint",
            {
                "path": checkpoint.path,
                "iteration": last.get("training_iteration"),
                "metrics": {k: metrics.lookup(last, k) for k in (metrics.RETURN_MEAN, metrics.ENV_STEPS)},
            },
        )
