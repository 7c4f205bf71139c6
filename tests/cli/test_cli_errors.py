"""Bad input through the real `rlo` command: one clear message, exit code 2, no traceback, nothing submitted
(no registry row, no Ray started)."""

import pytest
from support import ROOT, assert_nothing_submitted, assert_user_error, run_rlo


def rlo(*args, cwd=ROOT):
    return run_rlo(*args, cwd=cwd, timeout=120)


def write(tmp_path, text, name="spec.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


JOB = "job:\n  algorithm: PPO\n  env: CartPole-v1\n"


@pytest.mark.parametrize(
    "text,needles",
    [
        (
            "cluster:\n  workers:\n    - vcpus: 2\n      nodecount: 4\n" + JOB,
            ["cluster.workers[0].nodecount", "did you mean `node_count`?"],
        ),
        ("cluster:\n  head:\n    vcpus: two\n" + JOB, ["cluster.head.vcpus", "two"]),
        ("cluster:\n  workers:\n    - vcpus: 2\n      node_count: -1\n" + JOB, ["node_count", ">= 1"]),
        ("cluster:\n  head:\n    instance_type: STANDARD_NC7\n" + JOB, ["did you mean `STANDARD_NC6`"]),
        ("job:\n  algorithm: DQNN\n  env: CartPole-v1\n", ["job.algorithm", "DQNN"]),
        (JOB + "  stop:\n    episode_reward_maen: 18\n", ["job.stop", "did you mean `episode_reward_mean`"]),
        ("job:\n  algorithm: PPO\n  env: [oops\n", ["not valid YAML", "line 3"]),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "negative-count",
        "unknown-instance",
        "unknown-algorithm",
        "unknown-metric",
        "malformed-yaml",
    ],
)
@pytest.mark.parametrize("command", ["plan", "submit"])
def test_bad_specs(tmp_path, home, text, needles, command):
    spec = write(tmp_path, text)
    res = rlo(command, spec)
    assert_user_error(res, str(spec), *needles)
    assert_nothing_submitted(home)


def test_unknown_env_is_refused_before_submission(tmp_path, home):
    res = rlo("submit", write(tmp_path, "job:\n  algorithm: PPO\n  env: CartPol-v1\n"))
    assert_user_error(res, "unknown env `CartPol-v1`", "did you mean `CartPole-v1`")
    assert_nothing_submitted(home)


def test_unknown_env_module(tmp_path, home):
    res = rlo("submit", write(tmp_path, "job:\n  algorithm: PPO\n  env: no_such_pkg.envs:MyEnv\n"))
    assert_user_error(res, "cannot import the env module `no_such_pkg.envs`")
    assert_nothing_submitted(home)


def test_unknown_hyperparameter(tmp_path, home):
    res = rlo("submit", write(tmp_path, JOB + "  hyperparameters:\n    lrr: 0.1\n"))
    assert_user_error(res, "unknown PPO hyperparameter(s): `lrr` (did you mean `lr`?)")
    assert_nothing_submitted(home)


def test_missing_entry_script(tmp_path, home):
    res = rlo("submit", write(tmp_path, "job:\n  entry_script: nope/train.py\n"))
    assert_user_error(res, "entry script `nope/train.py` does not exist", str(tmp_path / "nope" / "train.py"))
    assert_nothing_submitted(home)


def test_impossible_resources_refused_before_anything_starts(home):
    res = rlo("submit", "cluster_configs/azure-pong-impala.yaml")
    assert_user_error(res, "needs 14 CPUs", "pending forever", "fix:")
    assert_nothing_submitted(home)


def test_too_many_env_runners(tmp_path, home):
    res = rlo("plan", write(tmp_path, "cluster:\n  head:\n    vcpus: 2\n" + JOB + "  num_env_runners: 4\n"))
    assert_user_error(res, "asks for 4 env runners", "at most 1")


def test_unknown_run(home):
    res = rlo("status", "rlo-nope")
    assert_user_error(res, "no run `rlo-nope`")


def test_bad_flag_is_exit_2(home):
    res = rlo("submit")
    assert res.returncode == 2 and "Usage: rlo submit" in res.stderr and "Missing argument 'SPEC'" in res.stderr


def test_debug_variable_shows_the_stack(tmp_path, home, monkeypatch):
    monkeypatch.setenv("RLO_DEBUG", "1")
    res = rlo("plan", write(tmp_path, "job:\n  algorithm: X\n"))
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_plan_prints_the_arithmetic(home):
    res = rlo("plan", "cluster_configs/azure-pong-impala.yaml")
    assert res.returncode == 0, res.stderr
    assert "6 (head) + 4 x 2 (worker-cpu) - 1 reserved for the head role (driver + learner) = 13" in res.stdout
    assert "learner: on the head's GPU" in res.stdout
    assert "stop criterion `episode_reward_mean` is RLlib's legacy name" in res.stdout
