"""What `rlo attach` / `rlo submit --wait` (and `Run.attach()`) show of a job's log by default: the tool's own
view and the job's own output, without the engine's chatter. Nothing is dropped from the log itself: `--raw`
shows every line as it came, and `rlo logs RUN` prints the whole log.

Hidden are lines only the engine writes, recognised by their form:
- Ray's and Tune's log records (`2026-12-01 18:14:37,149 INFO worker.py:1691 -- ...`), in any process;
- lines a Ray worker or actor forwards to the driver (`(PPO pid=4169) ...`, `(SingleAgentEnvRunner pid=...)`,
  `(raylet)`): RLlib's deprecation notices, the actor-died line a stopped env runner leaves (it reads like an
  error and is not one), per-process warnings;
- Tune's status tables and banners (box-drawing lines, `Trial status:`, `View detailed results here`, ...);
- Python warnings (`.../box.py:236: UserWarning: ...` and the source line after it);
- the Job API's own lines (`Running entrypoint for job ...`, `Runtime env is setting up.`).

Everything else is shown: `[rlo]` lines, what the entry script prints (the main job's evaluation table), and any
traceback of the driver. When a job fails, the last hidden lines are shown too (the error may be in them).
"""

from __future__ import annotations

import re
from collections import deque

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[,.]\d+\s+(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+:\d+ -- ",
        r"^\(.*? pid=\d+(, ip=[0-9a-f.:]+)?\) ",  # forwarded from a worker or an actor: `(PPO pid=41) ...`
        r"^\(raylet(, ip=[0-9a-f.:]+)?\)",
        r"^[╭│├╰┌└─]",  # Tune's tables
        r"^(Trial status: |Current time: |Logical resource usage: |View detailed results here: |"
        r"To visualize your results with TensorBoard|Trial \S+ (started with configuration:|completed after |"
        r"finished iteration |saved a checkpoint)|Training (started|finished) |Wrapping up the trial|"
        r"Trial \S+ errored after )",
        r"^\S+\.py:\d+: \w*(Warning|Deprecation)\w*: ",  # warnings.warn's first line ...
        r"^  (gym\.logger\.warn|logger\.warn|warnings\.warn)\(",  # ... and its source line
        r"^(Running entrypoint for job |Runtime env is setting up\.)",
        r"^Install gputil for GPU system monitoring\.",
    )
)


def is_engine_line(line: str) -> bool:
    """True for a line only the engine (Ray, Tune, RLlib, the Job API) writes."""
    text = _ANSI.sub("", line).rstrip("\r")
    return any(p.search(text) for p in _PATTERNS)


class LogView:
    """Decides, line by line, what the default view shows; counts and keeps the tail of what it hides."""

    def __init__(self, keep_tail: int = 20) -> None:
        self.hidden = 0
        self.tail: deque[str] = deque(maxlen=keep_tail)
        self._blank_run = True  # collapse the blank lines that hidden blocks leave

    def shows(self, line: str) -> bool:
        if is_engine_line(line):
            self.hidden += 1
            self.tail.append(line)
            self._blank_run = True
            return False
        if not line.strip():
            if self._blank_run:
                return False
            self._blank_run = True
            return True
        self._blank_run = False
        return True

    def footer(self, run_id: str, failed: bool) -> list[str]:
        """What to say at the end: how much was hidden and how to see it; on failure, the last hidden lines."""
        if not self.hidden:
            return []
        out = []
        if failed and self.tail:
            out.append(f"[rlo] the last {len(self.tail)} lines of the engine's log (hidden above):")
            out += ["  " + _ANSI.sub("", t) for t in self.tail]
        out.append(f"[rlo] {self.hidden} lines of the engine's log not shown: `rlo logs {run_id}` (or --raw)")
        return out
