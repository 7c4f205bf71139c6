"""Structured log lines and the progress line."""

import math

from orchestrator import events
from orchestrator.progress import progress_line


def test_round_trip_with_ray_prefix_and_nan():
    line = events.format_event("metrics", {"training_iteration": 3, "x": float("nan"), "n": [1, 2]})
    assert events.parse_line("(PPO pid=12) " + line) == ("metrics", {"training_iteration": 3, "x": None, "n": [1, 2]})


def test_ignores_other_lines():
    assert events.parse_line("[rlo] training finished") is None
    assert events.parse_line("[rlo:metrics] {not json") is None
    assert events.parse_line('[rlo:bogus] {"a": 1}') is None
    text = "hello\n" + events.format_event("summary", {"status": "succeeded"}) + "\nbye"
    assert events.parse_log(text) == [("summary", {"status": "succeeded"})]


def test_numpy_values_are_serialized():
    import numpy as np

    line = events.format_event("metrics", {"a": np.float64(1.5), "b": np.int64(2), "c": np.float32(math.inf)})
    assert events.parse_line(line)[1] == {"a": 1.5, "b": 2, "c": None}


def test_progress_line_shows_distance_to_each_criterion():
    rec = {
        "training_iteration": 7,
        "num_env_steps_sampled_lifetime": 28000,
        "env_runners/episode_return_mean": 61.25,
        "time_total_s": 30,
    }
    line = progress_line(rec, {"env_runners/episode_return_mean": 150, "time_total_s": 600}, 41)
    assert line == (
        "[rlo] iter 7 | 28,000 steps (933/s) | return 61.2 | 0:00:41 | stop: return 61.2/150 (-88.8), time 30/600 (5%)"
    )
    # With an earlier iteration's record: the return mean's trend since then.
    earlier = {"training_iteration": 2, "env_runners/episode_return_mean": 20.0}
    assert "| return 61.2 (+41.2 in 5 iter) |" in progress_line(rec, {}, 41, earlier)
    assert "(+" not in progress_line(rec, {}, 41, {"training_iteration": 2})  # no return then: no trend


def test_progress_line_marks_met_criteria_and_missing_values():
    line = progress_line(
        {"training_iteration": 40}, {"training_iteration": 40, "env_runners/episode_return_mean": 1}, 3700
    )
    assert "iter 40/40 (100%) met" in line and "return -/1" in line and "1:01:40" in line
