"""Faults done for real: an env runner process killed mid-training, the job's driver killed, the whole Ray
instance stopped; `rlo resume` continues the run from its last checkpoint as one run with two attempts.
(A worker node killed mid-training is in test_multinode.py, on its multi-node cluster.)"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.request
from pathlib import Path

import pytest
import yaml
from support import ok, run_rlo, wait_for

from orchestrator import attach
from orchestrator.local_ray import LocalRayManager

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

JOB = {
    "algorithm": "PPO",
    "env": "CartPole-v1",
    "num_envs_per_env_runner": 4,
    "hyperparameters": {"train_batch_size_per_learner": 500, "minibatch_size": 250, "num_epochs": 2},
    "checkpoint": {"frequency": 1, "at_end": True, "keep": 2},
}


def spec_file(tmp_path, name, iterations):
    path = tmp_path / f"{name}.yaml"
    job = {**JOB, "name": name, "stop": {"training_iteration": iterations}}
    path.write_text(yaml.safe_dump({"cluster": {"head": {"instance_type": "local"}}, "job": job}))
    return path


def rlo(home, *args, timeout=600):
    return run_rlo(*args, home=home, timeout=timeout)


def iterations(run) -> list[int]:
    return [m["training_iteration"] for m in run.metrics()]


def submit(home, tmp_path, name, iters):
    return ok(rlo(home, "submit", spec_file(tmp_path, name, iters))).stdout.splitlines()[0].strip()


def test_env_runner_killed_mid_training_is_restarted_and_the_job_succeeds(rlo_home, tmp_path):
    # 30 short iterations: the kill must land while many are still to come (with 8, CI once saw the job end
    # before RLlib noticed the dead runner, so no restart was ever recorded).
    run = attach(submit(rlo_home, tmp_path, "ft-runner", 30))
    wait_for(lambda: len(run.metrics()) >= 2, what="2 iterations")
    local = LocalRayManager().current()
    req = urllib.request.Request(local.dashboard_url + "/api/v0/actors?detail=true&limit=1000", headers=local.headers())
    with urllib.request.urlopen(req, timeout=30) as r:
        actors = json.loads(r.read())["data"]["result"]["result"]
    runners = [a for a in actors if a["class_name"] == "SingleAgentEnvRunner" and a["state"] == "ALIVE"]
    assert len(runners) == 1, runners  # the plan: 2 vCPUs - 1 for the driver/learner = 1 env runner
    os.kill(runners[0]["pid"], signal.SIGKILL)
    killed_after = len(run.metrics())
    assert killed_after <= 20, f"the job was at iteration {killed_after} of 30 when its runner was killed"

    assert run.wait(timeout=300) == "SUCCEEDED", run.record.message
    assert iterations(run) == list(range(1, 31))
    restarts = [m.get("fault_tolerance/num_remote_worker_restarts") or 0 for m in run.metrics()]
    assert max(restarts) >= 1  # RLlib restarted it, and the metrics say so


def test_driver_killed_then_resume_continues_from_the_last_checkpoint(rlo_home, tmp_path):
    run = attach(submit(rlo_home, tmp_path, "ft-driver", 7))
    wait_for(lambda: len(run.metrics()) >= 3, what="3 iterations")
    pid = json.loads((run.run_dir / "job.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: run.status() in ("FAILED", "STOPPED") and run.status(), what="the job to fail") == "FAILED"

    res = ok(rlo(rlo_home, "resume", run.id, "--wait"))
    assert run.id in res.stdout and "attempt 2 submitted" in res.stderr
    run = attach(run.id)
    assert run.status() == "SUCCEEDED"
    # One run, two attempts; every iteration 1..7 exactly once (those redone after the checkpoint set aside).
    db = sqlite3.connect(rlo_home / "registry.db")
    rows = db.execute("SELECT attempt, status FROM run_attempts WHERE run_id=? ORDER BY attempt", (run.id,)).fetchall()
    assert rows == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert db.execute("SELECT COUNT(*) FROM runs WHERE id LIKE ?", (run.id + "%",)).fetchone() == (1,)
    assert iterations(run) == list(range(1, 8))
    assert "attempt 2 submitted" in ok(rlo(rlo_home, "status", run.id)).stdout
    # Nothing to resume any more.
    again = rlo(rlo_home, "resume", run.id)
    assert again.returncode == 2 and "succeeded; there is nothing to resume" in again.stderr


def test_whole_ray_stopped_then_resume_restarts_it_and_continues(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("RLO_HOME", str(home))  # a Ray of its own, to stop whole
    try:
        run = attach(submit(home, tmp_path, "ft-ray", 6))
        wait_for(lambda: len(run.metrics()) >= 3, what="3 iterations")
        assert LocalRayManager().down()  # the whole Ray instance, with the job's driver and actors
        # The registry still says RUNNING; resume finds out the engine lost the run, then continues it.
        res = ok(rlo(home, "resume", run.id, "--wait"))
        assert "attempt 2 submitted" in res.stderr
        run = attach(run.id)
        assert run.status() == "SUCCEEDED" and iterations(run) == list(range(1, 7))
        attempts = run.registry.attempts(run.id)
        assert [a["status"] for a in attempts] == ["FAILED", "SUCCEEDED"]
        assert attempts[0]["message"].startswith("lost:")
    finally:
        rlo(home, "down")


def test_resume_refuses_what_cannot_continue(rlo_home, tmp_path):
    res = rlo(rlo_home, "resume", "no-such-run")
    assert res.returncode == 2 and "no-such-run" in res.stderr and "Traceback" not in res.stderr
