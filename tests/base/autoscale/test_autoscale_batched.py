"""The batched env equals N scalar envs step for step; the Gymnasium VectorEnv adapter behaves as one."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from orchestrator.autoscale import (
    ENV_ID,
    AutoScaleEnv,
    AutoScaleVectorEnv,
    BatchedAutoScale,
    InvalidActionError,
)

INFO_KEYS = (
    "load",
    "capacity",
    "succeeded",
    "failed",
    "is_down",
    "active_machines",
    "warming_machines",
    "revenue",
    "downtime_penalty",
    "fleet_cost",
    "t",
)


def assert_batched_equals_scalars(config: dict, seeds: list[int], episodes: int, extra_steps: int = 5) -> None:
    batched = BatchedAutoScale(len(seeds), config)
    scalars = [AutoScaleEnv(config) for _ in seeds]
    obs, info = batched.reset(seed=seeds)
    for i, (env, seed) in enumerate(zip(scalars, seeds, strict=True)):
        o, inf = env.reset(seed=seed)
        assert np.array_equal(o, obs[i])
        assert all(inf[k] == info[k][i] for k in INFO_KEYS)
    rng = np.random.default_rng(7)
    ends = 0
    for _ in range(episodes * (config["max_time_steps"] + 1) + min(extra_steps, config["max_time_steps"])):
        actions = rng.integers(0, 11, size=(len(seeds), 2))
        obs, reward, terminated, truncated, info = batched.step(actions)
        for i, env in enumerate(scalars):
            o, r, te, tr, inf = env.step(actions[i])
            assert r == reward[i]  # exact, not approximate
            assert (te, tr) == (terminated[i], truncated[i])
            assert all(inf[k] == info[k][i] for k in INFO_KEYS)
            if tr:
                assert np.array_equal(o, info["final_obs"][i])
                o, _ = env.reset()  # unseeded: continues the env's streams, as the batch does
            assert np.array_equal(o, obs[i])
        ends += bool(truncated.any())
    assert ends == episodes


@pytest.mark.parametrize(
    ("config", "episodes"),
    [
        ({"max_time_steps": 40}, 3),
        ({"max_time_steps": 25, "warmup_latency": 2, "zero_load_is_downtime": False, "tpm_sigma": 0}, 3),
        ({"max_time_steps": 3}, 40),  # many resets: each draws a spike, so the spike blocks refill
        ({"max_time_steps": 60, "extra_features": ["load_trend", "utilization"]}, 2),
    ],
)
def test_equals_scalar_envs_step_for_step_across_auto_resets(config, episodes):
    assert_batched_equals_scalars(config, [0, 1, 2, 99, 12345], episodes)


def test_equals_scalar_envs_over_long_episodes():
    # 2 x 1201 steps: the per-step normal blocks (1024 rows) refill mid-episode and spikes come and go
    assert_batched_equals_scalars({"max_time_steps": 1200}, [3, 4], episodes=2)


def test_int_seed_seeds_env_i_with_seed_plus_i():
    batched = BatchedAutoScale(3)
    batched.reset(seed=10)
    rewards = batched.step(np.zeros((3, 2), dtype=int))[1]
    for i in range(3):
        env = AutoScaleEnv()
        env.reset(seed=10 + i)
        assert env.step((0, 0))[1] == rewards[i]
    assert len(set(rewards.tolist())) == 3


def test_next_step_mode_resets_on_the_step_after_the_end():
    batched = BatchedAutoScale(2, max_time_steps=3, autoreset_mode="next_step")
    batched.reset(seed=[4, 5])
    scalar = AutoScaleEnv(max_time_steps=3)
    scalar.reset(seed=4)
    for _ in range(4):
        _, _, _, truncated, _ = batched.step(np.ones((2, 2), dtype=int))
        scalar.step((1, 1))
    assert truncated.all()
    obs, reward, terminated, truncated, info = batched.step(np.full((2, 2), 10))  # actions ignored
    assert np.array_equal(obs[0], scalar.reset()[0])
    assert not reward.any() and not terminated.any() and not truncated.any()
    assert (info["t"] == 0).all()


def test_disabled_mode_raises_after_the_end():
    batched = BatchedAutoScale(2, max_time_steps=1, autoreset_mode="disabled")
    batched.reset(seed=0)
    batched.step(np.zeros((2, 2), dtype=int))
    batched.step(np.zeros((2, 2), dtype=int))
    with pytest.raises(RuntimeError, match="call reset"):
        batched.step(np.zeros((2, 2), dtype=int))


@pytest.mark.parametrize(
    ("actions", "fragment"),
    [
        (np.zeros((3, 2), dtype=int), "expected shape (4, 2)"),
        (np.array([[0, 0], [0, 0], [0, 11], [0, 0]]), "env 2: out of range"),
        (np.array([[0, 0], [0.5, 0], [0, 0], [0, 0]]), "env 1: NaN, infinite or not a whole number"),
        (np.array([[0, 0], [0, 0], [0, 0], [np.nan, 0]]), "env 3: NaN"),
        (np.zeros((4, 2), dtype=bool), "not an integer type"),
    ],
)
def test_bad_actions_name_the_env_and_the_allowed_range(actions, fragment):
    batched = BatchedAutoScale(4)
    batched.reset(seed=0)
    with pytest.raises(InvalidActionError) as err:
        batched.step(actions)
    assert fragment in str(err.value)
    assert "each in 0..10" in str(err.value)


def test_whole_float_actions_are_accepted():
    batched = BatchedAutoScale(2)
    batched.reset(seed=0)
    batched.step(np.array([[3.0, 0.0], [0.0, 1.0]]))
    assert batched._queue[-1].tolist() == [3, 0]


def test_bad_construction():
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        BatchedAutoScale(0)
    with pytest.raises(ValueError, match="autoreset_mode"):
        BatchedAutoScale(2, autoreset_mode="sometimes")
    with pytest.raises(ValueError, match="got 2 seeds for 3 envs"):
        BatchedAutoScale(3).reset(seed=[1, 2])


class TestVectorEnv:
    def test_make_vec_builds_the_batched_adapter(self):
        envs = gym.make_vec(ENV_ID, num_envs=4, max_time_steps=20)
        assert isinstance(envs.unwrapped, AutoScaleVectorEnv)
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        assert envs.observation_space.shape == (4, 25)
        assert envs.single_action_space == gym.spaces.MultiDiscrete([11, 11])
        obs, _ = envs.reset(seed=0)
        envs.action_space.seed(0)
        for _ in range(45):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert envs.observation_space.contains(obs)
            assert reward.shape == (4,) and set(info) >= set(INFO_KEYS)

    def test_same_trajectories_as_gymnasium_sync_vector_env(self):
        """Gymnasium's own SyncVectorEnv over scalar envs (next-step auto-reset) is the reference."""
        sync = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="sync", max_time_steps=10)
        ours = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", max_time_steps=10)
        a, _ = sync.reset(seed=21)
        b, _ = ours.reset(seed=21)
        assert np.array_equal(a, b)
        rng = np.random.default_rng(0)
        for _ in range(40):
            actions = rng.integers(0, 11, size=(3, 2))
            ra, rb = sync.step(actions), ours.step(actions)
            for x, y in zip(ra[:4], rb[:4], strict=True):
                assert np.array_equal(x, y)

    def test_rllib_style_dict_with_num_envs(self):
        env = AutoScaleVectorEnv({"max_time_steps": 5, "num_envs": 3})
        assert env.num_envs == 3 and env.config.max_time_steps == 5

    def test_same_step_mode(self):
        env = AutoScaleVectorEnv(num_envs=2, max_time_steps=2, autoreset_mode=AutoresetMode.SAME_STEP)
        env.reset(seed=0)
        for _ in range(3):
            obs, _, _, truncated, info = env.step(np.zeros((2, 2), dtype=int))
        assert truncated.all() and info["_final_obs"].all()
        assert not np.array_equal(obs, info["final_obs"])


def test_observation_layouts():
    batched = BatchedAutoScale(3)
    obs, _ = batched.reset(seed=0)
    assert obs.shape == (3, 25) and obs.dtype == np.float32 and obs.flags.f_contiguous
    vector = AutoScaleVectorEnv(num_envs=3)
    obs, _ = vector.reset(seed=0)
    assert obs.flags.c_contiguous
    obs = vector.step(np.zeros((3, 2), dtype=int))[0]
    assert obs.flags.c_contiguous


def test_extra_features_follow_the_reference_observation():
    plain, extra = BatchedAutoScale(4), BatchedAutoScale(4, {"extra_features": ["utilization", "load_trend"]})
    assert extra.single_observation_space.shape == (27,)
    a, _ = plain.reset(seed=7)
    b, _ = extra.reset(seed=7)
    rng = np.random.default_rng(1)
    for _ in range(300):
        actions = rng.integers(0, 11, size=(4, 2))
        (a, *_, info), (b, *_) = plain.step(actions), extra.step(actions)
    assert np.array_equal(a, b[:, :25])  # the reference's 25 numbers are untouched
    serving = (info["active_machines"] + info["warming_machines"]) * 300.0
    assert np.allclose(b[:, 25], np.clip(info["load"] / serving, 0, 2) / 2, atol=1e-6)
    trend = (a[:, 4].astype(float) - a[:, 8]) / (a[:, 8] + 1e-5)
    assert np.allclose(b[:, 26], (np.clip(trend, -1, 1) + 1) / 2, atol=1e-4)
    assert ((b >= 0) & (b <= 1)).all()


@pytest.mark.parametrize("bad", ["utilization", ["utilisation"], ["load_trend", "load_trend"]])
def test_unknown_extra_features_are_refused(bad):
    from orchestrator.autoscale.config import AutoScaleConfigError

    with pytest.raises(AutoScaleConfigError, match="extra_features must be a list of distinct names"):
        BatchedAutoScale(1, {"extra_features": bad})
