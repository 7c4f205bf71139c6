"""Real jobs on the real embedded local Ray: submit, attach, status, list, metrics, checkpoints, stop, the
entry-script contract, max run duration, and failing fast when env runners cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import wait_for

from orchestrator import Estimator, JobSpec, attach, metrics
from orchestrator.local_ray import LocalRayManager
from orchestrator.registry import Registry
from orchestrator.settings import settings

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parents[1] / "data"


def spec_file(tmp_path: Path, job: dict, name="spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"cluster": {"head": {"instance_type": "local"}}, "job": job}))
    return p


def long_cartpole(**extra) -> dict:
    return {
        "algorithm": "PPO",
        "env": "CartPole-v1",
        "num_envs_per_env_runner": 4,
        "hyperparameters": {"train_batch_size_per_learner": 1000, "minibatch_size": 250, "num_epochs": 1},
        "stop": {"env_runners/episode_return_mean": 100000},
        **extra,
    }


def test_cartpole_submit_attach_to_stop_criterion(rlo, rlo_home):
    res = rlo("submit", "cluster_configs/local-cartpole.yaml", check_exit=0)
    run_id = res.stdout.strip()
    assert run_id.startswith("rlo-cartpole-ppo-")

    res = rlo("attach", run_id, check_exit=0)
    progress = [ln for ln in res.stdout.splitlines() if ln.startswith("[rlo] iter ")]
    assert progress and "stop: return" in progress[-1]
    assert "[rlo:metrics]" not in res.stdout  # shown as progress lines, not raw JSON
    # The tool's own view: the engine's chatter (Tune's tables, Ray's log records, actors' lines) is counted and
    # left in the log, which `rlo logs` prints whole.
    assert "Trial status:" not in res.stdout and " pid=" not in res.stdout and " INFO " not in res.stdout
    assert f"lines of the engine's log not shown: `rlo logs {run_id}`" in res.stdout
    assert "Trial status:" in rlo("logs", run_id, check_exit=0).stdout
    assert f"[rlo] run {run_id} SUCCEEDED: stop criterion met: env_runners/episode_return_mean" in res.stdout

    run = attach(run_id)
    rec = run.refresh()
    assert rec.status == "SUCCEEDED" and rec.ended_at and rec.stop_reason.startswith("stop criterion met")
    assert rec.final_metrics[metrics.RETURN_MEAN] >= 150

    series = run.metrics()
    assert [r["training_iteration"] for r in series] == list(range(1, len(series) + 1))
    assert series[-1][metrics.RETURN_MEAN] == rec.final_metrics[metrics.RETURN_MEAN]
    assert all(r[metrics.ENV_STEPS] > 0 for r in series)

    cps = run.checkpoints()
    assert cps and all(Path(c.path, "algorithm_state.pkl").exists() or any(Path(c.path).iterdir()) for c in cps)
    assert cps[-1].iteration == rec.final_metrics["training_iteration"]

    run_dir = Path(rec.run_dir)
    assert yaml.safe_load((run_dir / "spec.yaml").read_text())["job"]["env"] == "CartPole-v1"
    assert "submit cluster_configs/local-cartpole.yaml" in (run_dir / "command.txt").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "succeeded"
    assert list((run_dir / "output").rglob("events.out.tfevents.*")), "TensorBoard files from Tune"

    res = rlo("list", check_exit=0)
    first = res.stdout.splitlines()[1]
    assert first.startswith(run_id) and "SUCCEEDED" in first

    status = json.loads(rlo("status", run_id, "--json", check_exit=0).stdout)
    assert status["status"] == "SUCCEEDED" and status["checkpoints"] == [c.path for c in cps]


def test_embedded_ray_is_reused(rlo, rlo_home):
    rlo("up", check_exit=0)
    first = LocalRayManager().current()
    rlo("up", check_exit=0)
    second = LocalRayManager().current()
    assert first is not None and second.pid == first.pid and second.dashboard_url == first.dashboard_url


def test_stop_a_running_job(rlo, rlo_home, tmp_path):
    run_id = rlo("submit", spec_file(tmp_path, long_cartpole(name="to-stop")), check_exit=0).stdout.strip()
    run = attach(run_id)
    wait_for(lambda: run.status() == "RUNNING" and run.metrics(), 120, "the first iteration")
    res = rlo("stop", run_id, check_exit=0)
    assert f"{run_id}: STOPPED" in res.stdout
    assert run.status() == "STOPPED"
    rlo("attach", run_id, check_exit=1)  # attach exits 0 only for a job that succeeded
    assert "already ended: STOPPED" in rlo("stop", run_id, check_exit=0).stdout


def test_max_run_duration_bounds_the_job(rlo, tmp_path):
    spec = spec_file(tmp_path, long_cartpole(name="bounded", max_run_duration_seconds=45))
    res = rlo("submit", spec, "--wait", check_exit=0)
    run_id = res.stdout.splitlines()[0].strip()
    rec = attach(run_id).refresh()
    assert rec.stop_reason == "max_run_duration_seconds reached"
    assert rec.ended_at - rec.created_at < 45 + 60


def test_missing_opencv_fails_fast_with_the_workers_error(rlo, tmp_path):
    # On a node without opencv, RLlib's Atari env runners die and plain RLlib samples zero steps forever.
    job = {
        "name": "no-opencv",
        "algorithm": "IMPALA",
        "env": "ALE/Pong-v5",
        "env_vars": {"PYTHONPATH": str(DATA / "hidden_cv2")},
        "stop": {"training_iteration": 50},
    }
    res = rlo("submit", spec_file(tmp_path, job), "--wait", check_exit=1)
    run_id = res.stdout.splitlines()[0].strip()
    rec = attach(run_id).refresh()
    assert rec.status == "FAILED"
    assert "opencv" in rec.message and "cannot be made on a Ray worker" in rec.message
    assert rec.ended_at - rec.created_at < 60
    assert "Traceback" not in res.stdout.split("[rlo] run")[-1]


def test_user_entry_script_gets_the_contract(rlo, tmp_path):
    job = {
        "name": "contract",
        "entry_script": str(DATA / "user_job" / "contract_job.py"),
        "script_args": {"episodes": 3, "config": {"lr": 0.1}},
        "num_envs_per_env_runner": 2,
    }
    res = rlo("submit", spec_file(tmp_path, job), "--wait", check_exit=0)
    run_id = res.stdout.splitlines()[0].strip()
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("CONTRACT "))
    got = json.loads(line.removeprefix("CONTRACT "))
    assert got == {
        "run_id": run_id,
        "num_env_runners": 1,
        "num_gpus": 0.0,
        "num_envs_per_env_runner": 2,
        "model_dir": str(settings().runs_dir / run_id / "model"),
        "episodes": 3,
        "config": {"lr": 0.1},
        "spec_job_name": "contract",
        "helper_module_value": 42,
    }
    assert (settings().runs_dir / run_id / "model" / "model.txt").read_text() == "trained\n"


def test_python_api_mirrors_the_cli(rlo_home):
    est = Estimator(
        job=JobSpec(
            name="api",
            algorithm="PPO",
            env="CartPole-v1",
            num_envs_per_env_runner=4,
            hyperparameters={"train_batch_size_per_learner": 1000, "minibatch_size": 250},
            stop={"training_iteration": 2},
        )
    )
    assert est.plan().num_env_runners == 1
    run = est.fit(wait=True, logs=False)
    assert run.status() == "SUCCEEDED"
    again = Estimator.attach(run.id)
    assert [m["training_iteration"] for m in again.metrics()] == [1, 2]
    assert again.latest_checkpoint() is not None
    assert Registry(settings().registry_path).get(run.id).command.startswith("Estimator.fit()")


def test_users_own_env_by_import_path(rlo, tmp_path):
    job = {
        "name": "corridor",
        "algorithm": "PPO",
        "env": "corridor_env:Corridor",
        "env_config": {"length": 4},
        "source_dir": str(DATA / "user_job"),
        "stop": {"training_iteration": 2},
        "hyperparameters": {"train_batch_size_per_learner": 500, "minibatch_size": 100, "num_epochs": 2},
    }
    res = rlo("submit", spec_file(tmp_path, job), "--wait", check_exit=0)
    series = attach(res.stdout.splitlines()[0].strip()).metrics()
    assert len(series) == 2 and series[-1][metrics.ENV_STEPS] >= 1000


@pytest.mark.slow
def test_seed_pong_entry_script_trains_impala_on_atari(rlo, tmp_path):
    # The seed's script, both Atari spellings: PongNoFrameskip-v4 through the script's own --env.
    job = {
        "name": "pong-script",
        "entry_script": str(ROOT / "entry_scripts" / "pong_impala.py"),
        "script_args": {
            "run": "IMPALA",
            "env": "PongNoFrameskip-v4",
            "config": {"num_workers": 1, "train_batch_size_per_learner": 500},
            "stop": {"training_iteration": 3},
        },
        "num_envs_per_env_runner": 2,
    }
    res = rlo("submit", spec_file(tmp_path, job), "--wait", check_exit=0)
    run = attach(res.stdout.splitlines()[0].strip())
    series = run.metrics()
    assert [r["training_iteration"] for r in series] == [1, 2, 3]
    assert series[-1][metrics.ENV_STEPS] > 0
    assert run.latest_checkpoint() is not None


def test_appo_runs_through_the_generic_entry_script(rlo, tmp_path):
    job = {
        "name": "appo",
        "algorithm": "APPO",
        "env": "CartPole-v1",
        "num_envs_per_env_runner": 4,
        # An asynchronous algorithm may report its first iterations before any sample arrives: stop on steps
        # (the seeds' legacy name, mapped), bounded by iterations.
        "stop": {"timesteps_total": 2000, "training_iteration": 40},
    }
    res = rlo("submit", spec_file(tmp_path, job), "--wait", check_exit=0)
    run = attach(res.stdout.splitlines()[0].strip())
    assert run.metrics()[-1][metrics.ENV_STEPS] >= 2000
    assert run.refresh().stop_reason.startswith("stop criterion met: num_env_steps_sampled_lifetime")
