"""The run registry: an embedded SQLite database on the submitting side that records every submission.

Written only by the submitting side (the CLI / Python API), never by the job, so it works the same for a
local engine and a remote cluster. Its schema is versioned (``PRAGMA user_version``) and migrated forward on
open; rows are read leniently so an older tool can list runs a newer one wrote.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RloError, RunNotFound, UserError, did_you_mean

SCHEMA_VERSION = 3

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "SUBMIT_FAILED"})

_MIGRATIONS = {
    1: """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        backend TEXT NOT NULL,
        address TEXT,
        job_id TEXT,
        status TEXT NOT NULL,
        message TEXT,
        stop_reason TEXT,
        spec_json TEXT NOT NULL,
        plan_json TEXT,
        command TEXT,
        run_dir TEXT,
        final_metrics_json TEXT,
        resumed_from TEXT,
        extra_json TEXT
    );
    CREATE INDEX runs_created ON runs(created_at);
    CREATE TABLE checkpoints (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        iteration INTEGER,
        created_at REAL NOT NULL,
        metrics_json TEXT,
        PRIMARY KEY (run_id, path)
    );
    """,
    # Policies served over HTTP (`rlo deploy`). Rows are kept after undeploy (history); at most one live
    # endpoint per name.
    2: """
    CREATE TABLE endpoints (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        run_id TEXT NOT NULL,
        checkpoint TEXT NOT NULL,
        url TEXT NOT NULL,
        backend TEXT NOT NULL,
        address TEXT,
        created_at REAL NOT NULL,
        undeployed_at REAL,
        extra_json TEXT
    );
    CREATE UNIQUE INDEX endpoints_live_name ON endpoints(name) WHERE undeployed_at IS NULL;
    """,
    # Schedules (`rlo schedule`) and every firing of one; the (schedule, fire_time) key means a restarted
    # scheduler can never fire the same time twice. Run attempts: one row per submission of a run (the first
    # and each `rlo resume`), so the registry shows one run with its resumptions.
    3: """
    CREATE TABLE schedules (
        name TEXT PRIMARY KEY,
        cron TEXT NOT NULL,
        timezone TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        spec_path TEXT,
        overlap TEXT NOT NULL,
        catch_up TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        next_fire_at REAL,
        extra_json TEXT
    );
    CREATE TABLE schedule_firings (
        schedule TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
        fire_time REAL NOT NULL,
        recorded_at REAL NOT NULL,
        outcome TEXT NOT NULL,
        run_id TEXT,
        message TEXT,
        PRIMARY KEY (schedule, fire_time)
    );
    CREATE INDEX schedule_firings_outcome ON schedule_firings(schedule, outcome);
    CREATE TABLE run_attempts (
        run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        job_id TEXT,
        submitted_at REAL NOT NULL,
        ended_at REAL,
        status TEXT,
        from_checkpoint TEXT,
        from_iteration INTEGER,
        message TEXT,
        PRIMARY KEY (run_id, attempt)
    );
    """,
}


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
    def _from_row(cls, row: sqlite3.Row) -> RunRecord:
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
    def _from_row(cls, row: sqlite3.Row) -> EndpointRecord:
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
    def _from_row(cls, row: sqlite3.Row) -> ScheduleRecord:
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
    def _from_row(cls, row: sqlite3.Row) -> FiringRecord:
        d = dict(row)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class RegistryError(UserError):
    """The registry file cannot be used as it is (not a database, damaged, read-only, a folder...)."""


_MOVE_ASIDE = "move it aside (`mv {p} {p}.bad`): a new, empty registry is made at the next command"
_PICK_ANOTHER = "or point RLO_REGISTRY (or RLO_HOME) at another place"


class Registry:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._check_place()
        self._migrate()

    def _check_place(self) -> None:
        """The registry's folder and file must be what they claim to be before SQLite touches them."""
        p = self.path
        for parent in (p.parent, *p.parent.parents):
            if parent.exists() and not parent.is_dir():
                raise RegistryError(
                    f"the registry {p} cannot be made: {parent} is a file, not a folder",
                    fix=f"RLO_HOME / RLO_REGISTRY must name a folder / a file in a folder; remove or rename {parent}, "
                    + _PICK_ANOTHER,
                )
            if parent.is_dir():
                break
        if p.is_dir():
            raise RegistryError(
                f"the registry {p} is a folder, not a database file",
                fix=f"point RLO_REGISTRY at a file (e.g. {p / 'registry.db'}), or remove the folder",
            )
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(
                f"the registry's folder {p.parent} cannot be made: {e.strerror}", fix=_PICK_ANOTHER.removeprefix("or ")
            ) from None

    def check_writable(self) -> None:
        """Refuse early (before anything is started or submitted) when the registry cannot be written."""
        for target in (self.path, self.path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                raise RegistryError(
                    f"the registry {self.path} is read-only ({target} is not writable), so no run can be recorded",
                    fix=f"make it writable (`chmod u+w {target}`), " + _PICK_ANOTHER,
                )

    def _translate(self, e: sqlite3.Error) -> RloError:
        text = str(e)
        p = self.path
        if "readonly" in text or "read-only" in text:
            return RegistryError(
                f"the registry {p} is read-only ({text})",
                fix=f"make it writable (`chmod u+w {p}` and its folder), " + _PICK_ANOTHER,
            )
        if "unable to open" in text:
            return RegistryError(
                f"the registry {p} cannot be opened ({text})",
                fix=f"check that {p.parent} is a writable folder, " + _PICK_ANOTHER,
            )
        if "locked" in text or "busy" in text:
            return RloError(f"the registry {p} is locked by another `rlo` process for over 30 s ({text})")
        if isinstance(e, sqlite3.DatabaseError):  # not a database, malformed, truncated
            return RegistryError(
                f"the registry {p} is damaged or not a registry database ({text})",
                fix=_MOVE_ASIDE.format(p=p) + "; the runs' folders and the jobs on Ray are not affected",
            )
        return RloError(f"the registry {p} failed: {type(e).__name__}: {text}")

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise self._translate(e) from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
                raise  # our own mistake, not the file's
            raise self._translate(e) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _migrate(self) -> None:
        with self._conn() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                return  # written by a newer version: read leniently, never migrate backwards
            if version == 0 and c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise RegistryError(
                    f"{self.path} is an SQLite database but not a registry of rl-orchestrator",
                    fix=_MOVE_ASIDE.format(p=self.path) + ", " + _PICK_ANOTHER,
                )
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in filter(str.strip, _MIGRATIONS[v].split(";")):
                    c.execute(stmt)
                c.execute(f"PRAGMA user_version={v}")

    @property
    def schema_version(self) -> int:
        with self._conn() as c:
            return c.execute("PRAGMA user_version").fetchone()[0]

    # --- runs -------------------------------------------------------------------------------------------------

    def create(self, rec: RunRecord) -> None:
        with self._conn() as c:
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
        with self._conn() as c:
            cur = c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*values, run_id))
            if cur.rowcount == 0:
                raise RunNotFound(f"no run `{run_id}` in the registry ({self.path})")

    def get(self, run_id: str) -> RunRecord:
        if not isinstance(run_id, str) or not run_id.strip():
            raise RunNotFound("no run id given (it is empty)", fix="give a run id or a unique prefix (`rlo list`)")
        with self._conn() as c:
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
        return RunRecord._from_row(row)

    def list(self, limit: int | None = None, status: str | None = None) -> builtins.list[RunRecord]:
        q, args = "SELECT * FROM runs", []
        if status:
            q += " WHERE status=?"
            args.append(status)
        q += " ORDER BY created_at DESC, rowid DESC"
        if limit:
            q += f" LIMIT {int(limit)}"
        with self._conn() as c:
            return [RunRecord._from_row(r) for r in c.execute(q, args).fetchall()]

    # --- checkpoints --------------------------------------------------------------------------------------------

    def add_checkpoint(self, run_id: str, path: str, iteration: int | None, metrics: dict | None = None) -> bool:
        """Record a checkpoint; returns False when it was already recorded."""
        with self._conn() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO checkpoints (run_id, path, iteration, created_at, metrics_json) "
                "VALUES (?,?,?,?,?)",
                (run_id, path, iteration, time.time(), json.dumps(metrics) if metrics else None),
            )
            return cur.rowcount == 1

    def checkpoints(self, run_id: str) -> builtins.list[CheckpointRecord]:
        with self._conn() as c:
            rows = c.execute(
                "SELECT * FROM checkpoints WHERE run_id=? ORDER BY iteration, created_at", (run_id,)
            ).fetchall()
        return [
            CheckpointRecord(
                r["run_id"],
                r["path"],
                r["iteration"],
                r["created_at"],
                _lenient_json(r["metrics_json"])[0],
            )
            for r in rows
        ]

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
        with self._conn() as c:
            c.execute(
                "INSERT INTO run_attempts (run_id, attempt, job_id, submitted_at, from_checkpoint, from_iteration) "
                "VALUES (?,?,?,?,?,?)",
                (run_id, attempt, job_id, when or time.time(), from_checkpoint, from_iteration),
            )

    def end_attempt(self, run_id: str, attempt: int, status: str, message: str | None = None) -> None:
        with self._conn() as c:
            c.execute(
                "UPDATE run_attempts SET status=?, message=?, ended_at=? WHERE run_id=? AND attempt=? "
                "AND ended_at IS NULL",
                (status, message, time.time(), run_id, attempt),
            )

    def attempts(self, run_id: str) -> builtins.list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT * FROM run_attempts WHERE run_id=? ORDER BY attempt", (run_id,)).fetchall()
        return [dict(r) for r in rows]

    # --- endpoints ----------------------------------------------------------------------------------------------

    def add_endpoint(self, rec: EndpointRecord) -> EndpointRecord | None:
        """Record a deployed endpoint; a live endpoint of the same name is marked replaced. Returns that one."""
        with self._conn() as c:
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
        return EndpointRecord._from_row(old) if old is not None else None

    def endpoint(self, name: str) -> EndpointRecord | None:
        """The live endpoint called `name`, or None."""
        with self._conn() as c:
            row = c.execute("SELECT * FROM endpoints WHERE name=? AND undeployed_at IS NULL", (name,)).fetchone()
        return EndpointRecord._from_row(row) if row is not None else None

    def endpoints(self, include_undeployed: bool = False) -> builtins.list[EndpointRecord]:
        q = "SELECT * FROM endpoints"
        if not include_undeployed:
            q += " WHERE undeployed_at IS NULL"
        with self._conn() as c:
            return [EndpointRecord._from_row(r) for r in c.execute(q + " ORDER BY created_at DESC, id DESC")]

    def mark_undeployed(self, name: str, when: float | None = None) -> bool:
        """Mark the live endpoint `name` as undeployed; False when there is none."""
        with self._conn() as c:
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
        with self._conn() as c:
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
        with self._conn() as c:
            row = c.execute("SELECT * FROM schedules WHERE name=?", (name,)).fetchone()
        return ScheduleRecord._from_row(row) if row is not None else None

    def schedules(self) -> builtins.list[ScheduleRecord]:
        with self._conn() as c:
            return [ScheduleRecord._from_row(r) for r in c.execute("SELECT * FROM schedules ORDER BY name")]

    _SCHEDULE_COLUMNS = {"paused", "next_fire_at", "overlap", "catch_up"}

    def update_schedule(self, name: str, **fields: Any) -> bool:
        sets, values = ["updated_at=?"], [time.time()]
        for key, value in fields.items():
            if key not in self._SCHEDULE_COLUMNS:
                raise TypeError(f"unknown schedule field {key}")
            sets.append(f"{key}=?")
            values.append(int(value) if key == "paused" else value)
        with self._conn() as c:
            return c.execute(f"UPDATE schedules SET {', '.join(sets)} WHERE name=?", (*values, name)).rowcount == 1

    def remove_schedule(self, name: str) -> bool:
        """Delete a schedule and its firings (runs it submitted stay in the registry)."""
        with self._conn() as c:
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
        with self._conn() as c:
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
        with self._conn() as c:
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
        with self._conn() as c:
            return [FiringRecord._from_row(r) for r in c.execute(q, args)]

    def firing(self, name: str, fire_time: float) -> FiringRecord | None:
        with self._conn() as c:
            row = c.execute(
                "SELECT * FROM schedule_firings WHERE schedule=? AND fire_time=?", (name, fire_time)
            ).fetchone()
        return FiringRecord._from_row(row) if row is not None else None

    def last_run_firing(self, name: str) -> FiringRecord | None:
        """The latest firing of a schedule that started a run."""
        with self._conn() as c:
            row = c.execute(
                "SELECT * FROM schedule_firings WHERE schedule=? AND run_id IS NOT NULL "
                "ORDER BY fire_time DESC LIMIT 1",
                (name,),
            ).fetchone()
        return FiringRecord._from_row(row) if row is not None else None
