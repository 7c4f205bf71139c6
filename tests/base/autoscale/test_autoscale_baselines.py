"""Rule-based baselines: they read the observation right, do what their names say, and the tuner works."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.autoscale import AutoScaleConfig, BatchedAutoScale
from orchestrator.autoscale.baselines import (
    BASELINES,
    TUNED,
    StaticFleet,
    StepScaling,
    TargetTracking,
    decode_observation,
    default_baselines,
    main,
    make_baseline,
    tune_baseline,
)
from orchestrator.autoscale.evaluation import EVAL_SEEDS, run_episodes


def rollout(policy, steps: int, n: int = 4, **config):
    env = BatchedAutoScale(n, config or None)
    obs, info = env.reset(seed=0)
    policy.reset(n)
    history = []
    for _ in range(steps):
        actions = policy.act(obs)
        obs, _, _, _, info = env.step(actions)
        history.append((actions, info))
    return history


def test_observation_decodes_to_the_true_load_and_fleet():
    config = AutoScaleConfig()
    env = BatchedAutoScale(8)
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(400):
        obs, _, _, _, info = env.step(rng.integers(0, 11, (8, 2)))
        view = decode_observation(obs, config)
        assert np.array_equal(view.load, info["load"])
        assert np.array_equal(view.active, info["active_machines"])
        assert np.array_equal(view.warming, info["warming_machines"])


def test_actions_are_valid_ints():
    for name in BASELINES:
        for actions, _ in rollout(make_baseline(name), 50):
            assert actions.dtype == np.int64 and actions.shape == (4, 2)
            assert actions.min() >= 0 and actions.max() <= 10


def test_static_fleet_reaches_its_size_and_holds_it():
    history = rollout(StaticFleet(machines=23), 60)
    active = np.array([info["active_machines"] for _, info in history])
    assert (active[10:] == 23).all()  # 50 -> 23 at 10 a minute takes 3 minutes
    up = rollout(StaticFleet(machines=80), 60)
    active = np.array([info["active_machines"] for _, info in up])
    assert (active[-20:] == 80).all()
    assert max(a.max() for a, _ in up) == 10  # ordered at the maximum rate, never more than needed
    assert active.max() == 80  # warming machines are counted: no overshoot


def test_target_tracking_holds_utilisation_near_its_target():
    policy = TargetTracking(target_utilization=0.5, min_machines=0, scale_in_cooldown=0)
    history = rollout(policy, 2000, n=8)
    load = np.array([info["load"] for _, info in history[300:]], float)
    active = np.array([info["active_machines"] for _, info in history[300:]], float)
    warming = np.array([info["warming_machines"] for _, info in history[300:]], float)
    # It tracks the fleet it has ordered (serving + warming); the serving fleet lags 5 minutes behind.
    assert np.median(load / ((active + warming) * 300)) == pytest.approx(0.5, abs=0.02)
    assert np.median(load / (active * 300)) == pytest.approx(0.5, abs=0.06)


def test_target_tracking_respects_min_machines_and_cooldown():
    policy = TargetTracking(target_utilization=0.9, min_machines=45, scale_in_cooldown=30)
    history = rollout(policy, 600)
    active = np.array([info["active_machines"] for _, info in history])
    assert active.min() >= 45
    since_out = np.full(4, 10**6)
    for actions, _ in history:
        assert (actions[:, 1][since_out < 30] == 0).all()  # no scale-in within 30 min of a scale-out
        since_out = np.where(actions[:, 0] > 0, 0, since_out + 1)


def test_step_scaling_waits_its_cooldown():
    policy = StepScaling(high=0.5, low=0.4, step_out=3, step_in=2, cooldown=7, min_machines=5)
    history = rollout(policy, 800)
    last = np.full(4, -(10**6))
    for t, (actions, _) in enumerate(history):
        acted = actions.any(axis=1)
        assert (t - last[acted] > 7).all()
        assert set(actions[:, 0]) <= {0, 3} and set(actions[:, 1]) <= {0, 2}
        last[acted] = t


def test_per_env_parameters_equal_separate_runs():
    seeds = [0, 1]
    together = run_episodes(StaticFleet(machines=np.array([20, 20, 40, 40])), seeds * 2, {"max_time_steps": 200})
    alone = run_episodes(StaticFleet(machines=40), seeds, {"max_time_steps": 200})
    assert np.array_equal(together["profit"][2:], alone["profit"])


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="has no parameter"):
        TargetTracking(target=0.5)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("oracle")


def test_defaults_are_the_tuned_values():
    for name, policy in default_baselines().items():
        assert {k: v.item() for k, v in policy.params.items()} == TUNED[name]


def test_tuner_finds_the_best_static_fleet_on_short_episodes():
    config = {"max_time_steps": 300}
    result = tune_baseline("static", seeds=[0, 1, 2], env_config=config)
    assert result.seeds == [0, 1, 2]
    assert len(result.candidates) == 111  # every size from 10 to 120
    best = result.params["machines"]
    profits = dict((int(p["machines"]), s) for p, s in result.candidates)
    assert result.mean_profit == max(profits.values()) == profits[best]
    check = run_episodes(StaticFleet(config, machines=best), [0, 1, 2], config)
    assert check["profit"].mean() == pytest.approx(result.mean_profit)


def test_tuner_random_search_is_reproducible():
    config = {"max_time_steps": 120}
    a = tune_baseline("target_tracking", seeds=[0, 1], candidates=8, rounds=1, env_config=config)
    b = tune_baseline("target_tracking", seeds=[0, 1], candidates=8, rounds=1, env_config=config)
    assert a == b
    assert len(a.candidates) == 8 + 4
    space = TargetTracking.search_space
    for params, _ in a.candidates:
        assert all(space[k][0] <= v <= space[k][1] for k, v in params.items())


def test_tuner_refuses_evaluation_seeds():
    with pytest.raises(ValueError, match="are evaluation seeds"):
        tune_baseline("static", seeds=[1, EVAL_SEEDS.start])


def test_command_line_prints_the_parameters(capsys):
    assert main(["--baseline", "static"]) == 0
    assert f"static: {TUNED['static']}" in capsys.readouterr().out
