"""`prepare(spec) -> Submission`: what `rlo submit` and the scheduler's preflight check before the engine is
needed, as one value (no Ray is started here)."""

from __future__ import annotations

import pytest

from orchestrator.errors import PlanError, UserError
from orchestrator.package import job_env_vars
from orchestrator.spec import parse_spec
from orchestrator.submission import Submission, check_cluster, prepare


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))


def test_a_submission_carries_the_plan_the_notices_and_the_command(tmp_path):
    spec = parse_spec(
        {"job": {"algorithm": "PPO", "env": "CartPole-v1", "stop": {"episode_reward_mean": 150}}}, base_dir=tmp_path
    )
    sub = prepare(spec)
    assert isinstance(sub, Submission) and sub.spec is spec
    assert sub.plan.numbers.num_env_runners == sub.plan.num_env_runners >= 1
    assert sub.entrypoint == "python -u -m entry_scripts.train"
    assert any("episode_reward_mean" in n and "legacy" in n for n in sub.notices)  # one notice, kept
    assert check_cluster(sub.plan, None) is None  # fits this machine; the embedded Ray is not started


def test_bad_input_is_refused_by_prepare(tmp_path):
    with pytest.raises(UserError, match="hyperparameter"):
        prepare(parse_spec({"job": {"algorithm": "PPO", "env": "CartPole-v1", "hyperparameters": {"lrr": 1}}}))
    big = parse_spec({"job": {"algorithm": "PPO", "env": "CartPole-v1", "num_env_runners": 500}}, base_dir=tmp_path)
    with pytest.raises(PlanError):
        check_cluster(prepare(big).plan, None)


def test_the_jobs_environment_has_the_tracking_server_its_env_vars_and_the_contract(tmp_path):
    spec = parse_spec(
        {
            "job": {"algorithm": "PPO", "env": "CartPole-v1", "env_vars": {"MY_FLAG": "1"}},
            "tracking": {"mlflow": {"tracking_uri": "http://127.0.0.1:5999", "experiment": "exp"}},
        },
        base_dir=tmp_path,
    )
    env = job_env_vars(spec, "rlo-x-1", "/runs/rlo-x-1", {"RLO_NUM_ENV_RUNNERS": "1"}, 0.0)
    assert env["MY_FLAG"] == "1" and env["RLO_RUN_ID"] == "rlo-x-1" and env["RLO_RUN_DIR"] == "/runs/rlo-x-1"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5999" and env["RLO_NUM_ENV_RUNNERS"] == "1"
