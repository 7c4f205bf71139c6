"""Metric names: the ones RLlib's new API stack reports, and the legacy names the seeds use.

The seeds write stop criteria such as ``episode_reward_mean: 18`` (RLlib < 2.10). RLlib now reports
``env_runners/episode_return_mean``; a legacy name is accepted and mapped, with a notice.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import did_you_mean

RETURN_MEAN = "env_runners/episode_return_mean"
ENV_STEPS = "num_env_steps_sampled_lifetime"

#: Legacy name -> current name.
LEGACY: dict[str, str] = {
    "episode_reward_mean": RETURN_MEAN,
    "episode_reward_max": "env_runners/episode_return_max",
    "episode_reward_min": "env_runners/episode_return_min",
    "episode_len_mean": "env_runners/episode_len_mean",
    "episodes_total": "env_runners/num_episodes_lifetime",
    "timesteps_total": ENV_STEPS,
    "num_env_steps_sampled": ENV_STEPS,
    "agent_timesteps_total": "num_agent_steps_sampled_lifetime",
    "episode_return_mean": RETURN_MEAN,
    "evaluation/episode_reward_mean": "evaluation/env_runners/episode_return_mean",
}

#: Metrics every RLlib algorithm reports through Tune (the names stop criteria may use).
CURRENT: frozenset[str] = frozenset(
    {
        "training_iteration",
        "time_total_s",
        "time_this_iter_s",
        ENV_STEPS,
        "num_agent_steps_sampled_lifetime",
        "num_env_steps_trained_lifetime",
        RETURN_MEAN,
        "env_runners/episode_return_max",
        "env_runners/episode_return_min",
        "env_runners/episode_len_mean",
        "env_runners/num_episodes_lifetime",
        "env_runners/num_env_steps_sampled",
        "evaluation/env_runners/episode_return_mean",
    }
)

#: Metrics that rise over a run regardless of learning (stop when they reach the value).
MONOTONE = frozenset({"training_iteration", "time_total_s", ENV_STEPS, "env_runners/num_episodes_lifetime"})

#: Short labels for progress lines.
SHORT = {
    RETURN_MEAN: "return",
    "time_total_s": "time",
    "training_iteration": "iter",
    ENV_STEPS: "steps",
    "env_runners/num_episodes_lifetime": "episodes",
}


def normalize(name: str) -> tuple[str, str | None]:
    """(current name, notice or None). Raises KeyError with a hint when the name is unknown."""
    if name in CURRENT:
        return name, None
    if name in LEGACY:
        new = LEGACY[name]
        return new, f"stop criterion `{name}` is RLlib's legacy name; using `{new}`"
    hint = did_you_mean(name, sorted(CURRENT | set(LEGACY)))
    raise KeyError(hint or f"known metrics: {', '.join(sorted(CURRENT))}")


def lookup(result: dict, name: str):
    """Value of a `/`-separated metric in a (nested or flat) result dict, or None."""
    if name in result:
        return result[name]
    node = result
    for part in name.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl, in order; a line cut by a crash or still being written is skipped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
