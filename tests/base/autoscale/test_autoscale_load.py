"""The load simulator against the facts: ranges, the daily period, spikes, noise, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.autoscale import AutoScaleEnv, BatchedLoadSimulator, LoadSimulator


def test_same_seed_same_profile_other_seed_other_profile():
    a = LoadSimulator(seed=3).profile(2000)
    assert np.array_equal(a, LoadSimulator(seed=3).profile(2000))
    assert not np.array_equal(a, LoadSimulator(seed=4).profile(2000))
    assert a.dtype == np.int64 and a.shape == (2000,)


def test_profile_is_the_load_the_env_sees():
    env = AutoScaleEnv()
    env.reset(seed=11)
    seen = [env.step((0, 0))[4]["load"] for _ in range(600)]
    assert seen == LoadSimulator(seed=11).profile(600).tolist()


def test_generator_seed_is_reproducible():
    a = LoadSimulator(seed=np.random.default_rng(1)).profile(100)
    b = LoadSimulator(seed=np.random.default_rng(1)).profile(100)
    assert np.array_equal(a, b)


def test_batched_equals_scalar_per_seed_across_episodes():
    seeds = [0, 7, 123]
    batched = BatchedLoadSimulator(seeds, len(seeds))
    scalars = [LoadSimulator(seed=s) for s in seeds]
    for _ in range(3):  # three profiles; the streams carry over between them
        got = batched.profile(900)
        for i, sim in enumerate(scalars):
            assert np.array_equal(got[i], sim.profile(900))


def test_episode_parameters_stay_in_their_ranges():
    sim = LoadSimulator(seed=0)
    params = [sim.reset() for _ in range(300)]
    cmin = np.array([p.cyclic_min for p in params])
    spread = np.array([p.cyclic_max - p.cyclic_min for p in params])
    assert 1000 <= cmin.min() and cmin.max() <= 2000
    assert 5000 <= spread.min() and spread.max() <= 7000
    for name, (low, high) in {
        "noise": (0.01, 0.05),
        "daily_phase": (-math.pi, math.pi),
        "slow_amplitude": (0.1, 0.2),
        "slow_period_days": (2, 5),
        "slow_phase": (-math.pi, math.pi),
    }.items():
        values = np.array([getattr(p, name) for p in params])
        assert low <= values.min() and values.max() <= high, name
        # uniform: the draws fill the range (not stuck at a constant or a sub-range)
        assert values.max() - values.min() > 0.9 * (high - low), name


def test_deterministic_component_follows_the_formula():
    sim = LoadSimulator(seed=5)
    p = sim.reset()
    avg, amp = (p.cyclic_min + p.cyclic_max) / 2, (p.cyclic_max - p.cyclic_min) / 2
    for m in range(1, 3001):
        sim.step()
        phase = m / 720 * math.pi + p.daily_phase
        expected = (avg + amp * math.sin(phase)) * (
            1 + math.sin(phase / p.slow_period_days + p.slow_phase) * p.slow_amplitude
        )
        assert sim.last_base == pytest.approx(expected, rel=1e-12)


def test_daily_period_is_1440_minutes():
    days = 10
    for seed in range(4):
        loads = LoadSimulator(seed=seed).profile(days * 1440).astype(float)
        spectrum = np.abs(np.fft.rfft(loads - loads.mean()))
        assert np.argmax(spectrum[1:]) + 1 == days, seed  # strongest frequency: `days` cycles in `days` days
        x = loads - loads.mean()
        corr = [np.dot(x[:-lag], x[lag:]) / np.dot(x, x) for lag in (720, 1440)]
        assert corr[0] < -0.3 and corr[1] > 0.5, (seed, corr)


def test_noise_is_multiplicative_with_the_drawn_level():
    sim = LoadSimulator(seed=2)
    p = sim.reset()
    ratios = []
    for _ in range(5000):
        sim.step()
        ratios.append(sim.last_cyclic / sim.last_base)
    assert np.mean(ratios) == pytest.approx(1.0, abs=3 * p.noise / math.sqrt(5000))
    assert np.std(ratios) == pytest.approx(p.noise, rel=0.05)


def _spikes(sim: LoadSimulator, minutes: int) -> np.ndarray:
    out = np.empty(minutes)
    for m in range(minutes):
        sim.step()
        out[m] = sim.last_spike
    return out


def test_first_spike_starts_between_minute_100_and_1000_with_its_height():
    starts = []
    for seed in range(60):
        sim = LoadSimulator(seed=seed)
        p = sim.reset()
        spikes = _spikes(sim, 1001)
        start = int(np.flatnonzero(spikes > 0)[0]) + 1  # minutes count from 1
        assert 100 <= start <= 1000
        starts.append(start)
        # first value: height * (1 + c / width) with -1 < c <= 0 and width >= 5, height = cmax * U(0.1, 0.2)
        assert 0.1 * p.cyclic_max * 0.8 <= spikes[start - 1] <= 0.2 * p.cyclic_max
    assert np.mean(starts) == pytest.approx(550, abs=3 * 260 / math.sqrt(60))  # U(100, 1000): mean 550, sd 260


def test_spike_decays_linearly_then_the_next_is_scheduled_the_step_it_turns_negative():
    sim = LoadSimulator(seed=9)
    sim.reset()
    seen = 0
    while seen < 5:
        sim.step()
        if sim.last_spike <= 0:
            continue
        height, width = sim.spike_height, sim.spike_width
        values = [sim.last_spike]
        while values[-1] >= 0:
            sim.step()
            values.append(sim.last_spike)
        steps = np.diff(values)
        np.testing.assert_allclose(steps, -height / width, rtol=1e-9)  # linear decay
        assert values[-1] < 0  # the negative tail is added, as in the reference
        assert 99 <= sim.countdown <= 1000  # next spike scheduled on that same step
        sim.step()
        assert sim.last_spike == 0.0
        seen += 1


def test_loads_are_clipped_integers():
    sim = BatchedLoadSimulator(0, 64)
    loads = sim.profile(3000)
    assert loads.dtype == np.int64
    assert loads.min() >= 800  # the cyclic base never goes near 0
    assert loads.max() <= 100_000
    small = LoadSimulator(seed=0, max_tpm=3000).profile(3000)
    assert small.max() == 3000


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="before reset"):
        LoadSimulator(seed=0).step()


def test_bad_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative integer"):
        LoadSimulator(seed=-1)


def test_batched_equals_scalar_with_resets_in_the_middle_of_precomputed_blocks():
    """The batched simulator computes minutes ahead; a reset must give back the unused random draws,
    including spikes that were scheduled in the unused minutes."""
    seeds = list(range(8))
    batched = BatchedLoadSimulator(seeds, len(seeds))
    scalars = [LoadSimulator(seed=s) for s in seeds]
    lengths = np.random.default_rng(0).integers(1, 1500, size=25)
    spikes_given_back = 0
    for length in lengths:
        batched.reset()
        for sim in scalars:
            sim.reset()
        for _ in range(length):
            got = batched.step()
            assert got.tolist() == [sim.step() for sim in scalars]
        envs, rows = batched._spike_takes
        spikes_given_back += int((rows >= batched._next).sum())
    assert spikes_given_back > 0  # the rewind of spike draws was exercised
