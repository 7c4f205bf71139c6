"""The registry's records: runs, checkpoints, endpoints, schedules and their firings, as dataclasses, and how a
stored row becomes one (`from_row`). Rows are read leniently: a row written by an older or newer version, or a
damaged JSON column, still makes a record (unknown columns are left out, what cannot be read is said)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "SUBMIT_FAILED"})


@dataclass
class RunRecord:
    id: str
    name: str
    created_at: float
    updated_at: float
    backend: str
    status: str
    spec: dict
    address: str | None = None
    job_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    message: str | None = None
    stop_reason: str | None = None
    plan: dict | None = None
    command: str | None = None
    run_dir: str | None = None
    final_metrics: dict | None = None
    resumed_from: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        d = dict(row)
        unreadable: list[str] = []

        def js(key):
            value, bad = _lenient_json(d.pop(key, None))
            if bad:
                unreadable.append(key)
            return value

        spec, plan, final, extra = js("spec_json"), js("plan_json"), js("final_metrics_json"), js("extra_json")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        rec = cls(
            spec=spec if isinstance(spec, dict) else {},
            plan=plan if isinstance(plan, dict) else None,
            final_metrics=final if isinstance(final, dict) else None,
            extra=extra if isinstance(extra, dict) else {},
            **known,
        )
        if unreadable:  # a damaged row is still listed, and says what is damaged
            rec.extra["unreadable_fields"] = unreadable
            rec.message = rec.message or f"registry row damaged: unreadable {', '.join(unreadable)}"
        return rec


def _lenient_json(text: Any) -> tuple[Any, bool]:
    """A stored JSON column: (value, damaged). Stored rows are read leniently: one bad row must not stop
    `rlo list` from showing the others."""
    if not text:
        return None, False
    try:
        return json.loads(text), False
    except (ValueError, TypeError):
        return None, True


@dataclass
class CheckpointRecord:
    run_id: str
    path: str
    iteration: int | None
    created_at: float
    metrics: dict | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> CheckpointRecord:
        return cls(
            row["run_id"], row["path"], row["iteration"], row["created_at"], _lenient_json(row["metrics_json"])[0]
        )


@dataclass
class EndpointRecord:
    """A policy served over HTTP: which run and checkpoint, where, since when."""

    name: str
    run_id: str
    checkpoint: str
    url: str
    backend: str
    created_at: float
    address: str | None = None
    undeployed_at: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.undeployed_at is None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> EndpointRecord:
        d = dict(row)
        extra = _lenient_json(d.pop("extra_json"))[0]
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(extra=extra if isinstance(extra, dict) else {}, **known)


@dataclass
class ScheduleRecord:
    """A schedule (`rlo schedule add`): when, in which time zone, the spec it submits, its policies, and the
    earliest fire time not yet handled (`next_fire_at`, a Unix time)."""

    name: str
    cron: str
    timezone: str
    spec: dict
    overlap: str
    catch_up: str
    created_at: float
    updated_at: float
    paused: bool = False
    spec_path: str | None = None
    next_fire_at: float | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ScheduleRecord:
        d = dict(row)
        spec = _lenient_json(d.pop("spec_json"))[0]
        extra = _lenient_json(d.pop("extra_json"))[0]
        spec, extra = (spec if isinstance(spec, dict) else {}), (extra if isinstance(extra, dict) else {})
        d["paused"] = bool(d.get("paused"))
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(spec=spec, extra=extra, **known)


# Firing outcomes. `submitting` is the claim taken before submitting: it exists so that a firing is recorded
# before anything reaches the engine (a restarted scheduler never fires the same time twice).
FIRING_OUTCOMES = ("submitting", "submitted", "skipped", "queued", "cancelled_previous", "missed", "failed")


@dataclass
class FiringRecord:
    """One fire time of a schedule and what came of it."""

    schedule: str
    fire_time: float
    recorded_at: float
    outcome: str
    run_id: str | None = None
    message: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> FiringRecord:
        d = dict(row)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
