"""The load simulator of the public SageMaker auto-scaling example, reproduced from its description.

Load in transactions per minute (tpm) = a daily sine (1440-minute period) between a base and a peak level,
modulated by a slow sine of a 2-5 day period, times Gaussian noise, plus occasional spikes that jump up and
decay linearly. Per episode (at :meth:`LoadSimulator.reset`):

    cmin ~ U(1000, 2000), cmax = cmin + U(5000, 7000), noise ~ U(0.01, 0.05), daily phase ~ U(-pi, pi),
    slow amplitude ~ U(0.1, 0.2), slow period divisor ~ U(2, 5) (days), slow phase ~ U(-pi, pi)

Per step, the minute m is incremented first, then

    phase  = m / 720 * pi + daily_phase
    cyclic = (avg + amp * sin(phase)) * (1 + sin(phase / divisor + slow_phase) * slow_amplitude)
    cyclic *= Normal(1, noise)
    spike: a countdown ~ U(100, 1000) falls by one each step; once <= 0 the spike adds
           height * (1 + countdown / width), width = 5 + lognormal(3, 2), height = cmax * U(0.1, 0.2);
           on the step that value turns negative (it is still added, as in the reference) the next spike
           is scheduled.
    load   = int(cyclic + spike) clipped to [0, max_tpm]

:class:`LoadSimulator` runs one load process; :class:`BatchedLoadSimulator` runs many in NumPy and agrees
with one :class:`LoadSimulator` per seed draw for draw (see ``_streams.py`` for how).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.autoscale._streams import (
    EPISODE,
    LOAD_NOISE,
    SPIKE_NORMAL,
    SPIKE_UNIFORM,
    LockstepNormals,
    ScalarNormals,
    SeedLike,
    as_seed_sequence,
    seed_sequences,
    stream_generator,
)

MINUTES_PER_DAY = 1440
_HALF_DAY = MINUTES_PER_DAY // 2  # phase advances by pi every 720 minutes: a 1440-minute period

BASE_RANGE = (1000.0, 2000.0)
PEAK_ABOVE_BASE_RANGE = (5000.0, 7000.0)
NOISE_RANGE = (0.01, 0.05)
PHASE_RANGE = (-np.pi, np.pi)
SLOW_AMPLITUDE_RANGE = (0.1, 0.2)
SLOW_PERIOD_DAYS_RANGE = (2.0, 5.0)
SPIKE_DELAY_RANGE = (100.0, 1000.0)
SPIKE_WIDTH_MIN = 5.0
SPIKE_LOG_WIDTH = (3.0, 2.0)  # mean and sigma of the log of (width - 5)
SPIKE_HEIGHT_RANGE = (0.1, 0.2)  # fraction of cmax

# Minutes the batched simulator computes at once (loads do not depend on actions, so they can be computed
# ahead). At most 100: a new spike starts >= 100 minutes after the previous one ended, so an env ends at most
# one spike per block, which the block computation and the rewind on early reset rely on.
LOAD_BLOCK = 64
assert LOAD_BLOCK <= SPIKE_DELAY_RANGE[0]

# Spikes pre-drawn per env per refill; both simulators must use the same value (widths are computed with
# np.exp on whole blocks, so identical blocks give identical widths on any CPU).
SPIKE_BLOCK = 32


def _uniform(bounds: tuple[float, float], u: np.ndarray) -> np.ndarray:
    # Same arithmetic as numpy's Generator.uniform(low, high): low + (high - low) * u.
    low, high = bounds
    return low + (high - low) * u


@dataclass(frozen=True)
class LoadParams:
    """The per-episode draws of one load profile."""

    cyclic_min: float
    cyclic_max: float
    noise: float
    daily_phase: float
    slow_amplitude: float
    slow_period_days: float
    slow_phase: float


def _episode_params(u: np.ndarray) -> dict[str, np.ndarray]:
    """Episode parameters from 7 uniforms per env (``u`` of shape (n, 7))."""
    cyclic_min = _uniform(BASE_RANGE, u[:, 0])
    return {
        "cyclic_min": cyclic_min,
        "cyclic_max": cyclic_min + _uniform(PEAK_ABOVE_BASE_RANGE, u[:, 1]),
        "noise": _uniform(NOISE_RANGE, u[:, 2]),
        "daily_phase": _uniform(PHASE_RANGE, u[:, 3]),
        "slow_amplitude": _uniform(SLOW_AMPLITUDE_RANGE, u[:, 4]),
        "slow_period_days": _uniform(SLOW_PERIOD_DAYS_RANGE, u[:, 5]),
        "slow_phase": _uniform(PHASE_RANGE, u[:, 6]),
    }


class _SpikeDraws:
    """Per-env queues of pre-drawn spikes: (delay in minutes, width in minutes, height as a fraction of cmax).

    Spikes happen at different moments in different envs, so each env has its own read position.
    """

    def __init__(self, uniform_gens: Sequence[np.random.Generator], normal_gens: Sequence[np.random.Generator]):
        self._uniform_gens = list(uniform_gens)
        self._normal_gens = list(normal_gens)
        n = len(self._uniform_gens)
        self._delay = np.empty((n, SPIKE_BLOCK))
        self._width = np.empty((n, SPIKE_BLOCK))
        self._height_fraction = np.empty((n, SPIKE_BLOCK))
        self._pos = np.full(n, SPIKE_BLOCK)

    def take(self, envs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next spike of each env in ``envs`` (distinct indices)."""
        for i in envs[self._pos[envs] == SPIKE_BLOCK]:
            u = self._uniform_gens[i].random((SPIKE_BLOCK, 2))
            z = self._normal_gens[i].standard_normal(SPIKE_BLOCK)
            self._delay[i] = _uniform(SPIKE_DELAY_RANGE, u[:, 0])
            self._height_fraction[i] = _uniform(SPIKE_HEIGHT_RANGE, u[:, 1])
            # lognormal(mean, sigma) = exp(mean + sigma * z), as numpy computes it.
            self._width[i] = SPIKE_WIDTH_MIN + np.exp(SPIKE_LOG_WIDTH[0] + SPIKE_LOG_WIDTH[1] * z)
            self._pos[i] = 0
        pos = self._pos[envs]
        self._pos[envs] = pos + 1
        return self._delay[envs, pos], self._width[envs, pos], self._height_fraction[envs, pos]

    def rewind(self, envs: np.ndarray) -> None:
        """Give back the last spike taken by each env in ``envs`` (taken since that env's last refill)."""
        self._pos[envs] -= 1


def _spike_draws(roots: Sequence[np.random.SeedSequence]) -> _SpikeDraws:
    return _SpikeDraws(
        [stream_generator(r, SPIKE_UNIFORM) for r in roots],
        [stream_generator(r, SPIKE_NORMAL) for r in roots],
    )


class LoadSimulator:
    """One load process (one env), written step by step for readability.

    ``LoadSimulator(seed=s)`` gives the same loads as ``AutoScaleEnv().reset(seed=s)`` sees, and the same as
    env ``i`` of a :class:`BatchedLoadSimulator` seeded with ``s`` at position ``i``.

    Example::

        loads = LoadSimulator(seed=0).profile(3 * 1440)   # three days, one value per minute
    """

    def __init__(self, seed: SeedLike = None, *, max_tpm: int = 100_000) -> None:
        self.max_tpm = int(max_tpm)
        self._seed(seed)
        self.params: LoadParams | None = None
        self.minute = 0
        self.countdown = 0.0  # minutes until the scheduled spike starts (<= 0: spike on)
        self.spike_width = 0.0
        self.spike_height = 0.0
        # Components of the last step, for plots and tests.
        self.last_base = 0.0  # deterministic daily x slow cycle
        self.last_cyclic = 0.0  # times the noise
        self.last_spike = 0.0

    def _seed(self, seed: SeedLike) -> None:
        root = as_seed_sequence(seed)
        self._episode_gen = stream_generator(root, EPISODE)
        self._noise = ScalarNormals(stream_generator(root, LOAD_NOISE))
        self._spikes = _spike_draws([root])

    def reset(self, seed: SeedLike = None) -> LoadParams:
        """Start a new load profile (draws new episode parameters). A seed restarts the random streams."""
        if seed is not None:
            self._seed(seed)
        p = _episode_params(self._episode_gen.random((1, 7)))
        self.params = LoadParams(**{k: float(v[0]) for k, v in p.items()})
        self._avg = (self.params.cyclic_min + self.params.cyclic_max) / 2.0
        self._amp = (self.params.cyclic_max - self.params.cyclic_min) / 2.0
        self.minute = 0
        self._schedule_spike()
        return self.params

    def _schedule_spike(self) -> None:
        delay, width, fraction = self._spikes.take(np.zeros(1, dtype=np.intp))
        assert self.params is not None, "reset() draws the episode's parameters before it schedules a spike"
        self.countdown = float(delay[0])
        self.spike_width = float(width[0])
        self.spike_height = self.params.cyclic_max * float(fraction[0])

    def step(self) -> int:
        """Advance one minute and return its load (an int in [0, max_tpm])."""
        p = self.params
        if p is None:
            raise RuntimeError("LoadSimulator.step() called before reset().")
        self.minute += 1
        phase = self.minute / _HALF_DAY * np.pi + p.daily_phase
        # np.sin, not math.sin (they may differ in the last bit), as the batched simulator computes it. NumPy
        # gives an element the same bits wherever it sits in an array; the batched-vs-scalar tests check it.
        daily, slow = np.sin(np.array((phase, phase / p.slow_period_days + p.slow_phase))).tolist()
        base = self._avg + self._amp * daily
        base = base * (1 + slow * p.slow_amplitude)
        cyclic = base * (1 + p.noise * self._noise.next())

        self.countdown -= 1
        if self.countdown > 0:
            spike = 0.0
        else:
            spike = self.spike_height * (1.0 + self.countdown / self.spike_width)
            if spike < 0:  # this spike is over; its small negative tail is still added (reference)
                self._schedule_spike()
        self.last_base, self.last_cyclic, self.last_spike = base, cyclic, spike
        return min(max(int(cyclic + spike), 0), self.max_tpm)

    def profile(self, minutes: int) -> np.ndarray:
        """Start a new profile and return ``minutes`` loads (int64 array)."""
        self.reset()
        return np.fromiter((self.step() for _ in range(minutes)), dtype=np.int64, count=minutes)


class BatchedLoadSimulator:
    """``n`` independent load processes stepped together with NumPy; all start episodes together.

    Loads do not depend on the agent, so they are computed ``LOAD_BLOCK`` minutes at a time, vectorised over
    minutes and processes, with exactly the arithmetic of :meth:`LoadSimulator.step` (the spike countdown
    is decremented with ``np.subtract.accumulate``, i.e. one rounding per minute as in ``countdown -= 1``).
    A reset before the block is used up gives the unused random draws back, so process ``i`` always equals
    ``LoadSimulator`` with the same seed, whatever the episode lengths.
    """

    def __init__(self, seeds: int | Sequence[SeedLike] | None, n: int, *, max_tpm: int = 100_000) -> None:
        self.n = int(n)
        self.max_tpm = int(max_tpm)
        self.params: dict[str, np.ndarray] | None = None
        self.seed(seeds)

    def seed(self, seeds: int | Sequence[SeedLike] | None) -> None:
        """Restart the random streams (``int s`` seeds process ``i`` with ``s + i``)."""
        roots = seed_sequences(seeds, self.n)
        self._episode_gens = [stream_generator(r, EPISODE) for r in roots]
        self._noise = LockstepNormals([stream_generator(r, LOAD_NOISE) for r in roots])
        self._spikes = _spike_draws(roots)
        self._clear_block()

    def _clear_block(self) -> None:
        self._loads = np.empty((0, self.n))  # (minutes, n), the current block
        self._next = 0  # next row of the block to hand out
        self._spike_takes = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp))  # (envs, block row)

    def reset(self) -> dict[str, np.ndarray]:
        """Start a new profile in every process; returns the episode parameters (arrays of shape (n,))."""
        self._give_back_unused()
        u = np.stack([gen.random(7) for gen in self._episode_gens])
        p = self.params = _episode_params(u)
        self._avg = ((p["cyclic_min"] + p["cyclic_max"]) / 2.0)[:, None]
        self._amp = ((p["cyclic_max"] - p["cyclic_min"]) / 2.0)[:, None]
        self._columns = {k: v[:, None] for k, v in p.items()}
        self.minute = 0
        self.countdown = np.empty(self.n)
        self.spike_width = np.empty(self.n)
        self.spike_height = np.empty(self.n)
        every = np.arange(self.n)
        delay, width, fraction = self._spikes.take(every)
        self.countdown[every], self.spike_width[every] = delay, width
        self.spike_height[every] = p["cyclic_max"] * fraction
        return p

    def _give_back_unused(self) -> None:
        unused = len(self._loads) - self._next
        if unused:
            self._noise.rewind(unused)
            envs, rows = self._spike_takes
            self._spikes.rewind(envs[rows >= self._next])
        self._clear_block()

    def step(self) -> np.ndarray:
        """Advance one minute; the loads, shape (n,). Whole numbers held as float64 (exact; the batched env
        computes in float64 because NumPy's int64-to-float conversions cost more than the arithmetic).
        A view: do not modify."""
        if self.params is None:
            raise RuntimeError("BatchedLoadSimulator.step() called before reset().")
        if self._next == len(self._loads):
            self._compute_block()
        row = self._loads[self._next]
        self._next += 1
        self.minute += 1
        return row

    def _compute_block(self) -> None:
        c = self._columns
        z = self._noise.take(LOAD_BLOCK)  # (n, k); fewer than LOAD_BLOCK at the end of a noise buffer
        k = z.shape[1]
        minutes = np.arange(self.minute + 1, self.minute + 1 + k)
        phase = minutes / _HALF_DAY * np.pi + c["daily_phase"]  # (n, k), as LoadSimulator.step per minute
        base = self._avg + self._amp * np.sin(phase)
        base *= 1 + np.sin(phase / c["slow_period_days"] + c["slow_phase"]) * c["slow_amplitude"]
        cyclic = base * (1 + c["noise"] * z)

        # Spikes. Most envs are far from one: their countdown stays above 0 all block and counting down by 1
        # is exact there (c - j is representable for 0 < c - j < c <= 1000), so c - k equals k decrements.
        final_countdown = self.countdown - k
        near = np.flatnonzero(self.countdown <= k)  # a spike is on, or starts within this block
        envs = rows = np.empty(0, dtype=np.intp)
        if near.size:
            # Countdown after each minute's decrement, one rounding per minute as in `countdown -= 1`.
            steps = np.ones((near.size, k + 1))
            steps[:, 0] = self.countdown[near]
            countdown = np.subtract.accumulate(steps, axis=1)[:, 1:]
            height, width = self.spike_height[near, None], self.spike_width[near, None]
            spike = np.where(countdown > 0, 0.0, height * (1.0 + countdown / width))
            final_countdown[near] = countdown[:, -1]
            ended = spike < 0
            which = np.flatnonzero(ended.any(axis=1))
            envs, rows = near[which], ended[which].argmax(axis=1)  # the minute each ends its spike (<= 1)
            if envs.size:
                delay, new_width, fraction = self._spikes.take(envs)
                assert self.params is not None, "step() checked that reset() drew the parameters"
                new_height = self.params["cyclic_max"][envs] * fraction
                # After the end minute the new countdown runs from `delay` (set on the end minute itself).
                steps = np.ones((envs.size, k))
                steps[:, 0] = delay
                new = np.subtract.accumulate(steps, axis=1)  # new[:, j] = delay after j decrements
                e, j = np.nonzero(np.arange(k) > rows[:, None])
                new_countdown = new[e, j - rows[e]]
                spike[which[e], j] = np.where(
                    new_countdown > 0, 0.0, new_height[e] * (1.0 + new_countdown / new_width[e])
                )
                final_countdown[envs] = new[np.arange(envs.size), k - 1 - rows]
                self.spike_width[envs], self.spike_height[envs] = new_width, new_height
            cyclic[near] += spike  # the others add 0.0, which changes nothing
        self.countdown = final_countdown
        self._spike_takes = (envs, rows)

        loads = np.trunc(cyclic, out=cyclic)  # int() of the scalar simulator: truncation toward zero
        np.clip(loads, 0, self.max_tpm, out=loads)
        loads += 0.0  # a negative fraction truncates to -0.0; make it 0.0 like int() does
        self._loads = np.ascontiguousarray(loads.T)  # one contiguous row per minute
        self._next = 0

    def profile(self, minutes: int) -> np.ndarray:
        """Start new profiles and return the loads, int64 of shape (n, minutes)."""
        self.reset()
        out = np.empty((minutes, self.n), dtype=np.int64)
        for m in range(minutes):
            out[m] = self.step()
        return out.T.copy()
