"""Spec -> RLlib: env resolution, hyperparameter translation (imports RLlib; no Ray cluster)."""

import pytest

from orchestrator.errors import UserError
from orchestrator.training import is_atari, translate_hyperparameters, validate_env


@pytest.mark.parametrize("env_id", ["PongNoFrameskip-v4", "ALE/Pong-v5", "ale_py:ALE/Pong-v5"])
def test_both_atari_spellings(env_id):
    assert validate_env(env_id) == "atari" and is_atari(env_id)


def test_classic_env_is_not_atari():
    assert validate_env("CartPole-v1") == "gym"


def test_unknown_gym_id_suggests():
    with pytest.raises(UserError, match="did you mean `CartPole-v1`"):
        validate_env("CartPole-v2")


def test_legacy_hyperparameters_are_mapped():
    hp, notices = translate_hyperparameters(
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
    assert hp["rollout_fragment_length"] == 50 and hp["num_epochs"] == 2 and hp["train_batch_size"] == 1000
    assert hp["_atari"] == {"dim": 42} and hp["_planned"] == {"num_env_runners": 13}
    assert "num_data_loader_buffers" not in hp
    assert any("legacy" in n for n in notices) and any("ignored" in n for n in notices)


def test_unknown_hyperparameter_is_refused_with_hint():
    with pytest.raises(UserError) as e:
        translate_hyperparameters("PPO", {"lr": 1e-3, "entropy_coef": 0.01})
    assert "`entropy_coef` (did you mean `entropy_coeff`?)" in str(e.value)


def test_last_error_line_finds_the_workers_exception():
    from callbacks.health import _last_error_line

    text = (
        'The actor died because of an error raised in its creation task\n  File "x.py", line 3\n'
        "ModuleNotFoundError: No module named 'cv2'\n"
    )
    assert _last_error_line(text) == "ModuleNotFoundError: No module named 'cv2'"
