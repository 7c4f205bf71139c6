"""The run registry: an embedded SQLite database on the submitting side that records every submission, and the
endpoints, schedules and firings of the submitting side's commands.

Written only by the submitting side (the CLI / Python API), never by the job, so it works the same for a
local engine and a remote cluster. `Registry` is the store's queries; the file, its connections and its versioned
schema are `registry_db` / `registry_schema`, the records and their lenient reading `records`.
"""

from __future__ import annotations

import builtins
import json
import time
from pathlib import Path
from typing import Any

from .errors import RunNotFound, did_you_mean
from .records import FIRING_OUTCOMES, CheckpointRecord, EndpointRecord, FiringRecord, RunRecord, ScheduleRecord
from .registry_db import RegistryDatabase


class Registry:
    """Runs (and their checkpoints and attempts), endpoints, schedules and firings, in the SQLite file at `path`."""

    def __init__(self, path: str | Path) -> None:
        self.db = RegistryDatabase(path)
        self.path = self.db.path

    def check_writable(self) -> None:
        """Refuse early (before anything is started or submitted) when the registry cannot be written."""
        self.db.check_writable()

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    # --- runs -------------------------------------------------------------------------------------------------

    def create(self, rec: RunRecord) -> None:
        with self.db.transaction() as c:
            c.execute(
                """INSERT INTO runs (id, name, created_at, updated_at, started_at, ended_at, backend, address, job_id,
                   status, message, stop_reason, spec_json, plan_json, command, run_dir, final_metrics_json,
                   resumed_from, extra_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    rec.id,
                    rec.name,
                    rec.created_at,
                    rec.updated_at,
                    rec.started_at,
                    rec.ended_at,
                    rec.backend,
                    rec.address,
                    rec.job_id,
                    rec.status,
                    rec.message,
                    rec.stop_reason,
                    json.dumps(rec.spec),
                    json.dumps(rec.plan) if rec.plan is not None else None,
                    rec.command,
                    rec.run_dir,
                    json.dumps(rec.final_metrics) if rec.final_metrics is not None else None,
                    rec.resumed_from,
                    json.dumps(rec.extra),
                ),
            )

    _COLUMNS = {
        "status",
        "message",
        "stop_reason",
        "started_at",
        "ended_at",
        "job_id",
        "address",
        "run_dir",
        "command",
    }
    _JSON_COLUMNS = {"final_metrics": "final_metrics_json", "plan": "plan_json", "extra": "extra_json"}

    def update(self, run_id: str, **fields: Any) -> None:
        sets: list[str] = ["updated_at=?"]
        values: list[Any] = [time.time()]
        for key, value in fields.items():
            if key in self._JSON_COLUMNS:
                sets.append(f"{self._JSON_COLUMNS[key]}=?")
                values.append(json.dumps(value) if value is not None else None)
            elif key in self._COLUMNS:
                sets.append(f"{key}=?")
                values.append(value)
            else:
                raise TypeError(f"unknown run field {key}")
        with self.db.transaction() as c:
            cur = c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*values, run_id))
            if cur.rowcount == 0:
                raise RunNotFound(f"no run `{run_id}` in the registry ({self.path})")

    def get(self, run_id: str) -> RunRecord:
        if not isinstance(run_id, str) or not run_id.strip():
            raise RunNotFound("no run id given (it is empty)", fix="give a run id or a unique prefix (`rlo list`)")
        with self.db.transaction() as c:
            row = c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                # Accept a unique prefix, as git does for commits: a literal prefix (no LIKE: `%` and `_` in an id
                # are characters, never wildcards).
                rows = c.execute(
                    "SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY created_at DESC", (len(run_id), run_id)
                ).fetchall()
                if len(rows) == 1:
                    row = rows[0]
                elif len(rows) > 1:
                    raise RunNotFound(
                        f"`{run_id}` matches {len(rows)} runs", fix="give more of the run id (`rlo list` shows them)"
                    )
        if row is None:
            hint = did_you_mean(run_id, [r.id for r in self.list(limit=200)])
            raise RunNotFound(
                f"no run `{run_id}` in the registry ({self.path})",
                fix=hint or "`rlo list` shows the runs this registry knows (RLO_HOME / RLO_REGISTRY pick another)",
            )
        return RunRecord.from_row(row)

    def list(self, limit: int | None = None, status: str | None = None) -> builtins.list[RunRecord]:
        q, args = "SELECT * FROM runs", []
        if status:
            q += " WHERE status=?"
            args.append(status)
        q += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            q += f" LIMIT {int(limit)}"
        with self.db.transaction() as c:
            return [RunRecord.from_row(r) for r in c.execute(q, args).fetchall()]

    # --- checkpoints --------------------------------------------------------------------------------------------

    def add_checkpoint(self, run_id: str, path: str, iteration: int | None, metrics: dict | None = None) -> bool:
        """Record a checkpoint; returns False when it was already recorded."""
        with self.db.transaction() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO checkpoints (run_id, path, iteration, created_at, metrics_json) "
                "VALUES (?,?,?,?,?)",
                (run_id, path, iteration, time.time(), json.dumps(metrics) if metrics else None),
            )
            return cur.rowcount == 1

    def checkpoints(self, run_id: str) -> builtins.list[CheckpointRecord]:
        with self.db.transaction() as c:
            rows = c.execute(
                "SELECT * FROM checkpoints WHERE run_id=? ORDER BY iteration, created_at", (run_id,)
            ).fetchall()
        return [CheckpointRecord.from_row(r) for r in rows]

    # --- attempts (the first submission and each `rlo resume`) ------------------------------------------------

    def add_attempt(
        self,
        run_id: str,
        attempt: int,
        job_id: str,
        *,
        from_checkpoint: str | None = None,
        from_iteration: int | None = None,
        when: float | None = None,
    ) -> None:
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO run_attempts (run_id, attempt, job_id, submitted_at, from_checkpoint, from_iteration) "
                "VALUES (?,?,?,?,?,?)",
                (run_id, attempt, job_id, when or time.time(), from_checkpoint, from_iteration),
            )

    def end_attempt(self, run_id: str, attempt: int, status: str, message: str | None = None) -> None:
        with self.db.transaction() as c:
            c.execute(
                "UPDATE run_attempts SET status=?, message=?, ended_at=? WHERE run_id=? AND attempt=? "
                "AND ended_at IS NULL",
                (status, message, time.time(), run_id, attempt),
            )

    def attempts(self, run_id: str) -> builtins.list[dict]:
        with self.db.transaction() as c:
            rows = c.execute("SELECT * FROM run_attempts WHERE run_id=? ORDER BY attempt", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    # --- endpoints ----------------------------------------------------------------------------------------------

    def add_endpoint(self, rec: EndpointRecord) -> EndpointRecord | None:
        """Record a deployed endpoint; a live endpoint of the same name is marked replaced. Returns that one."""
        with self.db.transaction() as c:
            old = c.execute("SELECT * FROM endpoints WHERE name=? AND undeployed_at IS NULL", (rec.name,)).fetchone()
            if old is not None:
                c.execute("UPDATE endpoints SET undeployed_at=? WHERE id=?", (rec.created_at, old["id"]))
            c.execute(
                "INSERT INTO endpoints (name, run_id, checkpoint, url, backend, address, created_at, undeployed_at, "
                "extra_json) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    rec.name,
                    rec.run_id,
                    rec.checkpoint,
                    rec.url,
                    rec.backend,
                    rec.address,
                    rec.created_at,
                    rec.undeployed_at,
                    json.dumps(rec.extra),
                ),
            )
        return EndpointRecord.from_row(old) if old is not None else None

    def endpoint(self, name: str) -> EndpointRecord | None:
        """The live endpoint called `name`, or None."""
        with self.db.transaction() as c:
            row = c.execute("SELECT * FROM endpoints WHERE name=? AND undeployed_at IS NULL", (name,)).fetchone()
        return EndpointRecord.from_row(row) if row is not None else None

    def endpoints(self, include_undeployed: bool = False) -> builtins.list[EndpointRecord]:
        q = "SELECT * FROM endpoints"
        if not include_undeployed:
            q += " WHERE undeployed_at IS NULL"
        with self.db.transaction() as c:
            return [EndpointRecord.from_row(r) for r in c.execute(q + " ORDER BY created_at DESC, id DESC")]

    def mark_undeployed(self, name: str, when: float | None = None) -> bool:
        """Mark the live endpoint `name` as undeployed; False when there is none."""
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE endpoints SET undeployed_at=? WHERE name=? AND undeployed_at IS NULL",
                (when or time.time(), name),
            )
            return cur.rowcount == 1

    # --- schedules ----------------------------------------------------------------------------------------------

    def add_schedule(self, rec: ScheduleRecord, replace: bool = False) -> bool:
        """Store a schedule; returns False when one of that name exists (and `replace` is False). Replacing
        keeps the schedule's firings (its history and what it already fired)."""
        row = (
            rec.cron,
            rec.timezone,
            json.dumps(rec.spec),
            rec.spec_path,
            rec.overlap,
            rec.catch_up,
            int(rec.paused),
            rec.updated_at,
            rec.next_fire_at,
            json.dumps(rec.extra),
        )
        with self.db.transaction() as c:
            exists = c.execute("SELECT 1 FROM schedules WHERE name=?", (rec.name,)).fetchone() is not None
            if exists and not replace:
                return False
            if exists:
                c.execute(
                    "UPDATE schedules SET cron=?, timezone=?, spec_json=?, spec_path=?, overlap=?, catch_up=?, "
                    "paused=?, updated_at=?, next_fire_at=?, extra_json=? WHERE name=?",
                    (*row, rec.name),
                )
            else:
                c.execute(
                    "INSERT INTO schedules (cron, timezone, spec_json, spec_path, overlap, catch_up, paused, "
                    "updated_at, next_fire_at, extra_json, name, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*row, rec.name, rec.created_at),
                )
        return True

    def schedule(self, name: str) -> ScheduleRecord | None:
        with self.db.transaction() as c:
            row = c.execute("SELECT * FROM schedules WHERE name=?", (name,)).fetchone()
        return ScheduleRecord.from_row(row) if row is not None else None

    def schedules(self) -> builtins.list[ScheduleRecord]:
        with self.db.transaction() as c:
            return [ScheduleRecord.from_row(r) for r in c.execute("SELECT * FROM schedules ORDER BY name")]

    _SCHEDULE_COLUMNS = {"paused", "next_fire_at", "overlap", "catch_up"}

    def update_schedule(self, name: str, **fields: Any) -> bool:
        sets, values = ["updated_at=?"], [time.time()]
        for key, value in fields.items():
            if key not in self._SCHEDULE_COLUMNS:
                raise TypeError(f"unknown schedule field {key}")
            sets.append(f"{key}=?")
            values.append(int(value) if key == "paused" else value)
        with self.db.transaction() as c:
            return c.execute(f"UPDATE schedules SET {', '.join(sets)} WHERE name=?", (*values, name)).rowcount == 1

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule and its firings (runs it submitted stay in the registry)."""
        with self.db.transaction() as c:
            return c.execute("DELETE FROM schedules WHERE name=?", (name,)).rowcount == 1

    def claim_firings(
        self,
        name: str,
        fire_times: builtins.list[float],
        outcome: str,
        next_fire_at: float | None,
        message: str | None = None,
    ) -> builtins.list[float]:
        """Record fire times of a schedule and move its `next_fire_at` on, in one transaction. Returns the times
        that were new: a time already recorded (by this or an earlier scheduler) is never claimed twice."""
        if outcome not in FIRING_OUTCOMES:
            raise ValueError(f"unknown firing outcome {outcome}")
        now = time.time()
        claimed = []
        with self.db.transaction() as c:
            for t in fire_times:
                cur = c.execute(
                    "INSERT OR IGNORE INTO schedule_firings (schedule, fire_time, recorded_at, outcome, message) "
                    "VALUES (?,?,?,?,?)",
                    (name, t, now, outcome, message),
                )
                if cur.rowcount == 1:
                    claimed.append(t)
            c.execute("UPDATE schedules SET next_fire_at=? WHERE name=?", (next_fire_at, name))
        return claimed

    def update_firing(
        self, name: str, fire_time: float, *, outcome: str, expect: str | None = None, **fields: Any
    ) -> bool:
        """Set a firing's outcome (and run_id / message). With `expect`, only if its outcome is still that one
        (a compare-and-set: of two callers, one wins)."""
        if outcome not in FIRING_OUTCOMES:
            raise ValueError(f"unknown firing outcome {outcome}")
        sets, values = ["outcome=?", "recorded_at=?"], [outcome, time.time()]
        for key, value in fields.items():
            if key not in ("run_id", "message"):
                raise TypeError(f"unknown firing field {key}")
            sets.append(f"{key}=?")
            values.append(value)
        q = f"UPDATE schedule_firings SET {', '.join(sets)} WHERE schedule=? AND fire_time=?"
        args = [*values, name, fire_time]
        if expect is not None:
            q += " AND outcome=?"
            args.append(expect)
        with self.db.transaction() as c:
            return c.execute(q, args).rowcount == 1

    def firings(
        self, name: str | None = None, outcome: str | None = None, limit: int | None = None, oldest_first: bool = False
    ) -> builtins.list[FiringRecord]:
        q, args, where = "SELECT * FROM schedule_firings", [], []
        if name is not None:
            where.append("schedule=?")
            args.append(name)
        if outcome is not None:
            where.append("outcome=?")
            args.append(outcome)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY fire_time" + ("" if oldest_first else " DESC")
        if limit:
            q += f" LIMIT {int(limit)}"
        with self.db.transaction() as c:
            return [FiringRecord.from_row(r) for r in c.execute(q, args)]

    def firing(self, name: str, fire_time: float) -> FiringRecord | None:
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT * FROM schedule_firings WHERE schedule=? AND fire_time=?", (name, fire_time)
            ).fetchone()
        return FiringRecord.from_row(row) if row is not None else None

    def last_run_firing(self, name: str) -> FiringRecord | None:
        """The latest firing of a schedule that started a run."""
        with self.db.transaction() as c:
            row = c.execute(
                "SELECT * FROM schedule_firings WHERE schedule=? AND run_id IS NOT NULL "
                "ORDER BY fire_time DESC LIMIT 1",
                (name,),
            ).fetchone()
        return FiringRecord.from_row(row) if row is not None else None
