"""A small news-vendor env (test data, in the shape of SageMaker RL's news-vendor example): each day order a
number of papers; sell what the demand takes, pay for what is left over. Episodes last `max_steps` days."""

import gymnasium as gym
import numpy as np


class NewsVendorEnv(gym.Env):
    def __init__(self, env_config=None):
        env_config = env_config or {}
        self.max_steps = int(env_config.get("max_steps", 10))
        self.price, self.cost = 2.0, 1.0
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(5)  # order 0..4 papers
        self.day = 0

    def _obs(self):
        return np.array([self.day / self.max_steps, self.demand / 4.0], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.day = 0
        self.demand = int(self.np_random.integers(0, 5))
        return self._obs(), {}

    def step(self, action):
        sold = min(int(action), self.demand)
        reward = self.price * sold - self.cost * int(action)
        self.day += 1
        self.demand = int(self.np_random.integers(0, 5))
        return self._obs(), float(reward), self.day >= self.max_steps, False, {}
