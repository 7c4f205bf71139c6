"""The auto-scaling simulator as a Gymnasium environment (the SageMaker RL "predictive auto-scaling" example).

One step is one minute. The agent chooses how many machines to turn on and how many to turn off (0..10
each). Turned-off machines leave at once (never below 0); turned-on machines join the active fleet after
``warmup_latency`` minutes (capped at ``max_machines``). Then the minute's load arrives and:

    capacity  = int(active * Normal(tpm_per_machine, tpm_sigma))   (one draw for the whole fleet)
    succeeded = min(load, capacity),  failed = load - succeeded
    reward    = succeeded * transaction_val / 1000
                - downtime_cost      if 100 * succeeded / load < downtime_percent
                - active * machine_cost

The reward is the minute's profit in dollars: a few dollars in a normal minute, about -200 in a minute of
downtime. Observation (25 numbers at the defaults, all in [0, 1]): the four signals ``load / max_tpm``,
``failed / load``, ``is_down`` and ``active / max_machines``, each smoothed by moving averages with rates
1, 0.1, 0.01, 0.001, 0.0001 (ordered rate-major: the four signals at rate 1, then at 0.1, ...), then the
warm-up queue (machines arriving in 1, 2, ... minutes) divided by ``max_action``.

Choices, where the reference left room:

- **Episode end**: after ``max_time_steps + 1`` steps (the reference's ``t += 1; done = t > max_time_steps``).
  This is a time limit, not a terminal state of the process, so it is reported as ``truncated=True`` with
  ``terminated=False``: value-based and PPO learners should bootstrap from the last observation.
- **Zero-load quirk**: the reference computes availability as ``100 * succeeded / (load + 1e-20)``, so a
  minute with load 0 counts as downtime. Load is never 0 during an episode (the cyclic base stays above
  ~800 tpm), but reset evaluates the reward once with load 0, so the first observation has ``is_down = 1``
  (and the slow averages of ``is_down`` start from that 1). We keep this by default for fidelity
  (``zero_load_is_downtime=True``); set it to False to count a zero-load minute as available. It never
  changes a reward during an episode, only the first observation's ``is_down`` signal.
- **Moving averages restart at 0 each episode**. The public example builds them once and carries them from
  one episode to the next; that makes the first observations of an episode depend on the previous one.
- **Randomness**: one seed drives everything, through separate streams per kind of draw
  (``_streams.py``); ``reset(seed=s)`` makes the episode and the following unseeded ones reproducible.
- **Bad actions raise**: out of range, wrong shape, fractional, NaN: a ``ValueError`` saying what was
  received and what is allowed. Nothing is clipped.

``info`` of each step: ``load``, ``capacity``, ``succeeded``, ``failed``, ``is_down``, ``active_machines``,
``warming_machines``, ``revenue``, ``downtime_penalty``, ``fleet_cost`` (reward = revenue - downtime_penalty
- fleet_cost) and ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from orchestrator.autoscale._streams import CAPACITY, ScalarNormals, as_seed_sequence, stream_generator
from orchestrator.autoscale.config import EMA_RATES, SIGNALS, AutoScaleConfig
from orchestrator.autoscale.load import LoadSimulator

# (1 - rate, rate) per moving average, as Python floats: the scalar env updates its 20 averages in plain
# Python (faster than NumPy on 20 numbers), with the same IEEE arithmetic as the batched env.
_KEEP_RATE = tuple((1.0 - r, r) for r in EMA_RATES)


class InvalidActionError(ValueError):
    """An action the environment does not accept (it never clips)."""


def action_error(received: Any, why: str, max_action: int) -> InvalidActionError:
    return InvalidActionError(
        f"invalid action {received!r}: {why}. An action is two integers [turn_on, turn_off], each in 0..{max_action}."
    )


def parse_action(action: Any, max_action: int) -> tuple[int, int]:
    """Validate one action; returns (turn_on, turn_off) as Python ints."""
    if isinstance(action, np.ndarray) and action.shape == (2,) and action.dtype.kind in "iu":
        on, off = action.tolist()  # the common case (RLlib, SB3, our policies), checked cheaply
        if 0 <= on <= max_action and 0 <= off <= max_action:
            return on, off
    a = np.asarray(action)
    if a.shape != (2,):
        raise action_error(action, f"shape {a.shape}, expected (2,)", max_action)
    kind = a.dtype.kind
    if kind == "f":
        if not np.isfinite(a).all():
            raise action_error(action, "it contains NaN or infinity", max_action)
        if (a != np.floor(a)).any():
            raise action_error(action, "it is not whole numbers", max_action)
    elif kind not in "iu":
        raise action_error(action, f"dtype {a.dtype} is not an integer type", max_action)
    on, off = int(a[0]), int(a[1])
    if not (0 <= on <= max_action and 0 <= off <= max_action):
        raise action_error(action, "out of range", max_action)
    return on, off


def make_spaces(config: AutoScaleConfig) -> tuple[spaces.MultiDiscrete, spaces.Box]:
    """Action space ``MultiDiscrete([max_action + 1] * 2)`` and observation space ``Box(0, 1, (20 + L,))``."""
    action_space = spaces.MultiDiscrete([config.max_action + 1, config.max_action + 1])
    observation_space = spaces.Box(0.0, 1.0, shape=(config.observation_size,), dtype=np.float32)
    return action_space, observation_space


class AutoScaleEnv(gym.Env[np.ndarray, np.ndarray]):
    """The auto-scaling simulator, one env. See the module docstring for dynamics, reward and choices.

    Construct with an RLlib ``env_config`` dict, keyword arguments, or both::

        AutoScaleEnv({"max_time_steps": 1000})
        AutoScaleEnv(max_time_steps=1000, zero_load_is_downtime=False)
        gymnasium.make("rlo/AutoScale-v0", max_time_steps=1000)
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: Mapping[str, Any] | AutoScaleConfig | None = None,
        *,
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"AutoScaleEnv has no render modes; got render_mode={render_mode!r}.")
        self.config = AutoScaleConfig.from_mapping(config, **overrides)
        self.action_space, self.observation_space = make_spaces(self.config)
        self.load_simulator: LoadSimulator | None = None
        self._capacity_noise: ScalarNormals | None = None
        self.t: int | None = None  # None until the first reset
        self._done = False

    # -- Gymnasium API -------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"AutoScaleEnv.reset() takes no options; got {options!r}.")
        if seed is not None or self.load_simulator is None:
            root = as_seed_sequence(seed)  # None: fresh entropy
            self.load_simulator = LoadSimulator(root, max_tpm=self.config.max_tpm)
            self._capacity_noise = ScalarNormals(stream_generator(root, CAPACITY))
        self.load_simulator.reset()
        self.active_machines = self.config.initial_machines
        self.warmup_queue = [0] * self.config.warmup_latency
        self._ema = [0.0] * (len(EMA_RATES) * len(SIGNALS))  # rate-major, as in the observation
        # The reference evaluates the reward once with load 0 here (to set capacity/failed/is_down for the
        # first observation), which also consumes one capacity draw.
        info = self._react_to_load(0)
        self.t = 0
        self._done = False
        return self._observation(info), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t is None:
            raise RuntimeError("AutoScaleEnv.step() called before reset().")
        if self._done:
            raise RuntimeError(f"the episode ended (truncated after {self.t} steps, t > max_time_steps); call reset().")
        turn_on, turn_off = parse_action(action, self.config.max_action)
        # Order of the reference: turn off first, then the head of the warm-up queue joins, capped.
        active = max(0, self.active_machines - turn_off)
        self.active_machines = min(active + self.warmup_queue[0], self.config.resolved_max_machines)
        self.warmup_queue = self.warmup_queue[1:] + [turn_on]

        assert self.load_simulator is not None, "reset() made the load simulator (t is set)"
        info = self._react_to_load(self.load_simulator.step())
        self.t += 1
        truncated = self.t > self.config.max_time_steps
        self._done = truncated
        info["t"] = self.t
        reward = info["revenue"] - info["downtime_penalty"] - info["fleet_cost"]
        return self._observation(info), reward, False, truncated, info

    # -- internals -----------------------------------------------------------------------------------------
    def _react_to_load(self, load: int) -> dict[str, Any]:
        c = self.config
        active = self.active_machines
        assert self._capacity_noise is not None, "reset() made the capacity stream before any load"
        capacity = int(active * (c.tpm_per_machine + c.tpm_sigma * self._capacity_noise.next()))
        if load <= capacity:
            failed, succeeded = 0, load
        else:
            failed, succeeded = load - capacity, capacity
        revenue = succeeded * c.transaction_val / 1000.0
        percent_success = 100.0 * succeeded / (load + 1e-20)
        is_down = percent_success < c.downtime_percent and (load > 0 or c.zero_load_is_downtime)
        return {
            "load": load,
            "capacity": capacity,
            "succeeded": succeeded,
            "failed": failed,
            "is_down": int(is_down),
            "active_machines": active,
            "warming_machines": sum(self.warmup_queue),
            "revenue": revenue,
            # Kept as separate terms so that reward = revenue - downtime_penalty - fleet_cost is computed in
            # the reference's order (revenue, minus downtime, minus machines) and matches it to the last bit.
            "downtime_penalty": c.downtime_cost if is_down else 0.0,
            "fleet_cost": active * c.machine_cost,
            "t": 0,
        }

    def _observation(self, info: dict[str, Any]) -> np.ndarray:
        c = self.config
        load = info["load"]
        signals = (
            load / c.max_tpm,
            info["failed"] / (load + 1e-5),
            float(info["is_down"]),
            self.active_machines / c.resolved_max_machines,
        )
        ema = self._ema
        i = 0
        for keep, rate in _KEEP_RATE:
            for signal in signals:
                ema[i] = ema[i] * keep + signal * rate
                i += 1
        extra = [self._feature(name, load) for name in c.extra_features]
        return np.array(ema + [q / c.max_action for q in self.warmup_queue] + extra, dtype=np.float32)

    def _feature(self, name: str, load: float) -> float:
        """One of EXTRA_FEATURES (config.py), in float64 as the batched env computes it."""
        c, ema = self.config, self._ema
        if name == "utilization":
            serving = float(self.active_machines + sum(self.warmup_queue)) * c.tpm_per_machine
            return min(max(load / (serving + 1e-5), 0.0), 2.0) / 2.0
        slow = ema[2 * len(SIGNALS)]  # the load at rate 0.01; rate 0.1 is one row above
        trend = (ema[len(SIGNALS)] - slow) / (slow + 1e-5)
        return (min(max(trend, -1.0), 1.0) + 1.0) / 2.0
