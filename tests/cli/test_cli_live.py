"""What `rlo list` and `rlo status` show of a run that is still going: how far it got, from its metrics.jsonl
(a sweep: each trial), not "-" until it ends."""

from __future__ import annotations

import pytest
from support import add_run

from orchestrator.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RLO_REGISTRY", raising=False)
    monkeypatch.delenv("RLO_RUNS_DIR", raising=False)
    return tmp_path / "home"


def running(run_id: str, records: list[dict], sweep: bool = False) -> None:
    spec = {"job": {"algorithm": "PPO", "env": "CartPole-v1"}} | ({"sweep": {"parameters": {}}} if sweep else {})
    # the last line half-written, as while the job appends to it
    add_run(run_id, status="RUNNING", spec=spec, records=records, partial_line='{"training_it')


def rec(trial: str, it: int, ret: float | None) -> dict:
    out = {"trial_id": trial, "training_iteration": it, "num_env_steps_sampled_lifetime": 1000 * it}
    return out | ({"env_runners/episode_return_mean": ret} if ret is not None else {})


def test_a_running_run_shows_how_far_it_got(home, capsys):
    running("rlo-live-1", [rec("t0", 1, None), rec("t0", 2, 41.5), rec("t0", 3, 57.25)])
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rlo-live-1"))
    assert row.split()[4:7] == ["3", "3,000", "57.2"]  # ITER, ENV STEPS, RETURN MEAN
    assert main(["status", "rlo-live-1"]) == 0
    assert "  so far    iter 3, 3,000 env steps, return mean 57.2" in capsys.readouterr().out


def test_a_running_sweep_shows_its_trials(home, capsys):
    running(
        "rlo-sweep-1",
        [rec("a", 1, 10.0), rec("b", 1, None), rec("a", 2, 20.0), rec("b", 2, 35.0), rec("c", 1, None)],
        sweep=True,
    )
    assert main(["list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("rlo-sweep-1"))
    assert row.split()[4:7] == ["2", "5,000", "35"] and "3 trials so far; return mean: the best trial's" in row
    assert main(["status", "rlo-sweep-1"]) == 0
    out = capsys.readouterr().out
    assert "  trial a iter 2, 2,000 env steps, return mean 20" in out
    assert "  trial b iter 2, 2,000 env steps, return mean 35" in out
    assert "  trial c iter 1, 1,000 env steps, return mean -" in out
