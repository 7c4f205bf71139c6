"""A small battery-arbitrage env (test data, in the shape of SageMaker RL's energy storage example): charge when
the price is low, discharge when it is high. Episodes last MAX_STEPS_PER_EPISODE hours."""

import gymnasium as gym
import numpy as np


class SimpleBattery(gym.Env):
    def __init__(self, env_config=None):
        env_config = env_config or {}
        self.max_steps = int(env_config.get("MAX_STEPS_PER_EPISODE", 24))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)  # 0: discharge, 1: hold, 2: charge
        self.t, self.charge = 0, 0.5

    def _price(self):
        return 0.5 + 0.5 * np.sin(2 * np.pi * self.t / 24)

    def _obs(self):
        return np.array([self.t / self.max_steps, self.charge, self._price()], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.charge = 0, 0.5
        return self._obs(), {}

    def step(self, action):
        delta = (int(action) - 1) * 0.25
        new = float(np.clip(self.charge + delta, 0.0, 1.0))
        reward = -(new - self.charge) * self._price()
        self.charge = new
        self.t += 1
        return self._obs(), float(reward), self.t >= self.max_steps, False, {}
