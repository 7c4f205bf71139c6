"""A straightforward, one-env-at-a-time implementation of the auto-scaling simulator, written from the facts
in ``/work/shared/autoscale-env.md`` as plainly as the blog's snippet (scalar NumPy draws from one Generator,
Python lists). It shares no code with ``orchestrator.autoscale``: tests compare our env's returns to it
within noise, and ``benchmarks/autoscale_env_speed.py`` uses it as the one-env baseline.

By default it draws from one Generator in the order the reference does, so it matches our env in
distribution, not number for number. Pass ``rng=`` any object with ``uniform``, ``normal`` and ``lognormal``
methods to control the draws (the exact-replay test feeds it our env's random streams).
"""

from __future__ import annotations

import math

import numpy as np


class ReferenceLoad:
    def __init__(self, rng: np.random.Generator, max_tpm: float = 1e5) -> None:
        self.rng = rng
        self.max_tpm = max_tpm

    def reset(self) -> None:
        rng = self.rng
        self.minutes = 0
        self.cmin = rng.uniform(1000, 2000)
        self.cmax = self.cmin + rng.uniform(5000, 7000)
        self.noise = rng.uniform(0.01, 0.05)
        self.daily_phase = rng.uniform(-math.pi, math.pi)
        self.slow_amp = rng.uniform(0.1, 0.2)
        self.slow_div = rng.uniform(2, 5)
        self.slow_phase = rng.uniform(-math.pi, math.pi)
        self.new_spike()

    def new_spike(self) -> None:
        self.until_spike = self.rng.uniform(100, 1000)
        self.spike_width = 5 + self.rng.lognormal(3, 2)
        self.spike_height = self.cmax * self.rng.uniform(0.1, 0.2)

    def next_load(self) -> int:
        self.minutes += 1
        avg = (self.cmin + self.cmax) / 2.0
        amp = (self.cmax - self.cmin) / 2.0
        phase = self.minutes / (60 * 12) * math.pi + self.daily_phase
        load = avg + amp * math.sin(phase)
        load *= 1 + math.sin(phase / self.slow_div + self.slow_phase) * self.slow_amp
        load *= self.rng.normal(1, self.noise)
        self.until_spike -= 1
        spike = 0.0
        if self.until_spike <= 0:
            spike = self.spike_height * (1.0 + self.until_spike / self.spike_width)
            if spike < 0:
                self.new_spike()
        load = int(load + spike)
        return int(min(max(load, 0), self.max_tpm))


class ReferenceAutoScale:
    """Same settings and defaults as the public example (max_time_steps 10000, 833 machines)."""

    rates = [1.0, 0.1, 0.01, 0.001, 0.0001]

    def __init__(self, seed: int | None = None, rng=None, **config) -> None:
        self.warmup_latency = config.get("warmup_latency", 5)
        self.tpm_per_machine = config.get("tpm_per_machine", 300)
        self.tpm_sigma = config.get("tpm_sigma", 30)
        self.machine_cost = config.get("machine_cost", 0.05)
        self.transaction_val = config.get("transaction_val", 0.90)
        self.downtime_cost = config.get("downtime_cost", 200)
        self.downtime_percent = config.get("downtime_percent", 99.5)
        self.initial_machines = config.get("initial_machines", 50)
        self.max_time_steps = config.get("max_time_steps", 10000)
        self.max_tpm = 1e5
        self.max_machines = int(2.5 * self.max_tpm / self.tpm_per_machine)
        self.max_action = 10
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.load = ReferenceLoad(self.rng, self.max_tpm)

    def reset(self) -> list[float]:
        self.load.reset()
        self.active_machines = self.initial_machines
        self.warmup_queue = [0] * self.warmup_latency
        self.ema = [[0.0] * 4 for _ in self.rates]
        self.current_load = 0
        self.react_to_load()
        self.t = 0
        return self.observation()

    def react_to_load(self) -> float:
        self.capacity = int(self.active_machines * self.rng.normal(self.tpm_per_machine, self.tpm_sigma))
        if self.current_load <= self.capacity:
            self.failed = 0
            succeeded = self.current_load
        else:
            self.failed = self.current_load - self.capacity
            succeeded = self.capacity
        reward = succeeded * self.transaction_val / 1000.0
        if 100.0 * succeeded / (self.current_load + 1e-20) < self.downtime_percent:
            self.is_down = 1
            reward -= self.downtime_cost
        else:
            self.is_down = 0
        reward -= self.active_machines * self.machine_cost
        return reward

    def observation(self) -> list[float]:
        signals = [
            self.current_load / self.max_tpm,
            self.failed / (self.current_load + 1e-5),
            self.is_down,
            self.active_machines / self.max_machines,
        ]
        obs = []
        for i, rate in enumerate(self.rates):
            row = self.ema[i]
            for j in range(4):
                row[j] = row[j] * (1 - rate) + signals[j] * rate
            obs.extend(row)
        obs.extend(x / self.max_action for x in self.warmup_queue)
        return obs

    def step(self, action) -> tuple[list[float], float, bool, dict]:
        turn_on = int(action[0])
        turn_off = int(action[1])
        self.active_machines = max(0, self.active_machines - turn_off)
        self.active_machines = min(self.active_machines + self.warmup_queue[0], self.max_machines)
        self.warmup_queue = self.warmup_queue[1:] + [turn_on]
        self.current_load = self.load.next_load()
        reward = self.react_to_load()
        self.t += 1
        done = self.t > self.max_time_steps
        info = {
            "load": self.current_load,
            "is_down": self.is_down,
            "active_machines": self.active_machines,
            "failed": self.failed,
        }
        return self.observation(), reward, done, info
