"""The clairvoyant reference and the headroom share: what it reads, that it plans right, how the share is stated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.autoscale.baselines import StaticFleet, TargetTracking
from orchestrator.autoscale.batched import BatchedAutoScale
from orchestrator.autoscale.ceiling import Clairvoyant, default_references
from orchestrator.autoscale.evaluation import TRAIN_SEEDS, EvaluationReport, Interval, evaluate, future_load

SHORT = {"max_time_steps": 600}


def test_the_future_load_is_the_load_every_policy_meets():
    seeds = [3, 4, 5]
    ahead = future_load(seeds, SHORT)
    env = BatchedAutoScale(len(seeds), SHORT, autoreset_mode="disabled")
    env.reset(seed=seeds)
    rng = np.random.default_rng(0)
    met = [env.step(rng.integers(0, 11, size=(len(seeds), 2)))[4]["load"].copy() for _ in range(601)]
    assert ahead.shape == (601, 3) and np.array_equal(np.stack(met), ahead)


def _play(policy, seeds, config):
    """Per-minute active fleet, load and downtime of `policy` (as run_episodes drives it)."""
    env = BatchedAutoScale(len(seeds), config, autoreset_mode="disabled")
    obs, info = env.reset(seed=seeds)
    policy.reset(len(seeds))
    policy.see_future_load(future_load(seeds, config))
    rows = []
    for _ in range(config["max_time_steps"] + 1):
        obs, _, _, _, info = env.step(policy.act(obs, info))
        rows.append((info["active_machines"].copy(), info["load"].copy(), info["is_down"].copy()))
    return [np.stack(x) for x in zip(*rows, strict=True)]


def test_it_has_every_machine_serving_in_time_and_no_more_than_it_needs():
    # Without capacity noise, 295 transactions a machine is always enough: every minute after the first ramp-up
    # (the fleet starts at 50 and grows by at most 10 a minute) must be served, so an arrival one minute late
    # shows as downtime; and machines that no minute needs are turned off.
    config = {"max_time_steps": 3000, "tpm_sigma": 0.0}
    active, load, down = _play(Clairvoyant(config, per_machine=295.0), [11, 12, 13, 14], config)
    needed = np.ceil(load / 295.0)
    assert down[60:].sum() == 0 and (active[60:] >= needed[60:]).all()
    assert active[60:].mean() <= 1.03 * needed[60:].mean()


def test_it_earns_more_than_the_tuned_rule_and_is_shown_as_a_reference():
    report = evaluate({"target_tracking": TargetTracking(), **default_references()}, seeds=list(TRAIN_SEEDS[:4]))
    assert report.references == ["clairvoyant"] and report.best_baseline == "target_tracking"
    assert report.ceiling == "clairvoyant" and report.comparisons == {}  # a reference is never compared
    s = report.summary
    assert s["clairvoyant"]["profit"].mean > s["target_tracking"]["profit"].mean
    assert s["clairvoyant"]["downtime_minutes"].mean < s["target_tracking"]["downtime_minutes"].mean
    assert "clairvoyant (reference, not deployable)" in report.to_table()


def test_it_refuses_to_act_without_the_future():
    with pytest.raises(RuntimeError, match="future load"):
        Clairvoyant().act(np.zeros((1, 25), dtype=np.float32), {"t": np.zeros(1)})


def test_the_ratio_interval_by_hand():
    exact = Interval.ratio([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])  # every pair in the same ratio: no spread
    assert exact.mean == 0.5 and exact.low == exact.high == 0.5
    r = Interval.ratio([1.0, 3.0, 2.0, 6.0], [2.0, 4.0, 4.0, 6.0])
    assert r.mean == pytest.approx(12 / 16)
    residuals = np.array([1.0, 3.0, 2.0, 6.0]) - 0.75 * np.array([2.0, 4.0, 4.0, 6.0])
    half = 3.182446305 * residuals.std(ddof=1) / 4.0 / math.sqrt(4)  # t(0.975, 3) * sd / |mean y| / sqrt(n)
    assert (r.low, r.high) == pytest.approx((0.75 - half, 0.75 + half))
    assert math.isnan(Interval.ratio([1.0, 2.0], [1.0, -1.0]).mean)  # no headroom: no share


def test_the_headroom_share_is_paired_by_seed():
    profit = {"B": [10.0, 20.0, 30.0], "C": [14.0, 22.0, 36.0], "P": [12.0, 21.0, 33.0]}
    episodes = {
        n: {
            m: (p if m == "profit" else [0.0, 0.0, 0.0])
            for m in ("profit", "downtime_minutes", "machine_minutes", "failed_transactions", "mean_fleet")
        }
        for n, p in profit.items()
    }
    report = EvaluationReport({"max_time_steps": 9}, [1, 2, 3], ["B"], episodes, ["C"])
    c = report.comparisons["P"]
    assert set(report.comparisons) == {"P"} and c.ceiling == "C"
    assert c.headroom_share.mean == pytest.approx(6 / 12)  # (2 + 1 + 3) / (4 + 2 + 6)
    text = report.to_table()
    assert "headroom: C (knows every future minute's load) earns +4 $/episode over B" in text
    assert "P captures +50 [" in text and "% of the headroom (0 % = B, 100 % = C)" in text


def test_a_report_without_references_states_no_share():
    report = evaluate(
        {"static": StaticFleet(SHORT), "tt": TargetTracking(SHORT)}, episodes=2, env_config=SHORT, baselines=["static"]
    )
    assert report.ceiling is None and report.comparisons["tt"].headroom_share is None
    assert "headroom" not in report.to_table()
