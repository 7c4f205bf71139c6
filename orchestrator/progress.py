"""The live progress line shown while attached to a run: what it says (`progress_line`), and on a terminal how it
is shown (`LiveLine`, rich). Into a file or a pipe `Run.attach` writes it as plain lines instead."""

from __future__ import annotations

import math
from typing import Any, TextIO

from . import metrics


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _fmt_num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def criterion_distance(name: str, target: float, rec: dict) -> str:
    value = metrics.lookup(rec, name)
    label = metrics.SHORT.get(name, name.rsplit("/", 1)[-1])
    if value is None:
        return f"{label} -/{target:g}"
    done = value >= target
    if name in metrics.MONOTONE and target > 0:
        pct = f" ({min(100.0, 100.0 * value / target):.0f}%)"
    else:
        pct = f" ({value - target:+.1f})" if not done else ""
    return f"{label} {_fmt_num(value)}/{target:g}{pct}{' met' if done else ''}"


def progress_line(rec: dict, stop: dict[str, float], elapsed_s: float, earlier: dict | None = None) -> str:
    """`iter 7 | 28,000 steps (1,210/s) | return 61.2 (+20.3 in 5 iter) | 0:00:41 | stop: return 61.2/150 (-88.8)`

    Steps per second are the job's own (env steps over its training time); `earlier`, a previous iteration's
    record, gives the return mean's trend since then."""
    steps, train_s = rec.get(metrics.ENV_STEPS), rec.get("time_total_s")
    rate = ""
    if isinstance(steps, int | float) and isinstance(train_s, int | float) and train_s > 0:
        rate = f" ({_fmt_num(round(steps / train_s))}/s)"
    ret = rec.get(metrics.RETURN_MEAN)
    trend = ""
    if earlier is not None:
        before, then, now = (
            earlier.get(metrics.RETURN_MEAN),
            earlier.get("training_iteration"),
            rec.get("training_iteration"),
        )
        if (
            isinstance(ret, int | float)
            and math.isfinite(ret)
            and isinstance(before, int | float)
            and math.isfinite(before)
            and then
            and now
            and now > then
        ):
            trend = f" ({ret - before:+,.1f} in {now - then} iter)"
    parts = [
        f"iter {_fmt_num(rec.get('training_iteration'))}",
        f"{_fmt_num(steps)} steps{rate}",
        f"return {_fmt_num(ret)}{trend}",
        _fmt_duration(elapsed_s),
    ]
    if stop:
        parts.append("stop: " + ", ".join(criterion_distance(k, v, rec) for k, v in stop.items()))
    return "[rlo] " + " | ".join(parts)


class LiveLine:
    """On a terminal: the progress line kept at the bottom (rich's `Live`), the log's lines printed above it.

    Nothing is drawn until the first `update`; `close` leaves the last line on the screen. Job output is shown
    as it came: no markup, no highlighting, long lines wrapped by the terminal, not cut."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console

        self._console = Console(file=out, highlight=False)
        self._live: Any = None
        self.text: str | None = None

    def update(self, text: str) -> None:
        from rich.text import Text

        self.text = text
        line = Text(text, no_wrap=True, overflow="ellipsis")
        if self._live is None:
            from rich.live import Live

            # No refresh thread, and sys.stdout/stderr left alone: redrawn on each update only.
            self._live = Live(
                line, console=self._console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
            )
            self._live.start(refresh=True)
        else:
            self._live.update(line, refresh=True)

    def print(self, line: str) -> None:
        """A log line, above the progress line."""
        from rich.text import Text

        self._console.print(Text(line), soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
