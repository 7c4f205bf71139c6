"""Sweeps: the `sweep:` section, how many trials the plan runs at once, real Tune sweeps (ASHA and PBT) on the
session's Ray, the trials table, and the best trial's checkpoint as the run's."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from orchestrator.errors import PlanError, SpecError
from orchestrator.planner import plan_spec
from orchestrator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
JOB = {"algorithm": "PPO", "env": "CartPole-v1"}


def spec(sweep, job=None, cluster=None):
    return parse_spec({"cluster": cluster or {"head": {"instance_type": "local"}}, "job": job or JOB, "sweep": sweep})


LR = {"hyperparameters.lr": {"loguniform": [1e-4, 1e-2]}}


# --- the spec -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sweep,words",
    [
        ({"parameters": {}}, "the search space is empty"),
        ({"parameters": {"hyperparameters.lr": {"gaussian": [0, 1]}}}, "unknown distribution `gaussian`"),
        ({"parameters": {"hyperparameters.lr": {"uniform": [0.1, 0.01]}}}, "needs low < high"),
        ({"parameters": {"hyperparameters.lr": {"loguniform": [0, 0.01]}}}, "`loguniform` needs low > 0"),
        ({"parameters": {"hyperparameters.lr": {"uniform": [1]}}}, "takes [low, high]"),
        ({"parameters": {"hyperparameters.lr": {"choice": []}}}, "non-empty list"),
        ({"parameters": {"lr": {"choice": [0.1]}}}, "give `hyperparameters.NAME` or `env_config.NAME`"),
        ({"parameters": LR, "metric": "episode_reward_maen"}, "did you mean `episode_reward_mean`"),
        ({"parameters": {"hyperparameters.gamma": {"grid": [0.9, 0.99]}}, "scheduler": {"type": "pbt"}}, "PBT"),
        ({"parameters": LR, "search": "grid"}, "`search: grid` takes only"),
        ({"parameters": LR, "scheduler": {"type": "hyperband"}}, "sweep.scheduler.type"),
    ],
)
def test_bad_sweeps_are_refused_with_the_reason(sweep, words):
    with pytest.raises(SpecError) as e:
        spec(sweep)
    assert words in str(e.value)


def test_a_sweep_needs_a_built_in_algorithm(tmp_path):
    (tmp_path / "s.py").write_text("")
    with pytest.raises(SpecError, match="sweep inside the script or give `job.algorithm`"):
        parse_spec({"job": {"entry_script": "s.py"}, "sweep": {"parameters": LR}}, base_dir=tmp_path)


def test_trial_count_is_grid_points_times_samples():
    s = spec({"parameters": {**LR, "hyperparameters.gamma": {"grid": [0.9, 0.99, 0.999]}}, "num_samples": 2})
    assert s.sweep.trial_count() == 6
    g = spec({"parameters": {"hyperparameters.gamma": {"choice": [0.9, 0.99]}}, "search": "grid", "num_samples": 1})
    assert g.sweep.trial_count() == 2


# --- the plan -------------------------------------------------------------------------------------------------


def test_plan_runs_trials_side_by_side_on_a_small_machine():
    plan = plan_spec(spec({"parameters": LR, "num_samples": 4}))
    # 2 vCPUs: two trials at once, each 1 driver that samples itself, rather than one trial with 1 env runner.
    assert (plan.num_trials, plan.concurrent_trials, plan.num_env_runners, plan.trial_cpus) == (4, 2, 0, 1)
    text = "\n".join(plan.arithmetic)
    assert "2 trial(s) at once" in text and "4 trials in 2 wave(s)" in text
    assert plan.as_env()["RLO_CONCURRENT_TRIALS"] == "2"


def test_plan_gives_leftover_vcpus_to_each_trials_env_runners():
    cluster = {"head": {"vcpus": 6}, "workers": [{"name": "w", "vcpus": 2, "node_count": 4}]}
    plan = plan_spec(spec({"parameters": LR, "num_samples": 3}, cluster=cluster))
    # 14 vCPUs / 3 trials = 4 each: 1 driver/learner + 3 env runners; 9 env runners fill the worker pool first.
    assert (plan.concurrent_trials, plan.num_env_runners) == (3, 3)
    assert plan.env_runners_per_pool == {"w": 8, "head": 1}


def test_plan_with_fixed_env_runners_and_a_gpu_learner():
    cluster = {"head": {"vcpus": 6, "gpus": 1}, "workers": [{"name": "w", "vcpus": 2, "node_count": 4}]}
    job = {**JOB, "num_env_runners": 2}
    plan = plan_spec(spec({"parameters": LR, "num_samples": 4}, job=job, cluster=cluster))
    # Each trial's learner takes the head's one GPU: one trial at a time, whatever the vCPUs allow.
    assert plan.concurrent_trials == 1 and plan.num_env_runners == 2
    assert any("1 GPU(s) // 1 per trial's learner = 1" in line for line in plan.arithmetic)


def test_a_sweep_that_cannot_fit_is_refused():
    with pytest.raises(PlanError, match="the cluster's vCPUs fit 2") as e:
        plan_spec(spec({"parameters": LR, "num_samples": 4, "max_concurrent_trials": 3}))
    assert "max_concurrent_trials" in e.value.fix
    with pytest.raises(PlanError, match="env runners"):
        plan_spec(spec({"parameters": LR}, job={**JOB, "num_env_runners": 5}))


def test_unknown_swept_hyperparameter_is_a_user_error_before_anything_runs(tmp_path):
    home = tmp_path / "home"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"job": JOB, "sweep": {"parameters": {"hyperparameters.lrr": {"choice": [0.1]}}}}))
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "submit", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(home)),
        timeout=120,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "sweep.parameters" in res.stderr and "did you mean `lr`" in res.stderr
    assert not (home / "local-ray" / "state.json").exists()


# --- real sweeps ----------------------------------------------------------------------------------------------


def submit(rlo, tmp_path, name, sweep, stop_iters, checkpoint=None):
    job = {
        **JOB,
        "name": name,
        "num_envs_per_env_runner": 4,
        "hyperparameters": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 3},
        "stop": {"training_iteration": stop_iters},
        "checkpoint": checkpoint or {"frequency": 2, "at_end": True},
        "max_run_duration_seconds": 600,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"cluster": {"head": {"instance_type": "local"}}, "job": job, "sweep": sweep}))
    res = rlo("submit", path, "--wait", check_exit=0)
    return res.stdout.splitlines()[0].strip()


@pytest.fixture(scope="module")
def asha_run(rlo_home, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")

    def rlo(*args, check_exit=None):
        res = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *map(str, args)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            env=dict(os.environ, RLO_HOME=str(rlo_home)),
        )
        if check_exit is not None:
            assert res.returncode == check_exit, res.stdout[-3000:] + res.stderr[-3000:]
        return res

    sweep = {
        "parameters": {
            "hyperparameters.lr": {"loguniform": [1e-4, 3e-3]},
            "hyperparameters.gamma": {"grid": [0.95, 0.99]},
        },
        "num_samples": 2,
        "scheduler": {"type": "asha", "grace_period": 2, "max_t": 5},
        "metric": "episode_reward_mean",
    }
    return rlo, submit(rlo, tmp, "sweep-asha", sweep, 5)


@pytest.mark.ray
@pytest.mark.slow
def test_asha_sweep_table_best_trial_and_its_checkpoint(asha_run, tmp_path):
    from orchestrator import attach

    rlo, run_id = asha_run
    run = attach(run_id)
    sw = json.loads((run.run_dir / "summary.json").read_text())["sweep"]
    assert len(sw["trials"]) == 4 and {t["config"]["hyperparameters.gamma"] for t in sw["trials"]} == {0.95, 0.99}
    assert all(1e-4 <= t["config"]["hyperparameters.lr"] <= 3e-3 for t in sw["trials"])

    # The best trial is the one whose best return (over its iterations, from metrics.jsonl) is the highest.
    best_by_trial: dict[str, float] = {}
    for rec in run.metrics():
        v = rec.get("env_runners/episode_return_mean")
        if isinstance(v, int | float) and math.isfinite(v):
            best_by_trial[rec["trial_id"]] = max(v, best_by_trial.get(rec["trial_id"], -math.inf))
    assert set(best_by_trial) == {t["trial_id"] for t in sw["trials"]}
    assert sw["best_trial"] == max(best_by_trial, key=best_by_trial.get)
    for t in sw["trials"]:
        assert t["best"] == pytest.approx(best_by_trial[t["trial_id"]])
    # ASHA stopped someone early at its rung (grace 2 < max_t 5)... unless all trials were equally good at it.
    iters = sorted(t["iterations"] for t in sw["trials"])
    assert iters[-1] == 5 and iters[0] >= 2

    # The run's checkpoints are the best trial's, so evaluate/deploy take it by default; the policy loads and acts.
    cps = run.checkpoints()
    assert cps and all(sw["best_trial"] in Path(c.path).parent.name for c in cps)
    policy = run.policy("best")
    assert policy.act(np.zeros((3, 4), dtype=np.float32)).shape == (3,)

    # The CLI: the table marks the best trial; --json; the learning-curve PNG.
    res = rlo("sweep", "results", run_id, "--plot", tmp_path / "trials.png", check_exit=0)
    best_row = next(line for line in res.stdout.splitlines() if line.startswith("*"))
    assert sw["best_trial"] in best_row and "TERMINATED" in best_row
    assert (tmp_path / "trials.png").stat().st_size > 10_000
    assert json.loads(rlo("sweep", "results", run_id, "--json", check_exit=0).stdout)["best_trial"] == sw["best_trial"]


@pytest.mark.ray
@pytest.mark.slow
def test_pbt_sweep_perturbs_and_finishes(asha_run, tmp_path):
    from orchestrator import attach

    rlo, _ = asha_run
    sweep = {
        "parameters": {"hyperparameters.lr": {"choice": [1e-4, 1e-3, 3e-3]}},
        "num_samples": 2,
        "scheduler": {"type": "pbt", "perturbation_interval": 2},
    }
    run_id = submit(rlo, tmp_path, "sweep-pbt", sweep, 4, checkpoint={"frequency": 2, "at_end": True})
    sw = json.loads((attach(run_id).run_dir / "summary.json").read_text())["sweep"]
    assert len(sw["trials"]) == 2 and all(t["status"] == "TERMINATED" and t["iterations"] == 4 for t in sw["trials"])
    assert sw["best_trial"] in {t["trial_id"] for t in sw["trials"]}
    # Every trial's lr is one PBT can reach from the space (sampled or perturbed: the choices, or x0.8/x1.2).
    assert all(t["config"]["hyperparameters.lr"] > 0 for t in sw["trials"])


def test_unknown_run_for_sweep_results_is_a_user_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "sweep", "results", "no-such-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(tmp_path)),
        timeout=60,
    )
    assert res.returncode == 2 and "no-such-run" in res.stderr and "Traceback" not in res.stderr
