"""Structured log lines and the progress line."""

import io
import math
import time
from types import SimpleNamespace

from orchestrator import events
from orchestrator.progress import progress_line
from orchestrator.run import Run


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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _EndedRun(Run):
    """A run that has ended, its log at hand: attach replays it (no registry, no engine)."""

    def __init__(self, log: str) -> None:
        self._record = SimpleNamespace(
            id="rlo-t", status="SUCCEEDED", job_id="j", created_at=time.time(), stop_reason=None, message=None, spec={}
        )
        self._log = log

    def refresh(self):
        return self._record

    def logs(self) -> str:
        return self._log

    def wait(self, timeout=None, poll_s=1.0) -> str:
        return "SUCCEEDED"

    def _stop_criteria(self) -> dict[str, float]:
        return {}


def _log() -> str:
    it = [
        {"training_iteration": i, "num_env_steps_sampled_lifetime": 4000 * i, "time_total_s": 4.0 * i} for i in (1, 2)
    ]
    return "\n".join(
        [events.format_event("metrics", it[0]), "a line of the job", events.format_event("metrics", it[1])]
    )


def test_attach_on_a_terminal_keeps_the_progress_line_below_the_log():
    out = _Terminal()
    assert _EndedRun(_log()).attach(out=out) == "SUCCEEDED"
    text = out.getvalue()
    # the line of the job is printed above the progress line, which is then redrawn in place (rich's Live)
    assert "\r\x1b[2Ka line of the job\n[rlo] iter 1 |" in text
    assert text.rstrip("\n").endswith("[rlo] run rlo-t SUCCEEDED")
    last = text[: text.index("[rlo] run rlo-t")]
    assert last.rstrip("\n\x1b[?25h").rsplit("\r\x1b[2K", 1)[-1].startswith("[rlo] iter 2 | 8,000 steps (1,000/s)")


def test_attach_into_a_file_writes_plain_progress_lines():
    out = io.StringIO()
    assert _EndedRun(_log()).attach(out=out) == "SUCCEEDED"
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert lines[0].startswith("[rlo] iter 1 | 4,000 steps") and lines[1] == "a line of the job"
    assert lines[2].startswith("[rlo] iter 2 | 8,000 steps") and lines[-1] == "[rlo] run rlo-t SUCCEEDED"
