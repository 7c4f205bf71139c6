"""`rlo schedule add|list|remove|pause|resume|history` and `rlo scheduler`: re-run a spec on a cron schedule.

Each command parses its arguments and calls the Python API (`orchestrator.schedule`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import datetime

from .cli_render import add_render_arguments, cmd_render_raycronjob
from .errors import UserError
from .tables import print_table


def _next(rec) -> tuple[str, str]:
    from .cron import fmt_fire_time

    if rec.paused or rec.next_fire_at is None:
        return "-", "-"
    return fmt_fire_time(rec.next_fire_at, rec.timezone), fmt_fire_time(rec.next_fire_at, "UTC")


def cmd_schedule_add(args) -> int:
    from .schedule import add_schedule
    from .spec import load_spec

    spec = load_spec(args.spec)
    notices: list[str] = []
    rec = add_schedule(
        spec,
        name=args.name,
        cron=args.cron,
        timezone=args.timezone,
        overlap=args.overlap,
        catch_up=args.catch_up,
        spec_path=args.spec,
        replace=args.replace,
        paused=args.paused,
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


def cmd_schedule_list(args) -> int:
    from .registry import Registry
    from .schedule import list_schedules
    from .settings import settings

    registry = Registry(settings().registry_path)
    records = list_schedules(registry)
    lasts = {r.name: next(iter(registry.firings(r.name, limit=1)), None) for r in records}
    if args.json:
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


def cmd_schedule_remove(args) -> int:
    from .schedule import remove_schedule

    rec = remove_schedule(args.name)
    print(f"removed schedule `{rec.name}` and its firing history (the runs it started are kept)")
    return 0


def cmd_schedule_pause(args) -> int:
    from .schedule import pause_schedule

    rec = pause_schedule(args.name)
    print(f"schedule `{rec.name}` paused (runs already going go on; `rlo schedule resume {rec.name}` resumes it)")
    return 0


def cmd_schedule_resume(args) -> int:
    from .schedule import resume_schedule

    rec = resume_schedule(args.name)
    local, utc = _next(rec)
    print(f"schedule `{rec.name}` active; next firing {local} ({utc})")
    return 0


def cmd_schedule_history(args) -> int:
    from .cron import fmt_fire_time
    from .schedule import get_schedule, history

    rec = get_schedule(args.name)
    firings = history(args.name, limit=args.limit)
    if args.json:
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


_ACTIONS = {
    "add": cmd_schedule_add,
    "list": cmd_schedule_list,
    "remove": cmd_schedule_remove,
    "pause": cmd_schedule_pause,
    "resume": cmd_schedule_resume,
    "history": cmd_schedule_history,
    "render": cmd_render_raycronjob,
}


def cmd_schedule(args) -> int:
    return _ACTIONS[args.action](args)


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


def cmd_scheduler(args) -> int:
    from .cron import ScaledClock, SystemClock, fmt_fire_time
    from .registry import Registry
    from .schedule import Scheduler
    from .settings import settings

    if args.max_sleep <= 0:
        raise UserError(f"--max-sleep must be positive (got {args.max_sleep})")
    clock: SystemClock | ScaledClock = SystemClock()
    if args.clock_start is not None or args.clock_speed != 1.0:
        if args.clock_speed <= 0:
            raise UserError(f"--clock-speed must be positive (got {args.clock_speed})")
        start = _parse_clock_start(args.clock_start) if args.clock_start is not None else time.time()
        clock = ScaledClock(start, args.clock_speed)

    def log(line: str) -> None:
        print(line, flush=True)

    registry = Registry(settings().registry_path)
    scheduler = Scheduler(registry, clock=clock, log=log)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    with scheduler:
        if not args.once:
            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
        active = [s for s in registry.schedules() if not s.paused]
        nxt = min((s.next_fire_at for s in active if s.next_fire_at), default=None)
        log(
            f"[rlo] scheduler (pid {os.getpid()}) on {registry.path}: {len(active)} active "
            f"schedule{'s' if len(active) != 1 else ''}"
            + (f", next firing {fmt_fire_time(nxt)}" if nxt else "")
            + ("" if isinstance(clock, SystemClock) else f" (simulated clock, {args.clock_speed:g}x)")
        )
        scheduler.run_forever(stop, max_sleep=args.max_sleep, once=args.once)
        if not args.once:
            log("[rlo] scheduler stopped")
    return 0


def register(add) -> None:
    sp = add("schedule", cmd_schedule, "re-run a spec on a cron schedule: add, list, remove, pause, resume, history")
    sub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")

    a = sub.add_parser("add", help="validate a spec (as submit does) and store it as a schedule")
    a.add_argument("spec", metavar="SPEC")
    a.add_argument("--name", help="the schedule's name (default: schedule.name, else the job's name)")
    a.add_argument("--cron", help='5-field cron, e.g. "0 2 * * *" (default: the spec\'s schedule.cron)')
    a.add_argument("--timezone", help="IANA time zone the cron is read in (default: schedule.timezone, else UTC)")
    a.add_argument("--overlap", choices=("skip", "queue", "cancel_previous"), help="when the previous run is going")
    a.add_argument("--catch-up", choices=("none", "latest", "all"), help="missed firings after downtime")
    a.add_argument("--replace", action="store_true", help="replace a schedule of that name (its history is kept)")
    a.add_argument("--paused", action="store_true", help="add it paused")

    ls = sub.add_parser("list", help="schedules, next firing (local and UTC), last firing")
    ls.add_argument("--json", action="store_true")

    for action, help_ in (
        ("remove", "delete a schedule and its firing history"),
        ("pause", "stop firing a schedule"),
        ("resume", "fire a paused schedule again (from its next time on)"),
    ):
        sub.add_parser(action, help=help_).add_argument("name", metavar="NAME")

    h = sub.add_parser("history", help="a schedule's firings, newest first: outcome, run, why")
    h.add_argument("name", metavar="NAME")
    h.add_argument("--limit", type=int, default=50)
    h.add_argument("--json", action="store_true")

    r = sub.add_parser("render", help="the schedule as a KubeRay RayCronJob manifest (= rlo render raycronjob)")
    add_render_arguments(r)

    sp = add("scheduler", cmd_scheduler, "fire the registry's schedules at their times (a long-running process)")
    sp.add_argument("--once", action="store_true", help="fire what is due now, then exit (e.g. from cron/systemd)")
    sp.add_argument("--max-sleep", type=float, default=30.0, help="look for new schedules at least this often (s)")
    # Test hook: a clock that starts at a given time and runs faster than real time.
    sp.add_argument("--clock-start", help=argparse.SUPPRESS)
    sp.add_argument("--clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
