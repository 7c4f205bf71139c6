"""Specs that can never work are refused before anything runs: exit 2, one message naming the file, the field and
the fix, no traceback, nothing submitted (issue 11). Through the real `rlo plan` / `rlo submit`, and the Python API."""

import math
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError
from support import assert_nothing_submitted, assert_user_error
from support import run_rlo as rlo

from orchestrator import spec as S
from orchestrator.errors import SpecError, UserError

ROOT = Path(__file__).resolve().parents[2]
JOB = "job:\n  algorithm: PPO\n  env: CartPole-v1\n"
PONG = "job:\n  algorithm: IMPALA\n  env: ALE/Pong-v5\n"
AUTOSCALE = "job:\n  algorithm: PPO\n  env: rlo/AutoScale-v0\n"


def spec_file(tmp_path, content, name="spec.yaml"):
    p = tmp_path / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return p


def refused(tmp_path, home, content, *needles, commands=("plan", "submit"), names_file=True):
    """Every command refuses the spec with exit 2, naming the file and `needles`; nothing is submitted."""
    path = spec_file(tmp_path, content)
    for command in commands:
        res = rlo(*command.split(), path)
        assert_user_error(res, *([str(path)] if names_file else []), *needles)
        assert_nothing_submitted(home)
    return res.stderr


def job(**kw):
    return {"algorithm": "PPO", "env": "CartPole-v1", **kw}


def problems(data):
    with pytest.raises(SpecError) as e:
        S.parse_spec(data, "t.yaml")
    return e.value.problems


# --- 1. encodings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,needles",
    [
        (
            b"# caf\xe9 au lait\n" + JOB.encode(),
            ["not UTF-8 text", "byte 0xe9 at line 1, column 6", "save it as UTF-8"],
        ),
        (JOB.encode("utf-16"), ["UTF-16", "save it as UTF-8"]),
        (bytes(range(256)) * 8, ["binary, not text"]),
    ],
    ids=["latin-1", "utf-16-bom", "binary"],
)
def test_a_spec_that_is_not_utf8_is_a_user_error(tmp_path, home, content, needles):
    refused(tmp_path, home, content, *needles)
    with pytest.raises(SpecError, match="spec.yaml"):
        S.load_spec(tmp_path / "spec.yaml")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    assert S.load_spec(spec_file(tmp_path, b"\xef\xbb\xbf" + JOB.encode())).job.env == "CartPole-v1"


# --- 2. duplicate keys -----------------------------------------------------------------------------------------


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path, home):
    text = JOB + "  hyperparameters:\n    lr: 0.1\n    gamma: 0.9\n    lr: 0.2\n"
    refused(tmp_path, home, text, "at `job.hyperparameters.lr`", "duplicate key `lr` (lines 5 and 7)")


def test_duplicate_keys_anywhere_and_all_of_them(tmp_path):
    f = spec_file(tmp_path, "job: {algorithm: PPO, algorithm: APPO}\ncluster: {}\n" + JOB + "cluster: {name: a}\n")
    with pytest.raises(SpecError) as e:
        S.load_spec(f)
    assert {p[0] for p in e.value.problems} == {"job.algorithm", "job", "cluster"}
    # `1` and `1.0` are one key once read (a dict keeps the last of them).
    f.write_text(JOB + "  script_args: {1: a, 1.0: b}\n")
    with pytest.raises(SpecError, match=r"duplicate key `1.0` \(lines 4 and 4\)"):
        S.load_spec(f)
    # A merge key (`<<: *defaults`) is not a duplicate of the keys it brings in.
    f.write_text(JOB + "  script_args:\n    base: &b {x: 1}\n    more: {<<: *b, x: 2}\n")
    assert S.load_spec(f).job.script_args["more"] == {"x": 2}


# --- 3. tags --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,tag",
    [
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!pairs [a: 1]", "!!pairs"),
        ("!!timestamp 2026-01-01", "!!timestamp"),
        ("!custom 3", "!custom"),
    ],
)
def test_tags_other_than_plain_values_are_refused(tmp_path, home, value, tag):
    text = JOB + f"  script_args:\n    data: {value}\n"
    refused(tmp_path, home, text, "at `job.script_args.data`", f"line 5: a `{tag}` value is not allowed")


def test_dates_stay_text(tmp_path):
    spec = S.load_spec(spec_file(tmp_path, JOB + "  name: 2026-01-01\n  script_args: {since: 2026-01-01 10:00:00}\n"))
    assert spec.job.name == "2026-01-01" and spec.job.script_args == {"since": "2026-01-01 10:00:00"}


# --- 4. alias expansion and size --------------------------------------------------------------------------------

LAUGHS = "\n".join(
    ["    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
)


@pytest.mark.parametrize("field", ["env_config", "hyperparameters", "script_args"])
def test_billion_laughs_is_refused_at_once(tmp_path, home, field):
    # Before: `submit` and `render` ran past 4 minutes and 8 GB (the CLI helper gives up after 120 s).
    text = JOB + f"  {field}:\n" + LAUGHS + "\n"
    refused(
        tmp_path,
        home,
        text,
        f"at `job.{field}.a4`",
        "expands to more than 100,000 values",
        "aliases",
        commands=("plan", "submit", "render kuberay -o " + str(tmp_path / "out.yaml")),
    )


def test_a_few_aliases_are_fine(tmp_path):
    text = "cluster:\n  workers:\n    - &pool {name: a, vcpus: 2}\n    - {<<: *pool, name: b}\n" + JOB
    assert [w.name for w in S.load_spec(spec_file(tmp_path, text)).cluster.workers] == ["a", "b"]


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    with pytest.raises(SpecError, match="alias refers to the value that contains it"):
        S.load_spec(spec_file(tmp_path, JOB + "  script_args: {r: &r [1, *r]}\n"))


@pytest.mark.timeout(60)
def test_a_python_structure_that_expands_hugely_is_refused():
    laughs = ["lol"] * 10
    for _ in range(9):
        laughs = [laughs] * 10  # shared: 10^10 values, a few hundred objects
    [(path, what, fix)] = problems({"job": job(env_config={"x": laughs})})
    assert "more than 100,000 values" in what and "job.source_dir" in fix
    with pytest.raises(ValidationError):
        S.Spec.model_validate({"job": job(hyperparameters={"x": laughs})})
    with pytest.raises(ValidationError, match="more than 100,000 values"):
        S.JobSpec(**job(script_args={"x": laughs}))


def test_deep_nesting_is_refused(tmp_path):
    for depth in (60, 5000):
        f = spec_file(
            tmp_path, "job: {algorithm: PPO, env: CartPole-v1, script_args: {x: " + "[" * depth + "]" * depth + "}}"
        )
        with pytest.raises(SpecError, match="nested deeper than 50 levels"):
            S.load_spec(f)


def test_a_spec_over_1_mb_is_refused_before_parsing(tmp_path, home):
    text = JOB + "  script_args:\n    data: '" + "x" * 2_000_000 + "'\n"
    refused(tmp_path, home, text, "the file is 2,000,0", "at most 1,000,000 bytes (1 MB)")


# --- 5. bounded messages -------------------------------------------------------------------------------------


def test_at_most_20_problems_are_listed(tmp_path, home):
    keys = "".join(f"    key{i}: 1\n" for i in range(50))
    err = refused(tmp_path, home, "cluster:\n  head:\n" + keys + JOB, "(50 problems)", "... and 30 more problems")
    assert err.count("unknown key") == 20 and len(err) < 5000, err


def test_an_echoed_value_is_cut(tmp_path, home):
    text = "cluster:\n  head:\n    vcpus: '" + "9" * 100_000 + "x'\n" + JOB
    err = refused(tmp_path, home, text, "cluster.head.vcpus", "... (100,001 characters)")
    assert len(err) < 1000, err


def test_spec_error_cuts_every_line():
    e = SpecError("f.yaml", [("a" * 10_000, "b" * 10_000, "c" * 10_000)] * 1000)
    assert len(str(e)) < 40_000 and "and 980 more problems" in str(e)


# --- 6. NaN and infinity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,needles",
    [
        (JOB + "  stop: {episode_reward_mean: .nan}\n", ["job.stop.episode_reward_mean", "finite number"]),
        (JOB + "  stop: {time_total_s: .inf}\n", ["job.stop.time_total_s", "finite number"]),
        (
            JOB + "sweep: {parameters: {hyperparameters.lr: {uniform: [0, .inf]}}}\n",
            ["sweep.parameters", "finite bounds"],
        ),
        (JOB + "sweep: {parameters: {hyperparameters.lr: {loguniform: [.nan, 1]}}}\n", ["sweep.parameters", "NaN"]),
        (JOB + "sweep: {parameters: {hyperparameters.lr: {randint: [-.inf, 3]}}}\n", ["sweep.parameters", "finite"]),
        (
            JOB + "sweep:\n  parameters: {hyperparameters.lr: {grid: [0.1]}}\n  scheduler: {reduction_factor: .nan}\n",
            ["sweep.scheduler.reduction_factor", "finite number"],
        ),
        ("cluster:\n  head: {vcpus: 2, memory: .nan}\n" + JOB, ["cluster.head.memory", "finite"]),
    ],
    ids=["stop-nan", "stop-inf", "uniform-inf", "loguniform-nan", "randint-inf", "scheduler-nan", "memory-nan"],
)
def test_nan_and_infinity_are_refused(tmp_path, home, text, needles):
    refused(tmp_path, home, text, *needles)


def _models() -> list[BaseModel]:
    """A valid instance of every spec model, to assign bad values to (`validate_assignment`)."""
    return [
        S.HeadConfiguration(vcpus=2),
        S.WorkerConfiguration(vcpus=2),
        S.ClusterSpec(),
        S.CheckpointConfig(),
        S.FaultToleranceConfig(),
        S.JobSpec(**job()),
        S.SchedulerSpec(),
        S.SweepSpec(parameters={"hyperparameters.lr": {"grid": [0.1]}}),
        S.ScheduleSpec(cron="0 2 * * *"),
        S.MLflowTracking(tracking_uri="http://127.0.0.1:5000"),
        S.TrackingSpec(),
        S.Spec(job=S.JobSpec(**job())),
    ]


def _number_fields(kind):
    for model in _models():
        for name, info in type(model).model_fields.items():
            args = typing.get_args(info.annotation) or (info.annotation,)
            args = [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args]
            if kind in args:
                yield model, name


def test_the_models_cover_every_number_field():
    # If a model is added, add it to _models() so that its numbers are checked too.
    names = {m.__name__ for m in vars(S).values() if isinstance(m, type) and issubclass(m, S.Model)}
    assert names - {"Model", "_Node"} == {type(m).__name__ for m in _models()}
    assert len(list(_number_fields(int))) >= 15 and len(list(_number_fields(float))) >= 3


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_no_float_field_takes_nan_or_infinity(bad):
    for model, name in _number_fields(float):
        with pytest.raises(ValidationError):
            setattr(model, name, bad)
    with pytest.raises(ValidationError):
        S.JobSpec(**job(stop={"training_iteration": bad}))


# --- 7. booleans and fractions are not counts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,field",
    [
        ("cluster:\n  head: {vcpus: true}\n" + JOB, "cluster.head.vcpus"),
        ("cluster:\n  workers: [{vcpus: 2, node_count: true}]\n" + JOB, "cluster.workers[0].node_count"),
        ("cluster:\n  head: {vcpus: 2, gpus: false}\n" + JOB, "cluster.head.gpus"),
        (JOB + "  num_env_runners: true\n", "job.num_env_runners"),
        (JOB + "  seed: true\n", "job.seed"),
        (JOB + "  checkpoint: {frequency: true}\n", "job.checkpoint.frequency"),
        (JOB + "  stop: {training_iteration: true}\n", "job.stop.training_iteration"),
    ],
)
def test_true_is_not_a_number(tmp_path, home, text, field):
    refused(tmp_path, home, text, f"at `{field}`", "not `true`" if "true" in text else "not `false`")


def test_a_fraction_is_not_a_count(tmp_path, home):
    refused(tmp_path, home, "cluster:\n  head: {vcpus: 2.0}\n" + JOB, "cluster.head.vcpus", "write a whole number `2`")


@pytest.mark.parametrize("bad", [True, False, np.True_, 2.0, 2.5], ids=["true", "false", "numpy-true", "2.0", "2.5"])
def test_no_int_field_takes_a_bool_or_a_float(bad):
    for model, name in _number_fields(int):
        with pytest.raises(ValidationError, match="whole number"):
            setattr(model, name, bad)


# --- 8. absurd sizes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,needles",
    [
        (
            "cluster:\n  workers: [{vcpus: 2, node_count: 1000000000000000000000000000000}]\n" + JOB,
            ["node_count", "<= 10,000"],
        ),
        ("cluster:\n  head: {vcpus: 1000000000000000000000000000000}\n" + JOB, ["cluster.head.vcpus", "<= 4,096"]),
        ("cluster:\n  head: {vcpus: 2, memory: 1.0e+30}\n" + JOB, ["cluster.head.memory", "65536 GiB"]),
        ("cluster:\n  head: {vcpus: 2, memory: 100000000GB}\n" + JOB, ["cluster.head.memory", "65536 GiB"]),
        ("cluster:\n  head: {vcpus: 2, memory: 1e30GB}\n" + JOB, ["cluster.head.memory", "65536 GiB"]),
        ("cluster:\n  workers: [{vcpus: 2, gpus: 100000}]\n" + JOB, ["cluster.workers[0].gpus", "<= 64"]),
        (
            "cluster:\n  workers:\n"
            + "".join(f"    - {{name: p{i}, vcpus: 2, node_count: 5000}}\n" for i in range(3))
            + JOB,
            ["15,000 nodes in all", "at most 10,000"],
        ),
        (JOB + "  num_env_runners: 1000000000\n", ["job.num_env_runners", "at most 100,000"]),
        (JOB + "  seed: 100000000000000000000\n", ["job.seed", "4,294,967,295"]),
        (JOB + "sweep:\n  parameters: {hyperparameters.lr: {grid: [0.1, 0.2]}}\n  num_samples: 99999\n", ["trials"]),
    ],
    ids=[
        "nodes",
        "vcpus",
        "memory-number",
        "memory-size",
        "memory-exponent",
        "gpus",
        "nodes-in-all",
        "env-runners",
        "seed",
        "trials",
    ],
)
def test_absurd_sizes_are_refused_with_the_bound(tmp_path, home, text, needles):
    refused(tmp_path, home, text, *needles)


def test_the_bound_says_it_is_generous():
    [(_, _, fix)] = problems({"cluster": {"workers": [{"vcpus": 2, "node_count": 10**30}]}, "job": job()})
    assert fix == "use a value <= 10,000 (a generous bound: a larger value is surely a typo)"


# --- 9. hyperparameter types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hp,needles",
    [
        (
            'lr: "fast"',
            ['`job.hyperparameters.lr` is text (`"fast"`)', "PPOConfig.lr takes a number", "fix: e.g. `lr:"],
        ),
        ("lr: true", ["`job.hyperparameters.lr` is true/false"]),
        ("lr: [[0, fast]]", ["`job.hyperparameters.lr` is a list", "schedule"]),
        ("use_kl_loss: 1", ["`job.hyperparameters.use_kl_loss`", "true or false"]),
        ("model_config: 64", ["`job.hyperparameters.model_config`", "mapping"]),
        ("train_batch_size_per_learner: lots", ["`job.hyperparameters.train_batch_size_per_learner`", "number"]),
    ],
)
def test_a_hyperparameter_of_the_wrong_type_is_refused_before_submission(tmp_path, home, hp, needles):
    # (checked with RLlib's config classes, after the spec has loaded: the message names the field, not the file)
    text = JOB + f"  hyperparameters:\n    {hp}\n"
    refused(tmp_path, home, text, *needles, commands=("plan --check", "submit"), names_file=False)


def test_hyperparameter_types_in_python():
    from orchestrator.training import translate_hyperparameters

    with pytest.raises(UserError, match=r"job.hyperparameters.lr.*text"):
        translate_hyperparameters("PPO", {"lr": "fast"})
    ok = {
        "lr": [[0, 1e-3], [1e6, 1e-5]],  # RLlib's schedule
        "entropy_coeff": [[0, 0.01], [1000, 0.0]],
        "gamma": 1,  # an int where a float is expected
        "grad_clip": None,  # "no clipping"
        "rollout_fragment_length": 50,  # default "auto"
        "num_epochs": 4,
        "use_kl_loss": False,
        "model_config": {"fcnet_hiddens": [64]},
        "clip_rewards": True,  # default None: anything
    }
    assert translate_hyperparameters("PPO", ok).settings == ok
    assert translate_hyperparameters("IMPALA", {"grad_clip": None, "lr": 5e-4}).settings == {
        "grad_clip": None,
        "lr": 5e-4,
    }


def test_a_swept_hyperparameter_of_the_wrong_type_is_refused(tmp_path, home):
    text = JOB + "sweep: {parameters: {hyperparameters.lr: {choice: [fast, 0.1]}}}\n"
    refused(
        tmp_path,
        home,
        text,
        "sweep.parameters",
        "job.hyperparameters.lr",
        commands=("plan --check", "submit"),
        names_file=False,
    )


def test_sweep_name_mapping_ignores_placeholder_types():
    from orchestrator.sweep import config_key

    assert config_key("PPO", "hyperparameters.use_kl_loss") == ("use_kl_loss",)
    assert config_key("PPO", "hyperparameters.num_sgd_iter") == ("num_epochs",)


# --- 10. env_config of envs whose settings are known -------------------------------------------------------


@pytest.mark.parametrize(
    "text,needles",
    [
        (PONG + "  env_config: {frmaestack: 4}\n", ["job.env_config", "`frmaestack`", "did you mean `framestack`?"]),
        (PONG + "  env_config: {framestack: 4.5}\n", ["job.env_config", "`framestack`", "whole number"]),
        (PONG + "  env_config: {repeat_action_probabilty: 0}\n", ["did you mean `repeat_action_probability`?"]),
        (AUTOSCALE + "  env_config: {max_time_step: 50}\n", ["job.env_config", "did you mean `max_time_steps`?"]),
        (AUTOSCALE + "  env_config: {max_time_steps: -5}\n", ["job.env_config", "max_time_steps", ">= 1"]),
        (AUTOSCALE + "  env_config: {observation_scale: [1, 2]}\n", ["observation_scale", "has 2 factors", "25"]),
        (AUTOSCALE + "  env_config: {reward_scale: lots}\n", ["reward_scale", "must be a number"]),
        (AUTOSCALE + "  env_config: {num_envs: 4}\n", ["num_envs", "job.num_envs_per_env_runner"]),
        (JOB + "  env_config: {sutton_barto_rewrd: true}\n", ["did you mean `sutton_barto_reward`?"]),
        (
            PONG + "sweep: {parameters: {env_config.frmaestack: {choice: [2, 4]}}}\n",
            ["sweep.parameters.env_config.frmaestack", "did you mean `framestack`?"],
        ),
        (
            AUTOSCALE + "sweep: {parameters: {env_config.max_action: {grid: [1, 0]}}}\n",
            ["sweep.parameters.env_config.max_action", "max_action must be an integer >= 1"],
        ),
    ],
    ids=[
        "atari-typo",
        "atari-fraction",
        "ale-kwarg-typo",
        "autoscale-typo",
        "autoscale-range",
        "observation-scale-length",
        "reward-scale",
        "num-envs",
        "gym-kwarg-typo",
        "swept-typo",
        "swept-value",
    ],
)
def test_env_config_of_known_envs_is_checked_by_plan_and_submit(tmp_path, home, text, needles):
    refused(tmp_path, home, text, *needles)


def test_env_config_in_python_and_what_the_project_itself_uses():
    with pytest.raises(ValidationError, match="did you mean `framestack`"):
        S.JobSpec(algorithm="IMPALA", env="ALE/Pong-v5", env_config={"frmaestack": 4})
    # What the shipped Pong spec and the auto-scaling entry script put in env_config.
    S.JobSpec(algorithm="IMPALA", env="ALE/Pong-v5", env_config={"dim": 64, "framestack": 4, "frameskip": 1})
    sys.path.insert(0, str(ROOT))
    try:
        from entry_scripts.autoscale_ppo import Preset
    finally:
        sys.path.remove(str(ROOT))
    p = Preset()
    cfg = {
        "max_time_steps": p.train_episode_minutes,
        "reward_scale": p.reward_scale,
        "observation_scale": p.observation_scale,
    }
    S.JobSpec(algorithm="PPO", env="rlo/AutoScale-v0", env_config=cfg)
    S.JobSpec(algorithm="PPO", env="orchestrator.autoscale.env:AutoScaleEnv", env_config=cfg)
    with pytest.raises(ValidationError, match="warmup_latency"):
        S.JobSpec(algorithm="PPO", env="orchestrator.autoscale.env:AutoScaleEnv", env_config={"warmup_latncy": 3})
    # An env of the user's: its settings are its own (and its code is not run to find them).
    S.JobSpec(algorithm="PPO", env="my_envs:Corridor", env_config={"length": 4})


# --- every shipped spec still loads and plans ---------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((ROOT / "cluster_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_plan(path, home):
    res = rlo("plan", path)
    assert res.returncode == 0, res.stderr


def test_billion_laughs_is_refused_within_a_second(tmp_path):
    import time

    path = spec_file(tmp_path, JOB + "  env_config:\n" + LAUGHS + "\n")
    t0 = time.monotonic()
    with pytest.raises(SpecError, match="expands to more than 100,000 values"):
        S.load_spec(path)
    assert time.monotonic() - t0 < 1.0
