"""Many auto-scaling envs stepped at once with NumPy, equal step for step to the scalar env.

``BatchedAutoScale(n)`` holds ``n`` envs with the dynamics of
:class:`~orchestrator.autoscale.env.AutoScaleEnv`, vectorised over envs: load simulator, warm-up queues,
fleet, reward and moving averages. Env ``i`` seeded with ``s_i`` produces exactly the observations, rewards
and infos of ``AutoScaleEnv().reset(seed=s_i)`` followed by unseeded resets, including across auto-resets:
both draw from the same per-env random streams (``_streams.py``), read in blocks here and one at a time
there.

All episodes have the same length (``max_time_steps + 1`` steps, nothing ends them early), so the envs of a
batch stay in lockstep: they start, end and auto-reset together.

:class:`AutoScaleVectorEnv` adapts it to Gymnasium's ``VectorEnv`` API (next-step auto-reset by default, as
RLlib's env runner expects); ``gymnasium.make_vec("rlo/AutoScale-v0", num_envs=n)`` builds one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from orchestrator.autoscale._streams import (
    CAPACITY,
    LockstepNormals,
    SeedLike,
    seed_sequences,
    stream_generator,
)
from orchestrator.autoscale.config import EMA_RATES, SIGNALS, AutoScaleConfig
from orchestrator.autoscale.env import action_error, make_spaces
from orchestrator.autoscale.load import BatchedLoadSimulator

# Internal arrays are env-minor ((..., num_envs)): NumPy is fast along a long contiguous last axis and slow
# along the short ones (5 rates x 4 signals), measured at ~6x for the moving averages.
_RATES = np.asarray(EMA_RATES)[:, None, None]
_KEEP = 1.0 - _RATES
assert EMA_RATES[0] == 1.0  # the rate-1 average is written directly (see _observation)

# Steps of capacity draws computed at once (they do not depend on actions).
CAPACITY_BLOCK = 64

Autoreset = Literal["same_step", "next_step", "disabled"]


class BatchedAutoScale:
    """``num_envs`` auto-scaling envs stepped together.

    ``step(actions)`` takes an int array of shape (num_envs, 2) and returns ``(obs, reward, terminated,
    truncated, info)`` with obs float32 (num_envs, 25) in column-major order (``np.ascontiguousarray`` gives
    row-major; NumPy and torch take either), reward float64 (num_envs,), and ``info`` a dict of
    per-env arrays with the scalar env's keys (counts such as ``load`` and ``active_machines`` are whole
    numbers stored as float64). ``autoreset_mode``:

    - ``"same_step"`` (default): the step that ends the episodes returns the first observation of the next
      ones, and the last observation in ``info["final_obs"]``.
    - ``"next_step"``: Gymnasium's default; the step after the end ignores the actions, resets, and returns
      the first observation with reward 0.
    - ``"disabled"``: stepping after the end raises; call :meth:`reset`.

    ``reset(seed=s)`` seeds env ``i`` with ``s + i``; ``reset(seed=[s_0, ..., s_n-1])`` seeds each.
    """

    # The fleet and the warm-up queues (float64, env-minor), set by every reset.
    _active: np.ndarray
    _queue: np.ndarray

    def __init__(
        self,
        num_envs: int,
        config: Mapping[str, Any] | AutoScaleConfig | None = None,
        *,
        autoreset_mode: Autoreset = "same_step",
        **overrides: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1; got {num_envs!r}.")
        if autoreset_mode not in ("same_step", "next_step", "disabled"):
            raise ValueError(f"autoreset_mode must be 'same_step', 'next_step' or 'disabled'; got {autoreset_mode!r}.")
        self.num_envs = int(num_envs)
        self.autoreset_mode = autoreset_mode
        self.config = AutoScaleConfig.from_mapping(config, **overrides)
        self.single_action_space, self.single_observation_space = make_spaces(self.config)
        self._load: BatchedLoadSimulator | None = None
        # terminated/truncated flags are the same for every env and every step but the last: shared,
        # read-only arrays instead of two new ones per step.
        self._all_false = np.zeros(self.num_envs, dtype=bool)
        self._all_true = np.ones(self.num_envs, dtype=bool)
        self._all_false.flags.writeable = self._all_true.flags.writeable = False
        self.t: int | None = None
        self._episode_over = False

    # -- public API ----------------------------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[SeedLike] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Start new episodes in every env; a seed restarts the random streams (see class docstring)."""
        if seed is not None or self._load is None:
            roots = seed_sequences(seed, self.num_envs)
            self._load = BatchedLoadSimulator(roots, self.num_envs, max_tpm=self.config.max_tpm)
            self._capacity_noise = LockstepNormals([stream_generator(r, CAPACITY) for r in roots])
            self._capacity_block = np.empty((0, self.num_envs))
            self._capacity_next = 0
        return self._reset_episodes()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        if self.t is None:
            raise RuntimeError("BatchedAutoScale.step() called before reset().")
        n = self.num_envs
        if self._episode_over:
            if self.autoreset_mode == "disabled":
                raise RuntimeError("the episodes ended (t > max_time_steps); call reset().")
            obs, info = self._reset_episodes()  # next_step: this step only resets
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), info

        turn_on, turn_off = self._parse_actions(actions)
        c = self.config
        active = self._active - turn_off
        np.maximum(active, 0, out=active)
        active += self._queue[0]
        np.minimum(active, c.resolved_max_machines, out=active)
        self._active = active
        self._queue[:-1] = self._queue[1:]
        self._queue[-1] = turn_on

        assert self._load is not None, "reset() made the load simulator (t is set)"
        info = self._react_to_load(self._load.step())
        self.t += 1
        info["t"] = np.full(n, self.t)
        obs = self._observation(info)
        reward = info["revenue"] - info["downtime_penalty"] - info["fleet_cost"]
        done = self.t > c.max_time_steps
        truncated = self._all_true if done else self._all_false
        if done:
            self._episode_over = True
            if self.autoreset_mode == "same_step":
                info["final_obs"] = obs
                info["_final_obs"] = np.ones(n, dtype=bool)
                obs, _ = self._reset_episodes()
        return obs, reward, self._all_false, truncated, info

    # -- internals -----------------------------------------------------------------------------------------
    def _reset_episodes(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n, c = self.num_envs, self.config
        assert self._load is not None, "reset() makes the load simulator before it resets the episodes"
        self._load.reset()
        # Capacity draws are pre-computed in blocks too; give back the unused ones (see _capacity_factors).
        self._capacity_noise.rewind(len(self._capacity_block) - self._capacity_next)
        self._capacity_block = np.empty((0, n))
        self._capacity_next = 0
        # Counts (machines, transactions) are whole numbers held in float64: exact, and NumPy converts int64
        # to float64 slower than it multiplies, so keeping them as floats saves a conversion per operation.
        self._active = np.full(n, float(c.initial_machines))
        self._queue = np.zeros((c.warmup_latency, n))
        self._ema = np.zeros((len(EMA_RATES), len(SIGNALS), n))
        self._ema_scratch = np.empty((len(EMA_RATES) - 1, len(SIGNALS), n))
        info = self._react_to_load(np.zeros(n))  # as the scalar env: load 0 at reset
        self.t = 0
        self._episode_over = False
        info["t"] = np.zeros(n, dtype=np.int64)
        return self._observation(info), info

    def _capacity_factors(self) -> np.ndarray:
        """tpm_per_machine + tpm_sigma * z for this step, z from each env's capacity stream. Computed for a
        block of steps at once (they do not depend on actions); one contiguous row per step."""
        if self._capacity_next == len(self._capacity_block):
            c = self.config
            z = self._capacity_noise.take(CAPACITY_BLOCK)
            self._capacity_block = np.ascontiguousarray((c.tpm_per_machine + c.tpm_sigma * z).T)
            self._capacity_next = 0
        row = self._capacity_block[self._capacity_next]
        self._capacity_next += 1
        return row

    def _react_to_load(self, load: np.ndarray) -> dict[str, np.ndarray]:
        c = self.config
        active = self._active
        # int() in the scalar env. (Only a negative capacity draw could make -0.0 where int() gives 0; the
        # two compare equal and give the same reward.)
        capacity = np.trunc(active * self._capacity_factors())
        succeeded = np.minimum(load, capacity)
        failed = load - succeeded
        percent_success = 100.0 * succeeded / (load + 1e-20)
        is_down = percent_success < c.downtime_percent
        if not c.zero_load_is_downtime:
            is_down &= load > 0
        return {
            "load": load,
            "capacity": capacity,
            "succeeded": succeeded,
            "failed": failed,
            "is_down": is_down.view(np.int8),
            "active_machines": active,
            "warming_machines": self._queue.sum(axis=0),
            "revenue": succeeded * c.transaction_val / 1000.0,
            "downtime_penalty": is_down * c.downtime_cost,
            "fleet_cost": active * c.machine_cost,
        }

    def _observation(self, info: dict[str, np.ndarray]) -> np.ndarray:
        c = self.config
        load = info["load"]
        ema = self._ema
        # Rate 1: ema * 0 + signal * 1 is the signal itself, bit for bit; write it directly.
        s = ema[0]
        np.divide(load, c.max_tpm, out=s[0])
        np.divide(info["failed"], load + 1e-5, out=s[1])
        s[2] = info["is_down"]
        np.divide(self._active, c.resolved_max_machines, out=s[3])
        # Slower rates: ema * (1 - rate) + signal * rate, the scalar env's arithmetic element by element.
        slow = ema[1:]
        np.multiply(slow, _KEEP[1:], out=slow)
        np.add(slow, np.multiply(s, _RATES[1:], out=self._ema_scratch), out=slow)
        # Built feature-major, returned as its transpose: a (num_envs, obs_size) column-major array. A
        # row-major copy would cost ~15% of the step at 1024 envs; AutoScaleVectorEnv makes that copy.
        obs = np.empty((c.observation_size, self.num_envs), dtype=np.float32)
        k = ema.shape[0] * ema.shape[1]
        obs[:k] = ema.reshape(k, self.num_envs)
        w = c.warmup_latency
        np.divide(self._queue, c.max_action, out=obs[k : k + w], casting="unsafe")  # float64 divide, then rounded
        for i, name in enumerate(c.extra_features):  # EXTRA_FEATURES (config.py), as the scalar env computes them
            if name == "utilization":
                serving = (self._active + self._queue.sum(axis=0)) * c.tpm_per_machine
                obs[k + w + i] = np.clip(load / (serving + 1e-5), 0.0, 2.0) / 2.0
            else:
                trend = (ema[1, 0] - ema[2, 0]) / (ema[2, 0] + 1e-5)
                obs[k + w + i] = (np.clip(trend, -1.0, 1.0) + 1.0) / 2.0
        return obs.T

    def _parse_actions(self, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        m = self.config.max_action
        a = np.asarray(actions)
        if a.shape != (self.num_envs, 2):
            raise action_error(f"array of shape {a.shape}", f"expected shape ({self.num_envs}, 2), one row per env", m)
        kind = a.dtype.kind
        if kind == "f":
            bad = ~np.isfinite(a).all(axis=1)
            bad |= (a != np.floor(np.where(np.isfinite(a), a, 0))).any(axis=1)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise action_error(a[i].tolist(), f"env {i}: NaN, infinite or not a whole number", m)
            a = a.astype(np.int64)
        elif kind not in "iu":
            raise action_error(f"array of dtype {a.dtype}", "not an integer type", m)
        if a.min() < 0 or a.max() > m:
            i = int(np.flatnonzero(((a < 0) | (a > m)).any(axis=1))[0])
            raise action_error(a[i].tolist(), f"env {i}: out of range", m)
        return a[:, 0], a[:, 1]


class AutoScaleVectorEnv(VectorEnv):
    """Gymnasium ``VectorEnv`` over :class:`BatchedAutoScale`, for RLlib and other vector-env users.

    ``gymnasium.make_vec("rlo/AutoScale-v0", num_envs=64, **env_config)`` builds one (the id's
    ``vector_entry_point``). In RLlib, select it with ``config.env_runners(gym_env_vectorize_mode=
    "vector_entry_point")``; RLlib's default ("sync") steps 64 scalar envs one by one instead.
    Auto-reset is Gymnasium's next-step mode unless ``autoreset_mode=AutoresetMode.SAME_STEP``.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | AutoScaleConfig | None = None,
        *,
        num_envs: int | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **overrides: Any,
    ) -> None:
        if isinstance(config, Mapping) and "num_envs" in config:
            # RLlib's vector creator passes {**env_config, "num_envs": n} as one dict.
            config = dict(config)
            from_config = config.pop("num_envs")
            num_envs = from_config if num_envs is None else num_envs
        mode = AutoresetMode(autoreset_mode)
        if mode is AutoresetMode.DISABLED:
            batched_mode: Autoreset = "disabled"
        else:
            batched_mode = "next_step" if mode is AutoresetMode.NEXT_STEP else "same_step"
        self._batched = BatchedAutoScale(
            1 if num_envs is None else num_envs, config, autoreset_mode=batched_mode, **overrides
        )
        self.num_envs = self._batched.num_envs
        self.config = self._batched.config
        self.metadata = {"autoreset_mode": mode, "render_modes": []}
        self.single_action_space = self._batched.single_action_space
        self.single_observation_space = self._batched.single_observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if options:
            raise ValueError(f"AutoScaleVectorEnv.reset() takes no options; got {options!r}.")
        if isinstance(seed, int | np.integer):
            super().reset(seed=int(seed))
        obs, info = self._batched.reset(seed=seed)
        return np.ascontiguousarray(obs), info

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        # Row-major observations, the layout every vector-env user expects; the copy is cheap next to the
        # per-step work of a training loop.
        obs, reward, terminated, truncated, info = self._batched.step(actions)
        if "final_obs" in info:
            info["final_obs"] = np.ascontiguousarray(info["final_obs"])
        return np.ascontiguousarray(obs), reward, terminated.copy(), truncated.copy(), info
