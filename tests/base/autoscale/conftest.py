"""Helpers for the auto-scaling tests. The test files are named test_autoscale_*.py (no __init__.py here) so
their module names cannot collide with the project's other tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# reference_impl.py sits next to the tests; make it importable as a top-level module.
sys.path.insert(0, str(Path(__file__).parent))


class ScriptedLoad:
    """Stands in for the env's LoadSimulator: returns the given loads in order, then repeats the last."""

    def __init__(self, loads: list[int]) -> None:
        self.loads = list(loads)
        self.i = 0

    def reset(self) -> None:
        self.i = 0

    def step(self) -> int:
        value = self.loads[min(self.i, len(self.loads) - 1)]
        self.i += 1
        return value


@pytest.fixture
def scripted_env():
    """An AutoScaleEnv with exact capacity (tpm_sigma=0) whose loads are scripted."""
    from orchestrator.autoscale import AutoScaleEnv

    def make(loads: list[int], **config):
        env = AutoScaleEnv(tpm_sigma=0, **config)
        env.reset(seed=0)
        env.load_simulator = ScriptedLoad(loads)
        obs, _ = env.reset()
        return env, obs

    return make
