"""The scalar env: steps computed by hand, observation layout, episode end, seeding, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from orchestrator.autoscale import ENV_ID, AutoScaleConfigError, AutoScaleEnv, InvalidActionError

NOOP = (0, 0)


class TestFleet:
    def test_machine_turned_on_serves_after_exactly_warmup_latency_steps(self, scripted_env):
        env, _ = scripted_env([1000])
        active = []
        obs, *_, info = env.step((3, 0))
        active.append(info["active_machines"])
        assert info["warming_machines"] == 3
        np.testing.assert_allclose(obs[20:25], [0, 0, 0, 0, 0.3], rtol=1e-6)  # arrives in 5 minutes
        for _ in range(5):
            obs, *_, info = env.step(NOOP)
            active.append(info["active_machines"])
        assert active == [50, 50, 50, 50, 50, 53]
        assert info["warming_machines"] == 0

    @pytest.mark.parametrize("latency", [1, 3])
    def test_other_latencies(self, scripted_env, latency):
        env, obs = scripted_env([1000], warmup_latency=latency)
        assert obs.shape == (20 + latency,)
        _, _, _, _, info = env.step((2, 0))
        for _ in range(latency - 1):
            assert env.step(NOOP)[4]["active_machines"] == 50
        assert env.step(NOOP)[4]["active_machines"] == 52

    def test_fleet_is_capped_at_max_machines(self, scripted_env):
        env, _ = scripted_env([1000], max_machines=55)
        for _ in range(3):
            env.step((10, 0))
        for _ in range(10):
            info = env.step(NOOP)[4]
        assert info["active_machines"] == 55  # 50 + 30 ordered, capped; the excess is lost, as in the reference

    def test_turning_off_stops_at_zero(self, scripted_env):
        env, _ = scripted_env([1000], initial_machines=3)
        info = env.step((0, 10))[4]
        assert info["active_machines"] == 0
        assert info["capacity"] == 0 and info["failed"] == 1000 and info["is_down"] == 1

    def test_turn_off_happens_before_arrivals_join(self, scripted_env):
        env, _ = scripted_env([1000], initial_machines=2, warmup_latency=1)
        env.step((4, 0))
        info = env.step((0, 10))[4]  # 2 - 10 -> 0, then the 4 arrive
        assert info["active_machines"] == 4


class TestReward:
    def test_downtime_threshold_exactly_99_5_percent_is_up(self, scripted_env):
        # one machine of exactly 995 tpm: load 1000 -> 99.5 % served -> not down
        env, _ = scripted_env([1000, 1001], initial_machines=1, tpm_per_machine=995)
        _, reward, _, _, info = env.step(NOOP)
        assert (info["capacity"], info["succeeded"], info["failed"], info["is_down"]) == (995, 995, 5, 0)
        assert reward == pytest.approx(995 * 0.9 / 1000 - 1 * 0.05)
        # load 1001 -> 99.40 % -> down, pays 200
        _, reward, _, _, info = env.step(NOOP)
        assert (info["succeeded"], info["failed"], info["is_down"]) == (995, 6, 1)
        assert reward == pytest.approx(995 * 0.9 / 1000 - 200 - 0.05)

    def test_reward_arithmetic_and_components(self, scripted_env):
        env, _ = scripted_env([4321])
        _, reward, terminated, truncated, info = env.step(NOOP)
        assert info["capacity"] == 50 * 300
        assert reward == pytest.approx(4321 * 0.9 / 1000 - 50 * 0.05)
        assert reward == info["revenue"] - info["downtime_penalty"] - info["fleet_cost"]
        assert (info["downtime_penalty"], info["fleet_cost"]) == (0.0, pytest.approx(2.5))
        assert not terminated and not truncated

    def test_settings_change_the_reward(self, scripted_env):
        env, _ = scripted_env([2000], machine_cost=0.1, transaction_val=2.0, initial_machines=10)
        assert env.step(NOOP)[1] == pytest.approx(2000 * 2.0 / 1000 - 10 * 0.1)

    def test_capacity_noise_is_one_draw_for_the_fleet(self):
        env = AutoScaleEnv()
        env.reset(seed=1)
        caps = [env.step(NOOP)[4]["capacity"] / 50 for _ in range(3000)]
        assert np.mean(caps) == pytest.approx(300, abs=3)
        assert np.std(caps) == pytest.approx(30, rel=0.1)  # a per-machine draw would give 30 / sqrt(50)


class TestObservation:
    def test_layout_rate_major_and_first_observation_quirk(self, scripted_env):
        env, obs0 = scripted_env([5000])
        # reset: load 0 counts as downtime (reference quirk): is_down=1 in every average after one update
        rates = np.array([1, 0.1, 0.01, 0.001, 0.0001])
        np.testing.assert_allclose(obs0[2:20:4], rates, rtol=1e-6)
        np.testing.assert_allclose(obs0[0:20:4], 0)  # load
        np.testing.assert_allclose(obs0[3:20:4], rates * 50 / 833, rtol=1e-6)  # active
        obs1 = env.step(NOOP)[0]
        signals = np.array([5000 / 1e5, 0.0, 0.0, 50 / 833])
        ema = np.array([[0, 0, 1, 50 / 833]]) * rates[:, None]  # the float64 state after reset
        expected = ema * (1 - rates[:, None]) + signals * rates[:, None]
        np.testing.assert_allclose(obs1[:20], expected.ravel(), rtol=1e-6)
        assert obs1.dtype == np.float32 and obs1.shape == (25,)

    def test_zero_load_quirk_can_be_switched_off(self, scripted_env):
        env, obs0 = scripted_env([5000], zero_load_is_downtime=False)
        assert obs0[2] == 0.0

    def test_failed_fraction_signal(self, scripted_env):
        env, _ = scripted_env([20_000], initial_machines=10)  # capacity 3000
        obs = env.step(NOOP)[0]
        assert obs[1] == pytest.approx(17_000 / 20_000, rel=1e-6)
        assert obs[2] == 1.0

    def test_observations_stay_in_the_space(self):
        env = AutoScaleEnv(max_time_steps=500)
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        for _ in range(500):
            assert env.observation_space.contains(obs)
            obs = env.step(rng.integers(0, 11, 2))[0]


class TestEpisode:
    def test_episode_has_max_time_steps_plus_one_steps_and_is_truncated(self):
        env = AutoScaleEnv(max_time_steps=7)
        env.reset(seed=0)
        flags = [env.step(NOOP)[2:4] for _ in range(8)]
        assert flags[:-1] == [(False, False)] * 7
        assert flags[-1] == (False, True)
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(NOOP)

    def test_step_before_reset_is_an_error(self):
        with pytest.raises(RuntimeError, match="before reset"):
            AutoScaleEnv().step(NOOP)

    def test_same_seed_same_episode_and_unseeded_resets_continue_reproducibly(self):
        def run(seed):
            env = AutoScaleEnv(max_time_steps=50)
            out = [env.reset(seed=seed)[0]]
            rng = np.random.default_rng(1)
            for _ in range(3):  # three episodes: the last two from unseeded resets
                for _ in range(51):
                    obs, r, *_ = env.step(rng.integers(0, 11, 2))
                    out.append(np.append(obs, r))
                out.append(env.reset()[0])
            return out

        a, b, c = run(5), run(5), run(6)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))

    def test_episodes_after_reset_differ(self):
        env = AutoScaleEnv(max_time_steps=20)
        env.reset(seed=0)
        first = [env.step(NOOP)[4]["load"] for _ in range(21)]
        env.reset()
        second = [env.step(NOOP)[4]["load"] for _ in range(21)]
        assert first != second

    def test_registered_with_gymnasium(self):
        env = gym.make(ENV_ID, max_time_steps=3)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.shape == (25,)
        assert env.action_space == gym.spaces.MultiDiscrete([11, 11])
        steps = 0
        truncated = False
        while not truncated:
            obs, _, _, truncated, _ = env.step(env.action_space.sample())
            steps += 1
        assert steps == 4
        assert env.unwrapped.config.max_time_steps == 3

    def test_passes_gymnasium_env_checker(self):
        from gymnasium.utils.env_checker import check_env

        check_env(AutoScaleEnv(max_time_steps=50), skip_render_check=True)

    def test_accepts_rllib_style_config_dict_and_kwargs(self):
        env = AutoScaleEnv({"max_time_steps": 12, "warmup_latency": 2}, tpm_sigma=0)
        assert (env.config.max_time_steps, env.config.warmup_latency, env.config.tpm_sigma) == (12, 2, 0.0)
        assert env.config.max_machines == 833
        assert AutoScaleEnv(tpm_per_machine=500).config.max_machines == 500  # int(2.5e5 / 500)


class TestBadActions:
    @pytest.mark.parametrize(
        ("action", "fragment"),
        [
            ((11, 0), "out of range"),
            ((0, -1), "out of range"),
            ((1.5, 0), "not whole numbers"),
            ((float("nan"), 0), "NaN"),
            ((1, 2, 3), "shape (3,)"),
            ([[1, 2]], "shape (1, 2)"),
            (np.array([True, False]), "dtype bool"),
            (("a", "b"), "dtype <U1"),
        ],
    )
    def test_rejected_with_what_was_received_and_what_is_allowed(self, action, fragment):
        env = AutoScaleEnv()
        env.reset(seed=0)
        with pytest.raises(InvalidActionError) as err:
            env.step(action)
        message = str(err.value)
        assert fragment in message
        assert "each in 0..10" in message
        assert isinstance(err.value, ValueError)

    def test_whole_floats_and_unsigned_ints_are_accepted(self):
        env = AutoScaleEnv()
        env.reset(seed=0)
        env.step(np.array([2.0, 0.0]))
        env.step(np.array([1, 0], dtype=np.uint8))
        assert env.warmup_queue[-2:] == [2, 1]


class TestBadSettings:
    @pytest.mark.parametrize(
        ("settings", "fragment"),
        [
            ({"warmup_latency": -1}, "warmup_latency must be an integer >= 1"),
            ({"warmup_latency": 2.5}, "warmup_latency must be an integer"),
            ({"tpm_per_machine": 0}, "tpm_per_machine must be a number > 0"),
            ({"tpm_sigma": -0.1}, "tpm_sigma must be a number >= 0"),
            ({"downtime_percent": 0}, "downtime_percent must be a percentage in (0, 100]"),
            ({"downtime_percent": 100.5}, "downtime_percent must be a percentage in (0, 100]"),
            ({"initial_machines": 900}, "initial_machines must be between 0 and max_machines (833)"),
            ({"max_machines": 10}, "initial_machines must be between 0 and max_machines (10)"),
            ({"machine_cost": float("nan")}, "machine_cost must be a finite number"),
            ({"max_time_steps": True}, "max_time_steps must be an integer"),
            ({"zero_load_is_downtime": "yes"}, "zero_load_is_downtime must be true or false"),
        ],
    )
    def test_rejected_at_construction(self, settings, fragment):
        with pytest.raises(AutoScaleConfigError) as err:
            AutoScaleEnv(settings)
        assert fragment in str(err.value)
        assert "got" in str(err.value)
        assert isinstance(err.value, ValueError)

    def test_unknown_key_suggests_the_closest(self):
        with pytest.raises(AutoScaleConfigError, match="did you mean `warmup_latency`") as err:
            AutoScaleEnv({"warmup_latncy": 3})
        assert err.value.field == "warmup_latncy"

    def test_unknown_key_without_close_match_lists_known_settings(self):
        with pytest.raises(AutoScaleConfigError, match="known settings: warmup_latency"):
            AutoScaleEnv(flux_capacitor=1)

    def test_render_mode_is_refused(self):
        with pytest.raises(ValueError, match="no render modes"):
            AutoScaleEnv(render_mode="human")
