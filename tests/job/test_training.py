"""Spec -> RLlib: env resolution, hyperparameter translation (imports RLlib; no Ray cluster)."""

import pytest

from orchestrator.envs import is_atari, validate_env
from orchestrator.errors import UserError
from orchestrator.training import translate_hyperparameters


@pytest.mark.parametrize("env_id", ["PongNoFrameskip-v4", "ALE/Pong-v5", "ale_py:ALE/Pong-v5"])
def test_both_atari_spellings(env_id):
    assert validate_env(env_id) == "atari" and is_atari(env_id)


def test_classic_env_is_not_atari():
    assert validate_env("CartPole-v1") == "gym"


def test_unknown_gym_id_suggests():
    with pytest.raises(UserError, match="did you mean `CartPole-v1`"):
        validate_env("CartPole-v2")


def test_legacy_hyperparameters_are_mapped():
    translated = translate_hyperparameters(
        "IMPALA",
        {
            "sample_batch_size": 50,
            "train_batch_size": 1000,
            "num_sgd_iter": 2,
            "num_data_loader_buffers": 2,
            "model": {"dim": 42},
            "num_workers": 13,
        },
    )
    hp, notices = translated.settings, translated.notices
    assert hp["rollout_fragment_length"] == 50 and hp["num_epochs"] == 2 and hp["train_batch_size"] == 1000
    # the legacy Atari frame size goes to the env's preprocessing, a planner setting to the plan (ignored here)
    assert translated.atari == {"dim": 42} and translated.planned == {"num_env_runners": 13}
    assert "model" not in hp and "num_env_runners" not in hp
    assert "num_data_loader_buffers" not in hp
    assert any("legacy" in n for n in notices) and any("ignored" in n for n in notices)


def test_unknown_hyperparameter_is_refused_with_hint():
    with pytest.raises(UserError) as e:
        translate_hyperparameters("PPO", {"lr": 1e-3, "entropy_coef": 0.01})
    assert "`entropy_coef` (did you mean `entropy_coeff`?)" in str(e.value)


def test_last_error_line_finds_the_workers_exception():
    from callbacks.health import last_error_line

    text = (
        'The actor died because of an error raised in its creation task\n  File "x.py", line 3\n'
        "ModuleNotFoundError: No module named 'cv2'\n"
    )
    assert last_error_line(text) == "ModuleNotFoundError: No module named 'cv2'"


def test_metrics_logger_keeps_the_last_episode_window_and_unscales(tmp_path):
    import json
    from types import SimpleNamespace

    from callbacks.metrics import MetricsLogger

    logger = MetricsLogger(tmp_path, reward_scale=0.01)
    trial = SimpleNamespace(trial_id="t0")
    nan = float("nan")
    for i, ret in enumerate([nan, 25.0, nan], start=1):
        logger.on_trial_result(i, [], trial, {"training_iteration": i, "env_runners": {"episode_return_mean": ret}})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert "env_runners/episode_return_mean" not in rows[0]  # no episode has ended yet
    assert rows[1]["env_runners/episode_return_mean"] == 2500.0  # in the env's units (25 / 0.01)
    assert rows[2]["env_runners/episode_return_mean"] == 2500.0  # carried until a new window arrives

    # The run's final metrics (what `rlo list` / `status` show) keep that last window too, not "-".
    from orchestrator.jobside import summarize

    last = {"training_iteration": 3, "trial_id": "t0", "env_runners": {"episode_return_mean": nan}}
    result = SimpleNamespace(metrics=last, checkpoint=None, best_checkpoints=[], error=None)
    final = summarize([result], {"training_iteration": 3}, None, 0.01, metrics_path=tmp_path / "metrics.jsonl")
    assert final["final"]["env_runners/episode_return_mean"] == 2500.0 and final["final"]["training_iteration"] == 3
    assert "env_runners/episode_return_mean" not in summarize([result], {}, None, 0.01)["final"]  # nothing to keep


def test_observation_and_reward_scaling_wrappers():
    import numpy as np

    from orchestrator.envs import make_env

    scale = [20.0, 1.0, 1.0, 20.0] * 5 + [1.0] * 5
    plain = make_env("rlo/AutoScale-v0", None, {"max_time_steps": 50})
    scaled = make_env(
        "rlo/AutoScale-v0", None, {"max_time_steps": 50, "reward_scale": 0.01, "observation_scale": scale}
    )
    vec = make_env(
        "rlo/AutoScale-v0",
        None,
        {"max_time_steps": 50, "reward_scale": 0.01, "observation_scale": scale, "num_envs": 3},
    )
    o1, _ = plain.reset(seed=3)
    o2, _ = scaled.reset(seed=3)
    ov, _ = vec.reset(seed=3)
    assert np.allclose(o2, o1 * np.asarray(scale, np.float32)) and np.allclose(ov[0], o2)
    _, r1, *_ = plain.step(np.array([1, 0]))
    _, r2, *_ = scaled.step(np.array([1, 0]))
    _, rv, *_ = vec.step(np.array([[1, 0]] * 3))
    assert r2 == pytest.approx(r1 * 0.01) and rv[0] == pytest.approx(r2)
    assert vec.single_observation_space.high[0] == pytest.approx(20.0)


def test_batched_vector_env_only_where_it_keeps_the_training_preprocessing():
    from orchestrator.envs import has_vector_entry_point

    assert has_vector_entry_point("rlo/AutoScale-v0")
    # ale_py registers a vector env with its own frames; Atari must go through RLlib's wrappers (64x64x4).
    assert not has_vector_entry_point("ALE/Pong-v5") and not has_vector_entry_point("PongNoFrameskip-v4")


def test_health_check_class_follows_the_node_loss_policy():
    import cloudpickle

    from callbacks import SamplingHealthCheck, WaitForReplacement, health_check_class

    assert health_check_class("continue", 30) is SamplingHealthCheck
    wait = health_check_class("wait", 30)
    assert issubclass(wait, WaitForReplacement) and wait.timeout_s == 30.0
    # Tune ships the config (and with it this class) to the trial's process.
    assert cloudpickle.loads(cloudpickle.dumps(wait)).timeout_s == 30.0
