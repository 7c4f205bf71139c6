"""The main job end to end on the real embedded Ray: PPO on the auto-scaling env, evaluation against the tuned
baselines in the job, and `rlo evaluate` reproducing it from the registry's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator import attach

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def _submit(path: Path, home: Path) -> tuple[str, str]:
    import os
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "submit", str(path), "--wait"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, RLO_HOME=str(home)),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout.splitlines()[0].strip(), res.stdout


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
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
    return path


@pytest.fixture(scope="module")
def autoscale_run(spec_path, rlo_home):
    return _submit(spec_path, rlo_home)


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
    assert set(report["episodes"]) == {"ppo", "static", "step_scaling", "target_tracking", "clairvoyant"}
    # The clairvoyant reference: shown, never the best baseline, and the PPO policy's headroom share against it.
    assert report["references"] == ["clairvoyant"] and report["ceiling"] == "clairvoyant"
    assert "clairvoyant (reference, not deployable)" in out and "ppo captures " in out
    share = report["comparisons"]["ppo"]["headroom_share"]
    ppo, base, ceiling = (report["summary"][n]["profit"]["mean"] for n in ("ppo", best, "clairvoyant"))
    assert share["mean"] == pytest.approx((ppo - base) / (ceiling - base))
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


def test_the_same_spec_and_seed_give_the_same_training_and_evaluation(autoscale_run, spec_path, rlo_home):
    """`job.seed` fixes the env seeds, the network's initialisation and the sampling: a second run of the same spec
    on this machine learns the same returns and earns the same dollars on the same held-out episodes."""
    first, _ = autoscale_run
    second, _ = _submit(spec_path, rlo_home)
    assert second != first
    runs = [attach(r) for r in (first, second)]
    returns = [[m.get("env_runners/episode_return_mean") for m in r.metrics()] for r in runs]
    assert returns[0] == returns[1] and any(x is not None for x in returns[0])
    reports = [json.loads((Path(r.refresh().run_dir) / "evaluation.json").read_text()) for r in runs]
    assert reports[0]["episodes"] == reports[1]["episodes"]
