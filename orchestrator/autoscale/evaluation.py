"""One evaluation path for every auto-scaling policy: rule-based baselines and trained RL policies alike.

A policy is anything with ``act(obs_batch, info=None) -> actions`` (obs float32 (n, 25), actions int (n, 2));
an optional ``reset(num_envs)`` is called before each batch of episodes. Each episode is identified by a
seed; every policy plays the same seeds, so a policy and a baseline see the same load profiles and the same
capacity draws (the capacity stream does not depend on actions). Their per-seed profit differences are
therefore paired, and the paired confidence interval is much tighter than comparing two means.

Seeds for tuning and for evaluation are disjoint ranges (:data:`TRAIN_SEEDS`, :data:`EVAL_SEEDS`): tune and
train on the first, report on the second.

Example::

    from orchestrator.autoscale.baselines import TargetTracking, StaticFleet
    policies = {"static": StaticFleet(), "target": TargetTracking(), "ppo": my_rl_policy}
    report = evaluate(policies, episodes=100)
    print(report.to_table())
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from orchestrator.autoscale.batched import BatchedAutoScale
from orchestrator.autoscale.config import AutoScaleConfig

# Seeds 0..9999 for tuning baselines and training; 1,000,000.. for evaluation. Training code that seeds envs
# with small integers (worker index, config.seed + i) stays in the first range.
TRAIN_SEEDS = range(0, 10_000)
EVAL_SEEDS = range(1_000_000, 1_010_000)

METRICS: tuple[str, ...] = (
    "profit",
    "downtime_minutes",
    "machine_minutes",
    "failed_transactions",
    "mean_fleet",
)
_METRIC_LABELS = {
    "profit": "profit $",
    "downtime_minutes": "downtime min",
    "machine_minutes": "machine-min",
    "failed_transactions": "failed tx",
    "mean_fleet": "mean fleet",
}
# Metrics that cannot be negative: their intervals' lower bounds are clipped at 0 (a t interval around a mean of
# rare events, such as 0.4 downtime minutes, would otherwise reach below what any episode can have).
NON_NEGATIVE = frozenset({"downtime_minutes", "machine_minutes", "failed_transactions", "mean_fleet"})


@runtime_checkable
class Policy(Protocol):
    """What :func:`evaluate` needs of a policy."""

    def act(self, obs: np.ndarray, info: Mapping[str, np.ndarray] | None = None) -> np.ndarray: ...


class _SeesFutureLoad(Protocol):
    """A policy that says ``sees_future_load = True`` (the clairvoyant reference) takes the episode's future."""

    def see_future_load(self, loads: np.ndarray) -> None: ...


def run_episodes(
    policy: Policy,
    seeds: Sequence[int],
    env_config: Mapping[str, Any] | AutoScaleConfig | None = None,
    *,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Play one full episode per seed with the batched env; per-episode metrics, in seed order.

    Metrics: ``profit`` (sum of rewards, $), ``downtime_minutes``, ``machine_minutes`` (sum of active
    machines over the minutes), ``failed_transactions``, ``mean_fleet`` (machine-minutes / minutes).
    """
    config = AutoScaleConfig.from_mapping(env_config)
    seeds = [int(s) for s in seeds]
    steps = config.max_time_steps + 1
    out = {m: np.empty(len(seeds)) for m in METRICS}
    for start in range(0, len(seeds), batch_size):
        chunk = seeds[start : start + batch_size]
        env = BatchedAutoScale(len(chunk), config, autoreset_mode="disabled")
        obs, info = env.reset(seed=chunk)
        reset = getattr(policy, "reset", None)  # optional (see the module docstring)
        if callable(reset):
            reset(len(chunk))
        if getattr(policy, "sees_future_load", False):  # the clairvoyant reference (orchestrator.autoscale.ceiling)
            cast(_SeesFutureLoad, policy).see_future_load(future_load(chunk, config))
        profit = np.zeros(len(chunk))
        downtime = np.zeros(len(chunk))  # whole numbers in float64, like the env's counts
        machine_minutes = np.zeros(len(chunk))
        failed = np.zeros(len(chunk))
        for _ in range(steps):
            obs, reward, _, truncated, info = env.step(policy.act(obs, info))
            profit += reward
            downtime += info["is_down"]
            machine_minutes += info["active_machines"]
            failed += info["failed"]
        if not truncated.all():  # the env's contract; a silent mismatch would skew every metric
            raise RuntimeError("episodes did not end after max_time_steps + 1 steps")
        part = slice(start, start + len(chunk))
        out["profit"][part] = profit
        out["downtime_minutes"][part] = downtime
        out["machine_minutes"][part] = machine_minutes
        out["failed_transactions"][part] = failed
        out["mean_fleet"][part] = machine_minutes / steps
    return out


def future_load(seeds: Sequence[int], env_config: Mapping[str, Any] | AutoScaleConfig | None = None) -> np.ndarray:
    """The load of every minute of each seed's episode, (max_time_steps + 1, len(seeds)): row i is minute i + 1.
    The load process draws from its own random streams, whatever the actions, so idle episodes give it exactly."""
    config = AutoScaleConfig.from_mapping(env_config)
    env = BatchedAutoScale(len(seeds), config, autoreset_mode="disabled")
    env.reset(seed=[int(s) for s in seeds])
    idle = np.zeros((len(seeds), 2), dtype=np.int64)
    return np.stack([env.step(idle)[4]["load"].copy() for _ in range(config.max_time_steps + 1)])


# -- statistics ------------------------------------------------------------------------------------------

# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30 (from scipy.stats.t.ppf).
# fmt: off
_T975 = (
    12.706204736, 4.30265273, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252, 2.306004135,
    2.262157163, 2.228138852, 2.20098516, 2.17881283, 2.160368656, 2.144786688, 2.131449546, 2.119905299,
    2.109815578, 2.10092204, 2.093024054, 2.085963447, 2.079613845, 2.073873068, 2.06865761, 2.063898562,
    2.059538553, 2.055529439, 2.051830516, 2.048407142, 2.045229642, 2.042272456,
)
# fmt: on


def t_quantile_975(df: int) -> float:
    """t(0.975, df): a table up to 30 degrees of freedom, Cornish-Fisher expansion beyond (error < 1e-6)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1; got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * df**4)
    )


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` episodes with its 95% t confidence interval (``low``/``high`` None when n < 2)."""

    mean: float
    low: float | None
    high: float | None
    std: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float] | np.ndarray, floor: float | None = None) -> Interval:
        """The mean of `samples` and its 95% t interval; `floor`: the least the quantity can be (the interval's
        lower bound is clipped there)."""
        x = np.asarray(samples, dtype=float)
        n = int(x.size)
        if n == 0:
            raise ValueError("no samples")
        mean = float(x.mean())
        if n < 2:
            return cls(mean, None, None, 0.0, n)
        std = float(x.std(ddof=1))
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        low = mean - half if floor is None else max(mean - half, floor)
        return cls(mean, low, mean + half, std, n)

    @classmethod
    def ratio(cls, numerator: Sequence[float] | np.ndarray, denominator: Sequence[float] | np.ndarray) -> Interval:
        """mean(numerator) / mean(denominator) of paired samples, with the delta method's 95% interval (the
        residuals numerator - ratio * denominator carry the variance of both and their covariance)."""
        x, y = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
        n, mean_y = int(x.size), float(y.mean())
        if mean_y == 0:
            return cls(math.nan, None, None, math.nan, n)
        r = float(x.mean()) / mean_y
        if n < 2:
            return cls(r, None, None, 0.0, n)
        std = float((x - r * y).std(ddof=1)) / abs(mean_y)
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        return cls(r, r - half, r + half, std, n)

    def scaled(self, factor: float) -> Interval:
        low: float | None
        high: float | None
        if self.low is None:
            low, high = None, None
        else:
            assert self.high is not None, "an interval has both bounds or neither"
            low, high = sorted((self.low * factor, self.high * factor))
        return Interval(self.mean * factor, low, high, self.std * abs(factor), self.n)

    def format(self, digits: int = 0, signed: bool = False) -> str:
        f = f"{{:{'+' if signed else ''},.{digits}f}}"
        if self.low is None:
            return f.format(self.mean)
        return f"{f.format(self.mean)} [{f.format(self.low)}, {f.format(self.high)}]"


@dataclass(frozen=True)
class Comparison:
    """A policy against the best baseline on the same seeds (paired differences, policy minus baseline)."""

    policy: str
    baseline: str
    profit_diff: Interval
    profit_diff_percent: Interval  # relative to |baseline mean profit|, baseline mean treated as exact
    downtime_diff: Interval
    no_more_downtime: bool  # mean downtime minutes of the policy <= the baseline's
    # (policy - baseline) / (ceiling - baseline) in profit, paired by seed: the share of the headroom between the
    # best rule and the clairvoyant reference that the policy captures (None without a reference)
    ceiling: str | None = None
    headroom_share: Interval | None = None


@dataclass
class EvaluationReport:
    """Per-policy means with 95% CIs, the best baseline by profit, and paired comparisons against it; with a
    reference (the clairvoyant planner, not deployable), each policy's share of the headroom up to it."""

    env_config: dict[str, Any]
    seeds: list[int]
    baselines: list[str]
    episodes: dict[str, dict[str, list[float]]]  # policy -> metric -> one value per seed
    references: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, Interval]] = field(init=False)
    best_baseline: str | None = field(init=False)
    ceiling: str | None = field(init=False)  # the best reference by profit
    comparisons: dict[str, Comparison] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = {
            name: {m: Interval.of(values[m], floor=0.0 if m in NON_NEGATIVE else None) for m in METRICS}
            for name, values in self.episodes.items()
        }
        self.best_baseline = max(self.baselines, key=lambda b: self.summary[b]["profit"].mean, default=None)
        self.ceiling = max(self.references, key=lambda b: self.summary[b]["profit"].mean, default=None)
        self.comparisons = {}
        if self.best_baseline is None:
            return
        base = self.episodes[self.best_baseline]
        base_profit = self.summary[self.best_baseline]["profit"].mean
        headroom = None if self.ceiling is None else np.subtract(self.episodes[self.ceiling]["profit"], base["profit"])
        for name, values in self.episodes.items():
            if name in self.baselines or name in self.references:
                continue
            diff_samples = np.subtract(values["profit"], base["profit"])
            diff = Interval.of(diff_samples)
            down = Interval.of(np.subtract(values["downtime_minutes"], base["downtime_minutes"]))
            self.comparisons[name] = Comparison(
                policy=name,
                baseline=self.best_baseline,
                profit_diff=diff,
                profit_diff_percent=diff.scaled(100.0 / abs(base_profit)) if base_profit else diff.scaled(math.nan),
                downtime_diff=down,
                no_more_downtime=down.mean <= 0,
                ceiling=self.ceiling,
                headroom_share=None if headroom is None else Interval.ratio(diff_samples, headroom),
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_config": self.env_config,
            "seeds": self.seeds,
            "baselines": self.baselines,
            "references": self.references,
            "best_baseline": self.best_baseline,
            "ceiling": self.ceiling,
            "summary": {n: {m: asdict(i) for m, i in s.items()} for n, s in self.summary.items()},
            "comparisons": {n: asdict(c) for n, c in self.comparisons.items()},
            "episodes": self.episodes,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_table(self) -> str:
        """A plain-text table: one row per policy, means and 95% CIs per episode, then the comparisons."""
        n = len(self.seeds)
        minutes = self.env_config["max_time_steps"]
        header = ["policy", *(_METRIC_LABELS[m] for m in METRICS)]
        rows = []
        for name, s in self.summary.items():
            mark = " (baseline)" if name in self.baselines else ""
            mark = " (reference, not deployable)" if name in self.references else mark
            rows.append(
                [
                    name + mark,
                    s["profit"].format(0),
                    s["downtime_minutes"].format(1),
                    s["machine_minutes"].format(0),
                    s["failed_transactions"].format(0),
                    s["mean_fleet"].format(1),
                ]
            )
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            f"{n} episodes of {minutes:,} minutes (max_time_steps) per policy, the same seeds for all; mean per "
            "episode [95% CI]",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        ]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        if self.best_baseline:
            lines.append(f"best baseline by profit: {self.best_baseline}")
        if self.best_baseline and self.ceiling:
            room = self.summary[self.ceiling]["profit"].mean - self.summary[self.best_baseline]["profit"].mean
            lines.append(
                f"headroom: {self.ceiling} (knows every future minute's load) earns {room:+,.0f} $/episode over "
                f"{self.best_baseline}"
            )
        for c in self.comparisons.values():
            verdict = "no more downtime" if c.no_more_downtime else "MORE downtime"
            lines.append(
                f"{c.policy} vs {c.baseline}: profit {c.profit_diff.format(0, signed=True)} $/episode "
                f"({c.profit_diff_percent.format(1, signed=True)} %), downtime "
                f"{c.downtime_diff.format(1, signed=True)} min/episode: {verdict}"
            )
            if c.headroom_share is not None:
                lines.append(
                    f"{c.policy} captures {c.headroom_share.scaled(100).format(0, signed=True)} % of the headroom "
                    f"(0 % = {c.baseline}, 100 % = {c.ceiling})"
                )
        return "\n".join(lines)


def evaluate(
    policies: Mapping[str, Policy],
    seeds: Sequence[int] | None = None,
    *,
    episodes: int | None = None,
    env_config: Mapping[str, Any] | AutoScaleConfig | None = None,
    baselines: Sequence[str] | None = None,
    references: Sequence[str] | None = None,
    batch_size: int = 256,
) -> EvaluationReport:
    """Evaluate every policy on the same episodes and compare the non-baselines with the best baseline.

    ``seeds``: one episode per seed (default: the first ``episodes`` of :data:`EVAL_SEEDS`, 100 if neither
    is given). ``baselines``: names of the baseline policies (default: those whose ``is_baseline`` is true);
    ``references``: of the references, shown but never compared against (default: ``is_reference`` true).
    """
    if not policies:
        raise ValueError("evaluate() needs at least one policy")
    if seeds is None:
        seeds = list(EVAL_SEEDS[: episodes if episodes is not None else 100])
    elif episodes is not None and episodes != len(seeds):
        raise ValueError(f"got {len(seeds)} seeds but episodes={episodes}; pass one or the other")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate() needs at least one seed")
    if baselines is None:
        baselines = [n for n, p in policies.items() if getattr(p, "is_baseline", False)]
    if references is None:
        references = [n for n, p in policies.items() if getattr(p, "is_reference", False)]
    unknown = [b for b in [*baselines, *references] if b not in policies]
    if unknown:
        raise ValueError(f"baselines/references {unknown} are not among the policies {list(policies)}")
    config = AutoScaleConfig.from_mapping(env_config)
    per_policy = {
        name: {m: v.tolist() for m, v in run_episodes(p, seeds, config, batch_size=batch_size).items()}
        for name, p in policies.items()
    }
    return EvaluationReport(config.to_dict(), seeds, list(baselines), per_policy, list(references))
