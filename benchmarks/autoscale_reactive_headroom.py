"""How much of the headroom (tuned target tracking -> the clairvoyant reference) can a policy that only reacts
capture at all? A search over rules that see what the RL policy sees (the observation), side by side with tuned
target tracking and the clairvoyant planner, on held-out seeds.

The variants extend target tracking where a reactive policy could do better: scale-in may wait for the smoothed
load (the rate-0.1 moving average times `smooth`), may remove at most `step_in` machines a minute, and the
scale-in cooldown is searched with the target. They are searched on training seeds (every combination in one
batched run: parameters are per env), and the best is evaluated on held-out seeds with the evaluation's paired
intervals and headroom share.

    python benchmarks/autoscale_reactive_headroom.py                 # 16 training seeds, 100 held-out episodes
    python benchmarks/autoscale_reactive_headroom.py --episodes 200
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.autoscale.baselines import TUNED, FleetView, TargetTracking, default_baselines  # noqa: E402
from orchestrator.autoscale.ceiling import default_references  # noqa: E402
from orchestrator.autoscale.evaluation import EVAL_SEEDS, TRAIN_SEEDS, evaluate, run_episodes  # noqa: E402

GRID = {
    "target_utilization": (0.63, 0.654, 0.67, 0.69),
    "scale_in_cooldown": (3, 5, 10, 15),
    "smooth": (1.0, 1.02, 1.04),
    "step_in": (1, 2, 10),
}


class ReactiveVariant(TargetTracking):
    """Target tracking whose scale-in is held back by the smoothed load and limited per minute (reads only the
    observation: the load's rate-0.1 moving average is obs[:, 4])."""

    name = "target_tracking"  # its tuned defaults (min_machines) are target tracking's
    is_baseline = False

    def __init__(self, smooth=1.0, step_in=10, **params) -> None:
        super().__init__(**params)
        self.smooth, self.step_in = np.asarray(smooth, dtype=float), np.asarray(step_in, dtype=float)

    def act(self, obs, info=None):
        self._obs = np.asarray(obs, dtype=np.float64)
        return super().act(obs, info)

    def _decide(self, view: FleetView) -> tuple[np.ndarray, np.ndarray]:
        p, c = self.params, self.config
        smoothed = self._obs[:, 4] * c.max_tpm
        per_machine = c.tpm_per_machine * p["target_utilization"]
        desired = np.ceil(np.maximum(view.load, self.smooth * smoothed) / per_machine)
        desired = np.minimum(np.maximum(desired, p["min_machines"]), c.resolved_max_machines)
        total = view.active + view.warming
        on = desired - total
        may_scale_in = (self._since_out >= p["scale_in_cooldown"]) & (on <= 0)
        return on, np.where(may_scale_in, np.minimum(total - desired, self.step_in), 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search-seeds", type=int, default=16, help="training seeds per combination")
    ap.add_argument("--episodes", type=int, default=100, help="held-out episodes for the final comparison")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    combos = list(itertools.product(*GRID.values()))
    seeds = list(TRAIN_SEEDS[: args.search_seeds])
    per_env = {k: np.repeat([c[i] for c in combos], len(seeds)) for i, k in enumerate(GRID)}
    tt = TUNED["target_tracking"]
    policy = ReactiveVariant(
        smooth=per_env["smooth"],
        step_in=per_env["step_in"],
        target_utilization=per_env["target_utilization"],
        scale_in_cooldown=per_env["scale_in_cooldown"],
        min_machines=tt["min_machines"],
    )
    profit = run_episodes(policy, seeds * len(combos), batch_size=len(seeds) * len(combos))["profit"]
    means = profit.reshape(len(combos), len(seeds)).mean(axis=1)
    tuned = next(i for i, c in enumerate(combos) if c == (tt["target_utilization"], tt["scale_in_cooldown"], 1.0, 10))
    best = int(np.argmax(means))
    chosen = dict(zip(GRID, combos[best], strict=True))
    print(
        f"searched {len(combos)} reactive variants on {len(seeds)} training seeds in {time.perf_counter() - t0:.0f} s: "
        f"best {chosen} {means[best]:,.0f} $/episode, tuned target tracking {means[tuned]:,.0f} "
        f"({means[best] - means[tuned]:+,.0f})"
    )

    variant = ReactiveVariant(**chosen, min_machines=tt["min_machines"])
    policies = {"reactive_variant": variant, **default_baselines(), **default_references()}
    report = evaluate(policies, seeds=list(EVAL_SEEDS[: args.episodes]))
    print(report.to_table())
    print(f"[bench] done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
