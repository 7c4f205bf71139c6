"""The main job end to end on the real embedded Ray: PPO on the auto-scaling env, evaluation against the tuned
baselines in the job, and `rlo evaluate` reproducing it from the registry's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator import attach

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def autoscale_run(tmp_path_factory, rlo_home):
    import os
    import subprocess
    import sys

    spec = yaml.safe_load((ROOT / "cluster_configs" / "local-autoscale.yaml").read_text())
    spec["job"]["entry_script"] = str(ROOT / "entry_scripts" / "autoscale_ppo.py")
    spec["job"]["num_envs_per_env_runner"] = 16
    # A tiny budget: what matters here is the path (train -> checkpoint -> evaluate), not the policy's quality.
    spec["job"]["script_args"] = {
        "stop": {"training_iteration": 3},
        "eval_episodes": 4,
        "train_batch_size": 2048,
        "minibatch_size": 256,
        "num_epochs": 2,
        "train_episode_minutes": 200,
    }
    path = tmp_path_factory.mktemp("autoscale") / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "submit", str(path), "--wait"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, RLO_HOME=str(rlo_home)),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout.splitlines()[0].strip(), res.stdout


def test_job_trains_and_evaluates_against_baselines(autoscale_run):
    run_id, out = autoscale_run
    best = out.split("best baseline by profit: ", 1)[1].split()[0]
    assert best in ("static", "step_scaling", "target_tracking")
    assert f"ppo vs {best}: profit" in out
    run = attach(run_id)
    rec = run.refresh()
    assert rec.status == "SUCCEEDED"
    assert rec.extra["policy"]["env"] == "rlo/AutoScale-v0"
    assert rec.extra["policy"]["env_config"]["max_time_steps"] == 200
    report = json.loads((Path(rec.run_dir) / "evaluation.json").read_text())
    assert report["seeds"] == list(range(1_000_000, 1_000_004))  # held-out seeds, not training ones
    assert set(report["episodes"]) == {"ppo", "static", "step_scaling", "target_tracking"}
    # Episodes of 200 minutes in training; evaluation at the env's default length.
    assert report["env_config"]["max_time_steps"] == 10_000
    series = run.metrics()
    assert [m["training_iteration"] for m in series] == [1, 2, 3]
    # Returns are reported in dollars, not in the scaled units PPO learned from (reward_scale 0.01).
    returns = [m["env_runners/episode_return_mean"] for m in series if "env_runners/episode_return_mean" in m]
    assert returns and min(abs(r) for r in returns) > 100


def test_rlo_evaluate_reproduces_the_jobs_evaluation(autoscale_run, rlo, tmp_path):
    run_id, _ = autoscale_run
    out = tmp_path / "eval.json"
    res = rlo("evaluate", run_id, "--episodes", "4", "--json", out, check_exit=0)
    assert "ppo vs " in res.stdout
    mine = json.loads(out.read_text())
    job = json.loads((Path(attach(run_id).refresh().run_dir) / "evaluation.json").read_text())
    assert mine["episodes"] == job["episodes"]  # same checkpoint, same seeds, deterministic policy


def test_rlo_evaluate_refuses_training_seeds_and_other_envs(autoscale_run, rlo):
    run_id, _ = autoscale_run
    res = rlo("evaluate", run_id, "--seeds", "0-9", check_exit=2)
    assert "training seeds" in res.stderr and "Traceback" not in res.stderr
