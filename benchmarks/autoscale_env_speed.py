"""Env steps per second of the auto-scaling simulator, measured side by side in one run, on one core.

Compared:
- reference: tests/base/autoscale/reference_impl.py, a straightforward one-env implementation (the baseline);
- AutoScaleEnv: our scalar Gymnasium env (one env, with action validation and info dict);
- BatchedAutoScale with N envs: NumPy over envs (one process, one thread: NumPy's element-wise loops do
  not multithread, so this is per core).

Every step is a full step: dynamics, reward, observation and info. Actions are random and pre-drawn.
Rates are steps per CPU-second of this process (``time.process_time``), i.e. what one core delivers even
when other processes compete for the machine; rounds are interleaved and the best round of each is kept.

    python benchmarks/autoscale_env_speed.py [--envs 256 1024 4096] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "autoscale"))

from reference_impl import ReferenceAutoScale  # noqa: E402

from orchestrator.autoscale import AutoScaleEnv, BatchedAutoScale  # noqa: E402


def time_reference(steps: int, actions: np.ndarray) -> float:
    env = ReferenceAutoScale(seed=0)
    env.reset()
    acts = actions.tolist()
    start = time.process_time()
    for i in range(steps):
        _, _, done, _ = env.step(acts[i])
        if done:
            env.reset()
    return steps / (time.process_time() - start)


def time_scalar(steps: int, actions: np.ndarray) -> float:
    env = AutoScaleEnv()
    env.reset(seed=0)
    start = time.process_time()
    for i in range(steps):
        _, _, _, truncated, _ = env.step(actions[i])
        if truncated:
            env.reset()
    return steps / (time.process_time() - start)


def time_batched(num_envs: int, steps: int, actions: np.ndarray) -> float:
    env = BatchedAutoScale(num_envs)  # same-step auto-reset: no episode boundary handling needed here
    env.reset(seed=0)
    env.step(actions[0])  # first step fills the per-block buffers; the timed steps pay their share anyway
    start = time.process_time()
    for i in range(steps):
        env.step(actions[i])
    return steps * num_envs / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--one-env-steps", type=int, default=50_000)
    parser.add_argument("--batched-env-steps", type=int, default=2_000_000, help="total env steps per batched run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    one_env_actions = rng.integers(0, 11, size=(args.one_env_steps, 2))
    batched_actions = {n: rng.integers(0, 11, size=(max(args.batched_env_steps // n, 1) + 1, n, 2)) for n in args.envs}
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        results = {
            "reference (one env)": time_reference(args.one_env_steps, one_env_actions),
            "AutoScaleEnv (one env)": time_scalar(args.one_env_steps, one_env_actions),
        }
        for n, acts in batched_actions.items():
            results[f"BatchedAutoScale ({n} envs)"] = time_batched(n, len(acts) - 1, acts)
        for k, v in results.items():
            best[k] = max(best.get(k, 0.0), v)

    ref, scalar = best["reference (one env)"], best["AutoScaleEnv (one env)"]
    print(
        f"env steps per CPU-second (one core), best of {args.rounds} interleaved rounds "
        f"(numpy {np.__version__}, python {sys.version.split()[0]})"
    )
    print(f"{'implementation':32s} {'steps/s':>12s} {'vs reference':>13s} {'vs AutoScaleEnv':>16s}")
    for name, rate in best.items():
        print(f"{name:32s} {rate:12,.0f} {rate / ref:12.1f}x {rate / scalar:15.1f}x")


if __name__ == "__main__":
    main()
