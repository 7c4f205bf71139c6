"""`rlo schedule add|list|remove|pause|resume|history|render` and `rlo scheduler`: re-run a spec on a cron
schedule.

Each command is a thin function over the Python API (`orchestrator.schedule`)."""

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime
from typing import Annotated, Literal

from ..errors import UserError
from ..registry import Registry
from ..settings import settings
from ..tables import print_table
from .common import arg, command, new_app, opt
from .render import raycronjob

# `rlo schedule ...`, and `rlo scheduler` (a top-level command: `app`).
schedule_app = new_app("re-run a spec on a cron schedule: add, list, remove, pause, resume, history")
app = new_app()

NameArg = Annotated[str, arg("NAME")]
JsonFlag = Annotated[bool, opt("--json")]


def _next(rec) -> tuple[str, str]:
    from ..cron import fmt_fire_time

    if rec.paused or rec.next_fire_at is None:
        return "-", "-"
    return fmt_fire_time(rec.next_fire_at, rec.timezone), fmt_fire_time(rec.next_fire_at, "UTC")


@command(schedule_app, "add", "validate a spec (as submit does) and store it as a schedule")
def add(
    spec: Annotated[str, arg("SPEC")],
    name: Annotated[
        str | None, opt("--name", help="the schedule's name (default: schedule.name, else the job's name)")
    ] = None,
    cron: Annotated[
        str | None, opt("--cron", help='5-field cron, e.g. "0 2 * * *" (default: the spec\'s schedule.cron)')
    ] = None,
    timezone: Annotated[
        str | None,
        opt("--timezone", help="IANA time zone the cron is read in (default: schedule.timezone, else UTC)"),
    ] = None,
    overlap: Annotated[
        Literal["skip", "queue", "cancel_previous"] | None,
        opt("--overlap", help="when the previous run is going"),
    ] = None,
    catch_up: Annotated[
        Literal["none", "latest", "all"] | None, opt("--catch-up", help="missed firings after downtime")
    ] = None,
    replace: Annotated[bool, opt("--replace", help="replace a schedule of that name (its history is kept)")] = False,
    paused: Annotated[bool, opt("--paused", help="add it paused")] = False,
) -> int:
    from ..schedule import add_schedule
    from ..spec import load_spec

    notices: list[str] = []
    rec = add_schedule(
        load_spec(spec),
        name=name,
        cron=cron,
        timezone=timezone,
        overlap=overlap,
        catch_up=catch_up,
        spec_path=spec,
        replace=replace,
        paused=paused,
        notices_out=notices,
    )
    for n in notices:
        print(f"[rlo] note: {n}", file=sys.stderr)
    local, utc = _next(rec)
    print(rec.name)
    print(
        f"[rlo] schedule `{rec.name}`: `{rec.cron}` in {rec.timezone}, overlap {rec.overlap}, catch-up "
        f"{rec.catch_up}{', paused' if rec.paused else ''}",
        file=sys.stderr,
    )
    if not rec.paused:
        print(f"[rlo] next firing {local} ({utc}); it fires while `rlo scheduler` runs", file=sys.stderr)
    return 0


@command(schedule_app, "list", "schedules, next firing (local and UTC), last firing")
def list_cmd(as_json: JsonFlag = False) -> int:
    from ..schedule import list_schedules

    registry = Registry(settings().registry_path)
    records = list_schedules(registry)
    lasts = {r.name: next(iter(registry.firings(r.name, limit=1)), None) for r in records}
    if as_json:
        out = []
        for r in records:
            last = lasts[r.name]
            out.append(
                {
                    "name": r.name,
                    "cron": r.cron,
                    "timezone": r.timezone,
                    "overlap": r.overlap,
                    "catch_up": r.catch_up,
                    "paused": r.paused,
                    "next_fire_at": None if r.paused else r.next_fire_at,
                    "spec_path": r.spec_path,
                    "last_firing": None
                    if last is None
                    else {"fire_time": last.fire_time, "outcome": last.outcome, "run_id": last.run_id},
                }
            )
        print(json.dumps(out, indent=2))
        return 0
    if not records:
        print('no schedules (add one with `rlo schedule add SPEC --cron "0 2 * * *"`)', file=sys.stderr)
        return 0
    rows = [("NAME", "CRON", "TIME ZONE", "NEXT FIRING", "NEXT (UTC)", "LAST FIRING", "STATE")]
    for r in records:
        local, utc = _next(r)
        last = lasts[r.name]
        last_text = "-" if last is None else f"{last.outcome}" + (f" {last.run_id}" if last.run_id else "")
        rows.append((r.name, r.cron, r.timezone, local, utc, last_text, "paused" if r.paused else "active"))
    print_table(rows)
    return 0


@command(schedule_app, "remove", "delete a schedule and its firing history")
def remove(name: NameArg) -> int:
    from ..schedule import remove_schedule

    rec = remove_schedule(name)
    print(f"removed schedule `{rec.name}` and its firing history (the runs it started are kept)")
    return 0


@command(schedule_app, "pause", "stop firing a schedule")
def pause(name: NameArg) -> int:
    from ..schedule import pause_schedule

    rec = pause_schedule(name)
    print(f"schedule `{rec.name}` paused (runs already going go on; `rlo schedule resume {rec.name}` resumes it)")
    return 0


@command(schedule_app, "resume", "fire a paused schedule again (from its next time on)")
def resume(name: NameArg) -> int:
    from ..schedule import resume_schedule

    rec = resume_schedule(name)
    local, utc = _next(rec)
    print(f"schedule `{rec.name}` active; next firing {local} ({utc})")
    return 0


@command(schedule_app, "history", "a schedule's firings, newest first: outcome, run, why")
def history_cmd(name: NameArg, limit: Annotated[int, opt("--limit")] = 50, as_json: JsonFlag = False) -> int:
    from ..cron import fmt_fire_time
    from ..schedule import get_schedule, history

    rec = get_schedule(name)
    firings = history(name, limit=limit)
    if as_json:
        print(json.dumps([f.__dict__ for f in firings], indent=2))
        return 0
    if not firings:
        print(f"schedule `{rec.name}` has not fired yet", file=sys.stderr)
        return 0
    rows = [(f"FIRE TIME ({rec.timezone})", "OUTCOME", "RUN", "MESSAGE")]
    for f in firings:
        rows.append((fmt_fire_time(f.fire_time, rec.timezone), f.outcome, f.run_id or "-", f.message or ""))
    print_table(rows)
    return 0


command(schedule_app, "render", "the schedule as a KubeRay RayCronJob manifest (= rlo render raycronjob)")(raycronjob)


def _parse_clock_start(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--clock-start `{text}` is neither a Unix time nor an ISO time") from None
    if dt.tzinfo is None:
        raise UserError(f"--clock-start `{text}` has no UTC offset", fix="add one, e.g. 2026-11-22T01:59:50+00:00")
    return dt.timestamp()


@command(app, "scheduler", "fire the registry's schedules at their times (a long-running process)")
def scheduler_cmd(
    once: Annotated[bool, opt("--once", help="fire what is due now, then exit (e.g. from cron/systemd)")] = False,
    max_sleep: Annotated[float, opt("--max-sleep", help="look for new schedules at least this often (s)")] = 30.0,
    # Test hook: a clock that starts at a given time and runs faster than real time.
    clock_start: Annotated[str | None, opt("--clock-start", hidden=True)] = None,
    clock_speed: Annotated[float, opt("--clock-speed", hidden=True)] = 1.0,
) -> int:
    from ..cron import ScaledClock, SystemClock, fmt_fire_time
    from ..scheduler import Scheduler

    if max_sleep <= 0:
        raise UserError(f"--max-sleep must be positive (got {max_sleep})")
    clock: SystemClock | ScaledClock = SystemClock()
    if clock_start is not None or clock_speed != 1.0:
        if clock_speed <= 0:
            raise UserError(f"--clock-speed must be positive (got {clock_speed})")
        start = _parse_clock_start(clock_start) if clock_start is not None else time.time()
        clock = ScaledClock(start, clock_speed)

    def log(line: str) -> None:
        print(line, flush=True)

    registry = Registry(settings().registry_path)
    scheduler = Scheduler(registry, clock=clock, log=log)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    with scheduler:
        if not once:
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        active = [s for s in registry.schedules() if not s.paused]
        nxt = min((s.next_fire_at for s in active if s.next_fire_at), default=None)
        log(
            f"[rlo] scheduler (pid {os.getpid()}) on {registry.path}: {len(active)} active "
            f"schedule{'s' if len(active) != 1 else ''}"
            + (f", next firing {fmt_fire_time(nxt)}" if nxt else "")
            + ("" if isinstance(clock, SystemClock) else f" (simulated clock, {clock_speed:g}x)")
        )
        scheduler.run_forever(stop, max_sleep=max_sleep, once=once)
        if not once:
            log("[rlo] scheduler stopped")
    return 0
