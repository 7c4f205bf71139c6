"""The registry's SQLite schema, versioned with ``PRAGMA user_version``: the statements of each version, and the
migration forward (never backwards: a newer version's file is read as it is)."""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 3

MIGRATIONS = {
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


def migrate(conn: sqlite3.Connection) -> bool:
    """Bring the schema of the database on `conn` (in a transaction) to SCHEMA_VERSION. False, and nothing
    changed, when the file holds tables but no registry's version (another application's database)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        return True  # written by a newer version: read leniently, never migrate backwards
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        return False
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for stmt in filter(str.strip, MIGRATIONS[v].split(";")):
            conn.execute(stmt)
        conn.execute(f"PRAGMA user_version={v}")
    return True
