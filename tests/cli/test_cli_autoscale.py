"""`rlo evaluate` and `rlo load-profile` without a trained policy (no Ray needed)."""

import json
from pathlib import Path

import pytest
from support import run_rlo

from orchestrator.cli.autoscale import evaluation_env_config, parse_seeds
from orchestrator.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def rlo(*args, home):
    return run_rlo(*args, home=home, timeout=300)


def test_parse_seeds():
    assert parse_seeds("1000000-1000002,7") == [1000000, 1000001, 1000002, 7]
    for bad in ("x", "5-3", "", "-1"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_evaluation_drops_training_side_settings():
    cfg = {"max_time_steps": 1000, "reward_scale": 0.01, "observation_scale": [1] * 25, "warmup_latency": 7}
    assert evaluation_env_config(cfg, None) == {"warmup_latency": 7}
    assert evaluation_env_config(cfg, 500) == {"warmup_latency": 7, "max_time_steps": 500}


def test_baselines_only_table_and_json(tmp_path):
    out = tmp_path / "r.json"
    res = rlo("evaluate", "--baselines-only", "--episodes", "3", "--minutes", "300", "--json", out, home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "best baseline by profit:" in res.stdout and "target_tracking (baseline)" in res.stdout
    report = json.loads(out.read_text())
    assert report["seeds"] == [1_000_000, 1_000_001, 1_000_002]
    assert set(report["episodes"]) == {"static", "step_scaling", "target_tracking", "clairvoyant"}
    assert report["best_baseline"] != "clairvoyant" and report["ceiling"] == "clairvoyant"
    assert "clairvoyant (reference, not deployable)" in res.stdout and "headroom: clairvoyant" in res.stdout


def test_training_seeds_refused(tmp_path):
    res = rlo("evaluate", "--baselines-only", "--seeds", "3,4", home=tmp_path)
    assert res.returncode == 2 and "training seeds" in res.stderr and "Traceback" not in res.stderr


def test_load_profile_png(tmp_path):
    out = tmp_path / "load.png"
    res = rlo("load-profile", "--days", "3", "--seed", "5", "--out", out, home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
