"""Tune callback (runs in the driver): one JSONL record per iteration and one `[rlo:metrics]` log line."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ray.tune import Callback

from orchestrator import events, metrics
from orchestrator.metrics import read_records

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
    # Fault tolerance: env runners alive and restarted so far (an env runner killed mid-training shows here).
    "fault_tolerance/num_healthy_workers",
    "fault_tolerance/num_remote_worker_restarts",
    # `on_node_loss: wait`: how long training paused after this iteration for a replacement node.
    "rlo/replacement_wait_s",
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
        self._scan()

    def _scan(self) -> None:
        # A resumed run (`rlo resume`) appends to the same file: the iteration each trial's records reach.
        self._reached: dict[str, int] = {}
        if self.path.exists():
            for rec in read_records(self.path):
                t, i = rec.get("trial_id"), rec.get("training_iteration")
                if t is not None and isinstance(i, int):
                    self._reached[t] = max(i, self._reached.get(t, 0))

    def __setstate__(self, state: dict) -> None:
        # Tune restores its callbacks from the experiment's state: read what the file holds now.
        self.__dict__.update(state)
        self._scan()

    def _drop_redone(self, trial_id: str, iteration: int) -> None:
        """A resumed trial restarts after its checkpoint: the records it is about to redo (those after the
        checkpoint, written before the crash) move to metrics.redone.jsonl, so metrics.jsonl has each iteration once."""
        keep: list[dict] = []
        redone: list[dict] = []
        for rec in read_records(self.path):
            late = rec.get("trial_id") == trial_id and (rec.get("training_iteration") or 0) >= iteration
            (redone if late else keep).append(rec)
        with (self.path.parent / "metrics.redone.jsonl").open("a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in redone)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        tmp.replace(self.path)

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
        it = rec.get("training_iteration")
        if isinstance(it, int) and it <= self._reached.get(trial.trial_id, 0):
            self._drop_redone(trial.trial_id, it)
        if isinstance(it, int):
            self._reached[trial.trial_id] = it
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
