"""Legacy RLlib configs (the seeds', the SageMaker RL / Azure ML Ray examples'), the algorithms a spec takes (read
from RLlib), and `import gym` in a user's env module."""

from __future__ import annotations

import sys
import textwrap

import pytest
from support import assert_user_error

from orchestrator import Estimator, JobSpec
from orchestrator.algorithms import online_algorithms, registered_algorithms
from orchestrator.contract import PlanNumbers
from orchestrator.envs import validate_env
from orchestrator.errors import UserError
from orchestrator.spec import Spec
from orchestrator.training import build_config, translate_hyperparameters


def settings_and_notices(algorithm: str, hyperparameters: dict) -> tuple[dict, list[str]]:
    translated = translate_hyperparameters(algorithm, hyperparameters)
    return translated.settings, translated.notices


# The config of SageMaker's rl_cartpole_ray example (train-rl-cartpole-ray.py), num_cpus = 4.
SAGEMAKER_CARTPOLE = {
    "use_pytorch": False,
    "gamma": 0.99,
    "kl_coeff": 1.0,
    "num_sgd_iter": 20,
    "lr": 0.0001,
    "sgd_minibatch_size": 1000,
    "train_batch_size": 25000,
    "monitor": True,
    "model": {"free_log_std": True},
    "num_workers": 3,
    "num_gpus": 0,
    "batch_mode": "truncate_episodes",
}


def test_sagemaker_cartpole_config_maps_with_one_notice_per_legacy_key():
    translated = translate_hyperparameters("PPO", SAGEMAKER_CARTPOLE)
    hp, notices = translated.settings, translated.notices
    assert hp["num_epochs"] == 20 and hp["minibatch_size"] == 1000 and hp["train_batch_size"] == 25000
    assert hp["model_config"] == {"free_log_std": True} and translated.planned == {"num_env_runners": 3}
    assert hp["gamma"] == 0.99 and hp["batch_mode"] == "truncate_episodes"
    for gone in ("use_pytorch", "monitor", "num_gpus", "num_sgd_iter", "sgd_minibatch_size", "num_workers"):
        assert gone not in hp
    legacy = ("use_pytorch", "num_sgd_iter", "sgd_minibatch_size", "train_batch_size", "monitor", "num_workers")
    legacy += ("num_gpus",)
    for key in legacy:
        assert sum(f"`{key}" in n for n in notices) == 1, (key, notices)
    assert len(notices) == len(legacy)  # nothing else is noticed (gamma, lr, batch_mode are current names)


def test_more_legacy_names_map_to_the_new_api_stack():
    hp, notices = settings_and_notices(
        "DQN",
        {
            "timesteps_per_iteration": 1000,
            "learning_starts": 500,
            "evaluation_num_workers": 1,
            "metrics_smoothing_episodes": 5,
            "min_iter_time_s": 1,
            "ignore_worker_failures": True,
            "num_cpus_per_worker": 1,
            "model": {"fcnet_hiddens": [64], "post_fcnet_hiddens": [32], "grayscale": True},
        },
    )
    assert hp == {
        "min_sample_timesteps_per_iteration": 1000,
        "num_steps_sampled_before_learning_starts": 500,
        "evaluation_num_env_runners": 1,
        "metrics_num_episodes_for_smoothing": 5,
        "min_time_s_per_iteration": 1,
        "model_config": {"fcnet_hiddens": [64], "head_fcnet_hiddens": [32]},
    }
    assert len(notices) == 9  # one per legacy key (model.post_fcnet_hiddens and model.grayscale included)


def test_schedules_and_vf_share_layers():
    hp, notices = settings_and_notices(
        "PPO", {"lr": 1e-3, "lr_schedule": [[0, 1e-3], [10000, 1e-5]], "vf_share_layers": True}
    )
    assert hp["lr"] == [[0, 1e-3], [10000, 1e-5]]  # the schedule wins over `lr`, as it did
    assert hp["model_config"] == {"vf_share_layers": True}
    assert sum("lr_schedule" in n for n in notices) == 1 and sum("vf_share_layers" in n for n in notices) == 1


@pytest.mark.parametrize(
    "value, says",
    [("tf", "ignored: RLlib's new API stack runs torch only"), ("tf2", "runs torch only"), ("torch", "default")],
)
def test_framework_is_a_notice(value, says):
    hp, notices = settings_and_notices("PPO", {"framework": value})
    assert hp == {} and len(notices) == 1 and says in notices[0] and f'`framework: "{value}"`' in notices[0]


@pytest.mark.parametrize(
    "algorithm, key, value, replacement",
    [
        ("PPO", "horizon", 200, "max_episode_steps"),
        ("PPO", "no_done_at_end", True, "truncated"),
        ("DQN", "exploration_config", {"type": "EpsilonGreedy"}, "epsilon: [[0, 1.0], [10000, 0.05]]"),
        ("DQN", "exploration_final_eps", 0.01, "epsilon: [[0, 1.0], [STEPS, FINAL_EPS]]"),
        ("DQN", "buffer_size", 50000, "replay_buffer_config: {capacity: N}"),
        ("DQN", "prioritized_replay_alpha", 0.6, "PrioritizedEpisodeReplayBuffer, alpha"),
        ("PPO", "observation_filter", "MeanStdFilter", "observation_scale"),
        ("PPO", "num_cpus_per_worker", 2, "job.num_env_runners"),
        ("PPO", "callbacks", {"on_train_result": None}, "rllib_legacy.tune.run"),
        ("PPO", "env", "CartPole-v1", "job.env"),
        ("PPO", "multiagent", {}, "config.multi_agent"),
        ("PPO", "model", {"custom_model": "action_mask"}, "RLModule"),
        ("PPO", "model", {"use_attention": True}, "use_lstm: true"),
        ("PPO", "evaluation_num_episodes", 10, "only to refuse it"),
    ],
)
def test_what_cannot_carry_over_names_the_key_and_its_replacement(algorithm, key, value, replacement):
    with pytest.raises(UserError) as e:
        translate_hyperparameters(algorithm, {"lr": 1e-4, key: value})
    shown = f"model.{next(iter(value))}" if key == "model" else key
    assert f"`job.hyperparameters.{shown}` cannot carry over" in e.value.message
    assert replacement in e.value.fix


def test_an_unknown_model_key_gets_a_hint():
    with pytest.raises(UserError) as e:
        translate_hyperparameters("PPO", {"model": {"fcnet_hidden": [64]}})
    assert "model.fcnet_hidden" in str(e.value) and "did you mean `fcnet_hiddens`" in str(e.value)


def test_train_batch_size_is_the_whole_batch_shared_by_the_learners():
    job = JobSpec(algorithm="PPO", env="CartPole-v1", hyperparameters={"train_batch_size": 1000})
    one = build_config(job, PlanNumbers(0, 1, 0, 0))
    two = build_config(job, PlanNumbers(0, 1, 2, 0))
    # The preset's per-learner 4000 would otherwise win over the user's 1000; its minibatch (512) still fits.
    assert one.train_batch_size_per_learner == 1000 and two.train_batch_size_per_learner == 500
    small = JobSpec(algorithm="PPO", env="CartPole-v1", hyperparameters={"train_batch_size": 128})
    cfg = build_config(small, PlanNumbers(0, 1, 0, 0))
    assert cfg.train_batch_size_per_learner == 128 and cfg.minibatch_size == 128


# --- algorithms ----------------------------------------------------------------------------------------------


def test_algorithms_are_read_from_rllib():
    from ray.rllib.algorithms.registry import ALGORITHMS

    assert registered_algorithms() == tuple(ALGORITHMS)
    online = online_algorithms()
    assert {"PPO", "APPO", "IMPALA", "DQN", "SAC"} <= set(online)
    assert not {"BC", "MARWIL", "CQL", "IQL"} & set(online)  # offline: they learn from recorded data


def test_an_offline_algorithm_is_refused_at_submission():
    assert JobSpec(algorithm="bc", env="CartPole-v1").algorithm == "BC"  # RLlib's name, any case
    with pytest.raises(UserError) as e:
        translate_hyperparameters("BC", {})
    assert "offline" in e.value.message and "PPO" in e.value.fix


@pytest.mark.parametrize(
    "dropped, instead",
    [
        ("A2C", "PPO"),
        ("a3c", "APPO"),
        ("DDPG", "SAC"),
        ("TD3", "SAC"),
        ("ES", "PPO"),
        ("ARS", "PPO"),
        ("PG", "PPO"),
        ("R2D2", "PPO"),
        ("APEX", "DQN"),
        ("Dreamer", "DreamerV3"),
    ],
)
def test_a_dropped_algorithm_says_what_to_use(rlo, tmp_path, dropped, instead):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"job:\n  algorithm: {dropped}\n  env: CartPole-v1\n")
    res = rlo("plan", spec)
    assert_user_error(res, f"RLlib no longer has the algorithm `{dropped}`", f"use `algorithm: {instead}`")


@pytest.mark.parametrize(
    "algorithm, env, hyperparameters",
    [
        ("DQN", "CartPole-v1", {"num_steps_sampled_before_learning_starts": 100}),
        ("SAC", "Pendulum-v1", {"num_steps_sampled_before_learning_starts": 100, "train_batch_size_per_learner": 64}),
    ],
)
def test_tiny_dqn_and_sac_train(rlo_home, algorithm, env, hyperparameters):
    est = Estimator(
        job=JobSpec(
            name=algorithm.lower(),
            algorithm=algorithm,
            env=env,
            hyperparameters=hyperparameters,
            stop={"training_iteration": 1},
        )
    )
    run = est.fit(wait=True, logs=False)
    assert run.status() == "SUCCEEDED", run.logs()[-3000:]
    series = run.metrics()
    assert [m["training_iteration"] for m in series] == [1]
    assert series[0]["num_env_steps_sampled_lifetime"] > 0
    assert run.latest_checkpoint() is not None


# --- import gym ----------------------------------------------------------------------------------------------


def test_import_gym_in_an_env_module_says_use_gymnasium(tmp_path):
    (tmp_path / "old_env.py").write_text("import gym\n\nclass Corridor(gym.Env):\n    pass\n")
    with pytest.raises(UserError) as e:
        validate_env("old_env:Corridor", tmp_path)
    assert "uses `gym`" in e.value.message and "old_env.py, line 1" in e.value.message
    assert "replace `import gym` with `import gymnasium as gym`" in e.value.fix


def test_an_installed_gym_env_class_says_use_gymnasium(tmp_path, monkeypatch):
    # Where `gym` is installed, the import works and the env class is a gym.Env: the same error, before RLlib
    # fails on the old reset/step API.
    (tmp_path / "gym").mkdir()
    (tmp_path / "gym" / "__init__.py").write_text("class Env:\n    pass\n")
    (tmp_path / "older_env.py").write_text("from gym import Env\n\nclass Corridor(Env):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UserError) as e:
            validate_env("older_env:Corridor", tmp_path)
        assert "a `gym.Env`" in e.value.message and "import gymnasium as gym" in e.value.fix
    finally:
        for name in ("gym", "older_env"):
            sys.modules.pop(name, None)


def test_import_gym_is_one_clear_cli_error(rlo, tmp_path):
    (tmp_path / "legacy_env.py").write_text(
        textwrap.dedent("""\
        import numpy as np
        from gym import spaces
    """)
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"job:\n  algorithm: PPO\n  env: legacy_env:Env\n  source_dir: {tmp_path}\n")
    res = rlo("plan", spec, "--check")
    assert_user_error(res, "uses `gym`", "legacy_env.py, line 2", "import gymnasium as gym")


def test_spec_takes_every_online_algorithm():
    for name in online_algorithms():
        assert Spec.model_validate({"job": {"algorithm": name.lower(), "env": "CartPole-v1"}}).job.algorithm == name
