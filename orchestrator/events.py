"""Structured lines in a job's log. The job prints one line per event (`[rlo:metrics] {...}`); the submitting
side parses them from the log stream, so progress, checkpoints and the final summary reach it through the
engine's own log API, for a local and a remote cluster alike."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

PREFIX = "[rlo:"
KINDS = ("metrics", "checkpoint", "summary", "notice")


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; numpy scalars are not serializable as such.
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def format_event(kind: str, payload: dict) -> str:
    return f"{PREFIX}{kind}] {json.dumps(_clean(payload), separators=(',', ':'))}"


def emit(kind: str, payload: dict) -> None:
    print(format_event(kind, payload), file=sys.stdout, flush=True)


def parse_line(line: str) -> tuple[str, dict] | None:
    """(kind, payload) for a structured line, else None. Tolerates prefixes Ray adds (`(pid=..) `)."""
    i = line.find(PREFIX)
    if i < 0:
        return None
    end = line.find("] ", i)
    if end < 0:
        return None
    kind = line[i + len(PREFIX) : end]
    if kind not in KINDS:
        return None
    try:
        payload = json.loads(line[end + 2 :])
    except ValueError:
        return None
    return (kind, payload) if isinstance(payload, dict) else None


def parse_log(text: str) -> list[tuple[str, dict]]:
    return [ev for ev in map(parse_line, text.splitlines()) if ev]
