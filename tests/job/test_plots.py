"""`rlo plot` and the live plot of `rlo attach --plot`: PNGs rendered from runs' real metrics records (runs
registered by hand in a private registry, with a metrics.jsonl as the job's callback writes it)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import add_run

from orchestrator import metrics
from orchestrator.plots import DPI, FIGSIZE, LivePlot, plot_runs
from orchestrator.run import attach

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RLO_REGISTRY", raising=False)
    monkeypatch.delenv("RLO_RUNS_DIR", raising=False)
    return tmp_path / "home"


def record(i: int, steps_per_iter: int, ret: float | None, spread: float = 10.0) -> dict:
    rec = {
        "timestamp": 1_800_000_000 + 2.0 * i,
        "training_iteration": i,
        "time_total_s": 2.1 * i,
        "time_this_iter_s": 2.1,
        metrics.ENV_STEPS: float(steps_per_iter * i),
        "trial_id": "abc_00000",
    }
    if ret is not None:
        rec |= {
            metrics.RETURN_MEAN: ret,
            "env_runners/episode_return_min": max(0.0, ret - spread),
            "env_runners/episode_return_max": ret + spread,
        }
    return rec


def fake_run(run_id: str, records: list[dict], stop: dict[str, float]) -> str:
    add_run(run_id, spec={"job": {"algorithm": "PPO", "env": "CartPole-v1", "stop": stop}}, records=records)
    return run_id


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels_near(img: np.ndarray, hex_color: str, tol: float = 0.08) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img[..., :3] - rgb).max(axis=-1) < tol).sum())


def test_rlo_plot_draws_several_runs_on_one_figure(home, tmp_path):
    a = fake_run("rlo-cartpole-a", [record(i, 4000, 20 + 15 * i) for i in range(1, 11)], {"episode_reward_mean": 150})
    fake_run(
        "rlo-cartpole-b",
        [record(i, 2000, 10 + 8 * i) for i in range(1, 16)],
        {"env_runners/episode_return_mean": 150, "num_env_steps_sampled_lifetime": 30000},
    )
    out = tmp_path / "figs" / "compare.png"
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "plot", a, "rlo-cartpole-b", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(home)),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    assert png_size(out) == (WIDTH, HEIGHT)

    import matplotlib.image as mpimg

    img = mpimg.imread(out)
    assert img.shape[:2] == (HEIGHT, WIDTH)
    # Both runs' curves (matplotlib's first two cycle colors) and the stop line are drawn.
    assert pixels_near(img, "#1f77b4") > 500 and pixels_near(img, "#ff7f0e") > 500
    assert pixels_near(img, "#595959", tol=0.03) > 200  # the shared stop line (return 150) in gray
    assert not list(out.parent.glob(".*.tmp")), "written atomically, no temp file left"


def test_plot_of_one_run_defaults_to_the_working_folder(home, tmp_path, monkeypatch):
    run_id = fake_run("rlo-one", [record(i, 1000, 5.0 * i) for i in range(1, 4)], {"training_iteration": 3})
    monkeypatch.chdir(tmp_path)
    out = plot_runs([attach("rlo-o")])  # a unique prefix, as everywhere
    assert out == tmp_path / f"{run_id}.png" and png_size(out) == (WIDTH, HEIGHT)


def test_runs_without_finished_episodes_still_plot(home, tmp_path):
    # Long episodes (the auto-scaling env: 1000+ steps) leave early iterations without a return.
    run_id = fake_run("rlo-autoscale", [record(i, 500, None) for i in range(1, 3)], {})
    out = plot_runs([attach(run_id)], tmp_path / "x.png")
    assert png_size(out) == (WIDTH, HEIGHT)


def test_unknown_run_is_a_user_error(home):
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "plot", "rlo-nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, RLO_HOME=str(home)),
        timeout=120,
    )
    assert res.returncode == 2 and "no run `rlo-nope`" in res.stderr and "Traceback" not in res.stderr


def test_live_plot_renders_when_records_arrive(home, tmp_path):
    run_id = fake_run("rlo-live", [record(1, 1000, 10.0)], {"episode_reward_mean": 50})
    run = attach(run_id)
    out = tmp_path / "live.png"
    live = LivePlot(run, out, interval_s=3600)  # the refreshes below are driven by hand
    assert live.refresh() and png_size(out) == (WIDTH, HEIGHT)
    first = out.read_bytes()
    assert not live.refresh(), "nothing new: no re-render"
    with (run.run_dir / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(record(2, 1000, 30.0)) + "\n")
    assert live.refresh()
    assert out.read_bytes() != first
    live.start()
    live.stop()  # joins the thread; renders only if something new came
    assert png_size(out) == (WIDTH, HEIGHT)
