"""Rule-based autoscalers to measure RL policies against, and the search that tunes them.

Every policy reads only the observation, the same input as the RL policy: the last minute's load is
``obs[0] * max_tpm`` (the rate-1 moving average is the raw signal), the active fleet ``obs[3] *
max_machines``, and the machines warming up ``obs[20:25] * max_action``. It returns an int array (n, 2) of
(turn on, turn off). Parameters may be scalars or per-env arrays of shape (n,); the tuner uses the latter to
try many settings in one batched run.

- :class:`StaticFleet`: reach ``machines`` machines, then hold.
- :class:`StepScaling`: CloudWatch-alarm style: when utilisation (load / capacity of the active fleet) is
  above ``high``, add ``step_out`` machines; below ``low``, remove ``step_in``; then wait ``cooldown``
  minutes.
- :class:`TargetTracking`: AWS target tracking: keep utilisation at ``target_utilization``, counting machines
  still warming up (so it does not order them twice), never below ``min_machines``; scale in only
  ``scale_in_cooldown`` minutes after the last scale-out.

The shipped defaults (``TUNED``) come from :func:`tune_baseline` on training seeds; rerun with
``python benchmarks/tune_baselines.py`` (or ``python -m orchestrator.autoscale.baselines --tune``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from orchestrator.autoscale.config import EMA_RATES, SIGNALS, AutoScaleConfig
from orchestrator.autoscale.evaluation import EVAL_SEEDS, TRAIN_SEEDS, evaluate, run_episodes

# Tuned by random search on TRAIN_SEEDS[:32] (default env config: 10,000-minute episodes), objective mean
# profit per episode; reproduce with
#   python benchmarks/tune_baselines.py
# (= python -m orchestrator.autoscale.baselines --tune --episodes 32 --candidates 96 --rounds 2
#    --search-seed 0)
# Training profit (mean of 32 episodes): static 20,474; step_scaling 27,374; target_tracking 27,517 $/episode.
# On EVAL_SEEDS[:200]: static 20,310; step_scaling 28,273; target_tracking 28,447 $/episode (95% CIs +-400).
TUNED: dict[str, dict[str, float]] = {
    "static": {"machines": 38},
    "step_scaling": {
        "high": 0.707,
        "low": 0.547,
        "step_out": 2,
        "step_in": 2,
        "cooldown": 2,
        "min_machines": 14,
    },
    "target_tracking": {"target_utilization": 0.654, "min_machines": 14, "scale_in_cooldown": 10},
}


@dataclass(frozen=True)
class FleetView:
    """What a rule-based autoscaler reads out of a batch of observations (arrays of shape (n,))."""

    load: np.ndarray  # transactions in the last minute
    active: np.ndarray  # machines serving
    warming: np.ndarray  # machines turned on, not yet serving
    queue: np.ndarray  # (n, warmup_latency) of them by slot: slot j joins the fleet in the coming step + j
    failed_fraction: np.ndarray
    is_down: np.ndarray


def decode_observation(obs: np.ndarray, config: AutoScaleConfig) -> FleetView:
    """Undo the observation's scaling (float32 rounding is far below 1 machine / 1 transaction)."""
    obs = np.asarray(obs, dtype=np.float64)
    start = len(EMA_RATES) * len(SIGNALS)  # the warm-up queue; extra_features, if any, come after it
    queue = np.rint(obs[:, start : start + config.warmup_latency] * config.max_action).astype(np.int64)
    return FleetView(
        load=np.rint(obs[:, 0] * config.max_tpm),
        active=np.rint(obs[:, 3] * config.resolved_max_machines).astype(np.int64),
        warming=queue.sum(axis=1),
        queue=queue,
        failed_fraction=obs[:, 1],
        is_down=obs[:, 2],
    )


class Baseline:
    """Base of the rule-based policies: parameter handling, observation decoding, per-env state."""

    name: ClassVar[str]
    is_baseline: ClassVar[bool] = True
    # name -> (low, high, is_integer): the tuner's search space
    search_space: ClassVar[dict[str, tuple[float, float, bool]]]

    def __init__(self, env_config: Mapping[str, Any] | AutoScaleConfig | None = None, **params: Any) -> None:
        self.config = AutoScaleConfig.from_mapping(env_config)
        defaults = TUNED[self.name]
        unknown = set(params) - set(defaults)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no parameter(s) {sorted(unknown)}; it takes {sorted(defaults)}"
            )
        self.params = {k: np.asarray(params.get(k, v), dtype=float) for k, v in defaults.items()}
        self._n = 0

    def reset(self, num_envs: int) -> None:
        """Forget per-env state (cooldowns); called by the evaluation before each batch of episodes."""
        self._n = num_envs
        self._since_out = np.full(num_envs, 10**9)
        self._since_any = np.full(num_envs, 10**9)

    def act(self, obs: np.ndarray, info: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        if len(obs) != self._n:
            self.reset(len(obs))
        view = decode_observation(obs, self.config)
        on, off = self._decide(view)
        m = self.config.max_action
        on = np.clip(on, 0, m).astype(np.int64)
        # Only serving machines can be turned off (asking for more would be cut at 0 by the env anyway).
        off = np.clip(np.minimum(off, view.active), 0, m).astype(np.int64)
        self._since_out = np.where(on > 0, 0, self._since_out + 1)
        self._since_any = np.where((on > 0) | (off > 0), 0, self._since_any + 1)
        return np.stack([on, off], axis=1)

    def _decide(self, view: FleetView) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = {k: (v.item() if v.ndim == 0 else f"<{v.size} values>") for k, v in self.params.items()}
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in shown.items())})"


class StaticFleet(Baseline):
    """Hold a fixed fleet of ``machines`` (turn on or off at most ``max_action`` a minute to get there)."""

    name = "static"
    search_space = {"machines": (10, 120, True)}

    def _decide(self, view: FleetView) -> tuple[np.ndarray, np.ndarray]:
        total = view.active + view.warming
        target = self.params["machines"]
        return target - total, total - target


class StepScaling(Baseline):
    """Scale out by ``step_out`` when utilisation > ``high``, in by ``step_in`` when < ``low``, then wait
    ``cooldown`` minutes; keep at least ``min_machines``."""

    name = "step_scaling"
    search_space = {
        "high": (0.3, 0.95, False),
        "low": (0.05, 0.6, False),
        "step_out": (1, 10, True),
        "step_in": (1, 10, True),
        "cooldown": (0, 15, True),
        "min_machines": (0, 40, True),
    }

    def _decide(self, view: FleetView) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        capacity = np.maximum(view.active, 1) * self.config.tpm_per_machine
        utilisation = view.load / capacity
        ready = self._since_any >= p["cooldown"]
        total = view.active + view.warming
        floor = np.maximum(p["min_machines"] - total, 0)
        on = np.where(ready & (utilisation > p["high"]), p["step_out"], 0.0)
        on = np.maximum(on, floor)
        room = np.maximum(view.active - p["min_machines"], 0)
        off = np.where(ready & (utilisation < p["low"]) & (on == 0), np.minimum(p["step_in"], room), 0.0)
        return on, off


class TargetTracking(Baseline):
    """Keep load / (machines x tpm_per_machine) at ``target_utilization``, counting warming machines; at least
    ``min_machines``; scale in only ``scale_in_cooldown`` minutes after the last scale-out."""

    name = "target_tracking"
    search_space = {
        "target_utilization": (0.3, 0.9, False),
        "min_machines": (0, 40, True),
        "scale_in_cooldown": (0, 60, True),
    }

    def _decide(self, view: FleetView) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        desired = np.ceil(view.load / (self.config.tpm_per_machine * p["target_utilization"]))
        desired = np.minimum(np.maximum(desired, p["min_machines"]), self.config.resolved_max_machines)
        total = view.active + view.warming
        on = desired - total
        may_scale_in = (self._since_out >= p["scale_in_cooldown"]) & (on <= 0)
        off = np.where(may_scale_in, total - desired, 0.0)
        return on, off


BASELINES: dict[str, type[Baseline]] = {c.name: c for c in (StaticFleet, StepScaling, TargetTracking)}


def make_baseline(name: str, env_config: Mapping[str, Any] | AutoScaleConfig | None = None, **params: Any) -> Baseline:
    """A baseline by name (``static``, ``step_scaling``, ``target_tracking``) with tuned defaults."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](env_config, **params)


def default_baselines(env_config: Mapping[str, Any] | AutoScaleConfig | None = None) -> dict[str, Baseline]:
    """All baselines with their tuned parameters, keyed by name (ready for :func:`evaluate`)."""
    return {name: cls(env_config) for name, cls in BASELINES.items()}


# -- tuning ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuneResult:
    """Best parameters of one baseline and how every candidate scored (mean profit on the training seeds)."""

    name: str
    params: dict[str, float]
    mean_profit: float
    mean_downtime: float
    seeds: list[int]
    candidates: list[tuple[dict[str, float], float]]  # (params, mean profit), best first


def _sample(space: Mapping[str, tuple[float, float, bool]], rng: np.random.Generator) -> dict[str, float]:
    out = {}
    for key, (low, high, is_int) in space.items():
        out[key] = float(rng.integers(int(low), int(high) + 1)) if is_int else round(float(rng.uniform(low, high)), 3)
    return out


def _perturb(
    params: Mapping[str, float],
    space: Mapping[str, tuple[float, float, bool]],
    rng: np.random.Generator,
    scale: float,
) -> dict[str, float]:
    out = {}
    for key, (low, high, is_int) in space.items():
        step = (high - low) * scale
        value = params[key] + rng.normal(0, step)
        value = float(np.clip(round(value) if is_int else round(value, 3), low, high))
        out[key] = value
    return out


def _score(
    name: str, candidates: list[dict[str, float]], seeds: list[int], config: AutoScaleConfig, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean profit and downtime of each candidate: all candidates x seeds play in one batched run."""
    keys = list(candidates[0])
    per_env = {k: np.repeat([c[k] for c in candidates], len(seeds)) for k in keys}
    policy = BASELINES[name](config, **per_env)
    # Parameters are per env, so the whole grid must fit in one batch (the policy's arrays have that length).
    metrics = run_episodes(policy, seeds * len(candidates), config, batch_size=max(batch_size, len(per_env[keys[0]])))
    profit = metrics["profit"].reshape(len(candidates), len(seeds)).mean(axis=1)
    downtime = metrics["downtime_minutes"].reshape(len(candidates), len(seeds)).mean(axis=1)
    return profit, downtime


def tune_baseline(
    name: str,
    seeds: Sequence[int] | None = None,
    episodes: int = 32,
    *,
    candidates: int = 96,
    rounds: int = 2,
    search_seed: int = 0,
    env_config: Mapping[str, Any] | AutoScaleConfig | None = None,
    batch_size: int = 1024,
) -> TuneResult:
    """Random search, then ``rounds`` of local refinement around the best four, for one baseline.

    A baseline with a single integer parameter (static fleet) is searched exhaustively instead.
    Scores are mean profit per episode on ``seeds`` (default: the first ``episodes`` of
    :data:`TRAIN_SEEDS`); every candidate plays the same seeds. Evaluation seeds are refused, so a tuned
    baseline is never reported on the episodes it was tuned on.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    seeds = [int(s) for s in (seeds if seeds is not None else TRAIN_SEEDS[:episodes])]
    overlap = [s for s in seeds if s in EVAL_SEEDS]
    if overlap:
        raise ValueError(
            f"tuning seeds {overlap[:5]} are evaluation seeds ({EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}); "
            "tune on TRAIN_SEEDS so the evaluation stays held out"
        )
    config = AutoScaleConfig.from_mapping(env_config)
    space = BASELINES[name].search_space
    rng = np.random.default_rng(search_seed)
    if len(space) == 1:  # one integer parameter: try every value
        ((key, (low, high, _)),) = space.items()
        first = [{key: float(v)} for v in range(int(low), int(high) + 1)]
    else:
        # The shipped TUNED values are not seeded into the search, so a rerun depends only on its arguments.
        first = [_sample(space, rng) for _ in range(candidates)]
    first = [{k: float(v) for k, v in c.items()} for c in first]
    profit, downtime = _score(name, first, seeds, config, batch_size)
    scored = list(zip(first, profit.tolist(), downtime.tolist(), strict=True))
    for r in range(rounds if len(space) > 1 else 0):
        top = sorted(scored, key=lambda s: -s[1])[:4]
        scale = 0.1 / (r + 1)  # narrower each round
        local = [_perturb(p, space, rng, scale) for p, _, _ in top for _ in range(max(candidates // 8, 1))]
        profit2, downtime2 = _score(name, local, seeds, config, batch_size)
        scored += list(zip(local, profit2.tolist(), downtime2.tolist(), strict=True))
    scored.sort(key=lambda s: -s[1])
    best, best_profit, best_downtime = scored[0]
    clean = {k: (int(v) if space[k][2] else v) for k, v in best.items()}
    return TuneResult(name, clean, best_profit, best_downtime, seeds, [(p, s) for p, s, _ in scored])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orchestrator.autoscale.baselines --tune``: rerun the search, print the tuned parameters,
    and (with ``--eval-episodes``) their profit on evaluation seeds."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.autoscale.baselines", description=main.__doc__)
    parser.add_argument("--tune", action="store_true", help="run the search (otherwise just print TUNED)")
    parser.add_argument("--baseline", action="append", choices=sorted(BASELINES), help="default: all")
    parser.add_argument("--episodes", type=int, default=32, help="training seeds (episodes) per candidate")
    parser.add_argument("--candidates", type=int, default=96, help="random candidates in the first round")
    parser.add_argument("--rounds", type=int, default=2, help="local refinement rounds after the random one")
    parser.add_argument("--search-seed", type=int, default=0)
    parser.add_argument("--max-time-steps", type=int, default=None, help="episode length (default: env's)")
    parser.add_argument("--eval-episodes", type=int, default=0, help="then evaluate on this many eval seeds")
    args = parser.parse_args(argv)
    env_config = {} if args.max_time_steps is None else {"max_time_steps": args.max_time_steps}
    names = args.baseline or list(BASELINES)
    params = {n: dict(TUNED[n]) for n in names}
    if args.tune:
        for n in names:
            t0 = time.perf_counter()
            result = tune_baseline(
                n,
                episodes=args.episodes,
                candidates=args.candidates,
                rounds=args.rounds,
                search_seed=args.search_seed,
                env_config=env_config,
            )
            params[n] = result.params
            print(
                f"{n}: {result.params}  mean training profit {result.mean_profit:,.0f} $/episode, "
                f"downtime {result.mean_downtime:.1f} min/episode  ({len(result.candidates)} candidates x "
                f"{len(result.seeds)} seeds, {time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        print("TUNED = {")
        for n in names:
            print(f"    {n!r}: {params[n]!r},")
        print("}")
    else:
        for n in names:
            print(f"{n}: {params[n]}")
    if args.eval_episodes:
        policies = {n: BASELINES[n](env_config, **params[n]) for n in names}
        print(evaluate(policies, episodes=args.eval_episodes, env_config=env_config).to_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
