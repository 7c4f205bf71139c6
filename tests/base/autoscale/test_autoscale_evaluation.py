"""The evaluation report: reproducible, and its statistics right on a hand-made example."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from orchestrator.autoscale.baselines import StaticFleet, TargetTracking
from orchestrator.autoscale.evaluation import (
    EVAL_SEEDS,
    METRICS,
    TRAIN_SEEDS,
    EvaluationReport,
    Interval,
    evaluate,
    run_episodes,
    t_quantile_975,
)

SHORT = {"max_time_steps": 300}


def test_train_and_eval_seeds_never_overlap():
    assert TRAIN_SEEDS.stop <= EVAL_SEEDS.start
    assert len(TRAIN_SEEDS) >= 10_000 and len(EVAL_SEEDS) >= 10_000


def test_same_seeds_give_the_identical_report_twice():
    def run():
        policies = {"static": StaticFleet(SHORT), "target": TargetTracking(SHORT)}
        return evaluate(policies, episodes=6, env_config=SHORT, batch_size=4).to_json()

    first = run()
    assert first == run()
    data = json.loads(first)
    assert data["seeds"] == list(EVAL_SEEDS[:6])
    assert data["best_baseline"] in ("static", "target")
    assert len(data["episodes"]["static"]["profit"]) == 6


def test_batching_does_not_change_the_numbers():
    seeds = [5, 6, 7, 8, 9]
    one = run_episodes(TargetTracking(SHORT), seeds, SHORT, batch_size=5)
    split = run_episodes(TargetTracking(SHORT), seeds, SHORT, batch_size=2)
    for m in METRICS:
        assert np.array_equal(one[m], split[m]), m


def test_metrics_add_up_from_the_steps():
    from orchestrator.autoscale import AutoScaleEnv

    policy = StaticFleet(SHORT, machines=30)
    got = run_episodes(policy, [3], SHORT)
    env = AutoScaleEnv(SHORT)
    obs, _ = env.reset(seed=3)
    policy.reset(1)
    profit = down = machines = failed = 0
    for _ in range(301):
        obs, reward, _, _, info = env.step(policy.act(obs[None])[0])
        profit += reward
        down += info["is_down"]
        machines += info["active_machines"]
        failed += info["failed"]
    assert got["profit"][0] == pytest.approx(profit, rel=1e-12)
    assert (got["downtime_minutes"][0], got["machine_minutes"][0], got["failed_transactions"][0]) == (
        down,
        machines,
        failed,
    )
    assert got["mean_fleet"][0] == machines / 301


def hand_made_report() -> EvaluationReport:
    episodes = {
        "A": {"profit": [10, 12, 14], "downtime_minutes": [1, 1, 0]},
        "B": {"profit": [5, 6, 7], "downtime_minutes": [0, 0, 0]},
        "P": {"profit": [13, 13, 17], "downtime_minutes": [0, 1, 0]},
    }
    for values in episodes.values():
        values.update({m: [1.0, 2.0, 3.0] for m in METRICS if m not in values})
    return EvaluationReport({"max_time_steps": 9}, [1, 2, 3], ["A", "B"], episodes)


def test_confidence_interval_by_hand():
    report = hand_made_report()
    a = report.summary["A"]["profit"]
    # mean 12, sd 2, t(0.975, 2) = 4.302653, half-width 4.302653 * 2 / sqrt(3) = 4.968275
    assert (a.mean, a.std, a.n) == (12.0, 2.0, 3)
    assert a.low == pytest.approx(12 - 4.968275, abs=1e-6)
    assert a.high == pytest.approx(12 + 4.968275, abs=1e-6)


def test_best_baseline_and_paired_comparison_by_hand():
    report = hand_made_report()
    assert report.best_baseline == "A"  # mean 12 > 6
    assert set(report.comparisons) == {"P"}
    c = report.comparisons["P"]
    # paired differences P - A: [3, 1, 3], mean 7/3, sd sqrt(4/3), half-width 4.302653 * sqrt(4/3) / sqrt(3)
    half = 4.302653 * math.sqrt(4 / 3) / math.sqrt(3)
    assert c.profit_diff.mean == pytest.approx(7 / 3)
    assert (c.profit_diff.low, c.profit_diff.high) == (
        pytest.approx(7 / 3 - half, abs=1e-6),
        pytest.approx(7 / 3 + half, abs=1e-6),
    )
    # unpaired, the interval would be wider: the pairing is what makes the comparison worth having
    unpaired_half = 1.96 * math.sqrt(4 / 3 + (16 / 3) / 3)
    assert (c.profit_diff.high - c.profit_diff.low) / 2 < unpaired_half
    assert c.profit_diff_percent.mean == pytest.approx(100 * (7 / 3) / 12)
    assert c.downtime_diff.mean == pytest.approx(-1 / 3)
    assert c.no_more_downtime is True
    text = report.to_table()
    assert "best baseline by profit: A" in text
    assert "P vs A: profit +2 [-1, +5] $/episode (+19.4 [-4.5, +43.3] %)" in text and "no more downtime" in text


def test_counts_have_no_negative_bounds_and_minutes_are_as_configured():
    report = hand_made_report()
    down = report.summary["A"]["downtime_minutes"]  # [1, 1, 0]: mean 2/3, the t interval reaches below 0
    assert down.mean == pytest.approx(2 / 3) and down.low == 0.0 and down.high == pytest.approx(2 / 3 + 1.434, abs=1e-3)
    assert report.summary["P"]["profit"].low < 13  # profit can be negative: not clipped (mean 14.3, sd 2.3)
    assert report.comparisons["P"].downtime_diff.low < 0  # a difference is not a count either
    text = report.to_table()
    assert "3 episodes of 9 minutes (max_time_steps)" in text
    assert "[-" not in text.split("\n")[2].split("  ", 2)[-1]  # no negative bound in A's count columns


def test_more_downtime_is_flagged():
    report = hand_made_report()
    report.episodes["P"]["downtime_minutes"] = [2, 2, 2]
    report.__post_init__()
    assert report.comparisons["P"].no_more_downtime is False
    assert "MORE downtime" in report.to_table()


def test_single_episode_has_no_interval():
    i = Interval.of([5.0])
    assert (i.mean, i.low, i.high) == (5.0, None, None)
    assert i.format() == "5"


def test_t_quantiles():
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t_quantile_975(10_000) == pytest.approx(1.960201, abs=1e-6)
    stats = pytest.importorskip("scipy.stats")
    for df in (31, 40, 60, 99, 200, 1000):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-6)


def test_rl_style_policy_is_compared_with_the_best_baseline():
    class AlwaysAddOne:  # no is_baseline attribute: treated like an RL policy
        def act(self, obs, info=None):
            return np.tile([1, 0], (len(obs), 1))

    report = evaluate({"static": StaticFleet(SHORT), "grow": AlwaysAddOne()}, seeds=[1, 2, 3], env_config=SHORT)
    assert report.baselines == ["static"] and report.best_baseline == "static"
    assert report.comparisons["grow"].profit_diff.mean < 0  # ends with ~350 machines: costs more


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one policy"):
        evaluate({})
    with pytest.raises(ValueError, match="not among the policies"):
        evaluate({"a": StaticFleet()}, seeds=[1], baselines=["b"])
    with pytest.raises(ValueError, match="pass one or the other"):
        evaluate({"a": StaticFleet()}, seeds=[1, 2], episodes=3)
