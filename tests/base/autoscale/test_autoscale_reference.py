"""Our env against the straightforward reference implementation (tests/base/autoscale/reference_impl.py).

Two kinds of check:
- exact: the reference, fed the same random numbers as our env (through a replaying ``rng``), must produce
  the same observations and rewards step for step. This pins the dynamics, reward and observation.
- in distribution: with its own generator, its loads and the returns of fixed policies must match ours
  within noise (two-sample z statistic over independent episodes below 4; fixed seeds, so deterministic).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference_impl import ReferenceAutoScale, ReferenceLoad

from orchestrator.autoscale import AutoScaleEnv, LoadSimulator
from orchestrator.autoscale._streams import (
    CAPACITY,
    EPISODE,
    LOAD_NOISE,
    SPIKE_NORMAL,
    SPIKE_UNIFORM,
    as_seed_sequence,
    stream_generator,
)
from orchestrator.autoscale.baselines import TargetTracking
from orchestrator.autoscale.evaluation import run_episodes


class StreamReplay:
    """An ``rng`` for the reference that serves, draw by draw, what our env draws for the same seed.

    The reference asks for numbers by distribution; each request is routed to the stream our env uses for
    that quantity and transformed the way numpy would (uniform = low + (high - low) * u, normal = loc +
    scale * z, lognormal = exp(mean + sigma * z))."""

    def __init__(self, seed: int) -> None:
        root = as_seed_sequence(seed)
        self.streams = {
            k: stream_generator(root, k) for k in (EPISODE, LOAD_NOISE, SPIKE_UNIFORM, SPIKE_NORMAL, CAPACITY)
        }
        self.in_spike = False

    def uniform(self, low, high):
        if (low, high) == (100, 1000):  # a spike is being scheduled: delay, then width, then height
            self.in_spike = True
            stream = SPIKE_UNIFORM
        elif self.in_spike:
            self.in_spike = False
            stream = SPIKE_UNIFORM
        else:
            stream = EPISODE
        return low + (high - low) * self.streams[stream].random()

    def normal(self, loc, scale):
        stream = LOAD_NOISE if loc == 1 else CAPACITY  # load noise is Normal(1, level); capacity Normal(300, 30)
        return loc + scale * self.streams[stream].standard_normal()

    def lognormal(self, mean, sigma):
        return float(np.exp(mean + sigma * self.streams[SPIKE_NORMAL].standard_normal()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_fed_our_random_numbers_gives_identical_steps(seed):
    max_time_steps = 1200
    ours = AutoScaleEnv(max_time_steps=max_time_steps)
    ref = ReferenceAutoScale(rng=StreamReplay(seed), max_time_steps=max_time_steps)
    rng = np.random.default_rng(seed)
    obs = ours.reset(seed=seed)[0]
    assert np.array_equal(obs, np.float32(ref.reset()))
    for _ in range(2):  # two episodes: the second from an unseeded reset
        done = False
        while not done:
            action = rng.integers(0, 11, 2)
            obs, reward, _, truncated, info = ours.step(action)
            ref_obs, ref_reward, done, ref_info = ref.step(action)
            assert (info["load"], info["active_machines"]) == (ref_info["load"], ref_info["active_machines"])
            assert reward == ref_reward
            assert np.array_equal(obs, np.float32(ref_obs))
            assert truncated == done
        obs = ours.reset()[0]
        assert np.array_equal(obs, np.float32(ref.reset()))


def z_statistic(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) / se


def test_load_profiles_match_the_reference_in_distribution():
    minutes, episodes = 3000, 40
    ours = [LoadSimulator(seed=1000 + s).profile(minutes) for s in range(episodes)]
    ref_sim = ReferenceLoad(np.random.default_rng(0))
    theirs = []
    for _ in range(episodes):
        ref_sim.reset()
        theirs.append([ref_sim.next_load() for _ in range(minutes)])
    for stat in (np.mean, np.std, np.max, lambda x: np.mean(np.abs(np.diff(x)))):
        assert z_statistic([stat(x) for x in ours], [stat(x) for x in theirs]) < 4, stat


class Noop:
    def act(self, obs, info=None):
        return np.zeros((len(obs), 2), dtype=np.int64)


def reference_episodes(policy, episodes: int, max_time_steps: int) -> dict[str, list[float]]:
    env = ReferenceAutoScale(seed=0, max_time_steps=max_time_steps)
    out = {"profit": [], "downtime_minutes": [], "mean_fleet": []}
    for _ in range(episodes):
        obs = env.reset()
        if hasattr(policy, "reset"):
            policy.reset(1)
        profit, down, fleet, done = 0.0, 0, 0, False
        while not done:
            action = policy.act(np.asarray([obs], dtype=np.float32))[0]
            obs, reward, done, info = env.step(action)
            profit += reward
            down += info["is_down"]
            fleet += info["active_machines"]
        out["profit"].append(profit)
        out["downtime_minutes"].append(down)
        out["mean_fleet"].append(fleet / (max_time_steps + 1))
    return out


@pytest.mark.parametrize("policy", [Noop(), TargetTracking()], ids=["hold-50-machines", "target-tracking"])
def test_expected_return_matches_the_reference_within_noise(policy):
    episodes, max_time_steps = 20, 2000
    ours = run_episodes(policy, range(episodes), {"max_time_steps": max_time_steps})
    theirs = reference_episodes(policy, episodes, max_time_steps)
    for metric in ("profit", "downtime_minutes", "mean_fleet"):
        if np.ptp(ours[metric]) == 0 and np.ptp(theirs[metric]) == 0:
            assert ours[metric][0] == theirs[metric][0], metric  # e.g. the fixed fleet: 50 every minute
        else:
            assert z_statistic(ours[metric], theirs[metric]) < 4, metric
    # and the scale is what the facts imply: a few dollars of profit per minute
    assert 1.0 < np.mean(ours["profit"]) / (max_time_steps + 1) < 5.0
