"""Cron expressions read as cron means them, the fire times a schedule owes, and the clocks a scheduler runs on.

Pure, no engine and no registry: the spec's checks (`schedule.cron`, `schedule.timezone`) and the scheduler
(`orchestrator.schedule`) both use it.

Cron parsing and fire times come from APScheduler's CronTrigger (with zoneinfo time zones). Where APScheduler 3
differs from standard cron, the expression is translated so that it means what cron (and KubeRay's RayCronJob)
means: day-of-week numbers (0 and 7 are Sunday; APScheduler 3 counts 0 as Monday) and a restricted
day-of-month *and* day-of-week (cron fires when either matches; APScheduler when both do). Clocks going back
repeat an hour: a time that already fired in the first pass is not fired again (unless the hour field is `*`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from .errors import did_you_mean

# A fire time this late (seconds) is still fired as on time; older ones were missed (the scheduler was not
# running) and are handled by the schedule's catch-up policy.
MISFIRE_GRACE_S = 120.0
# At most this many missed firings get a row each; older ones are counted in the message of the oldest row.
MAX_MISSED_ROWS = 50

# --- cron expressions -------------------------------------------------------------------------------------------

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_APS_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron numbering: 0 (and 7) is Sunday
_NUMERIC = re.compile(r"^[*0-9,/-]+$")
_WITH_NAMES = re.compile(r"^[*0-9a-zA-Z,/-]+$")
_DOW_ITEM = re.compile(r"^(\*|([0-7]|[a-z]{3})(-([0-7]|[a-z]{3}))?)(/([1-9][0-9]*))?$")


class CronError(ValueError):
    """An invalid cron expression; the message names the field."""


def _dow_to_aps(value: str) -> str:
    """A cron day-of-week field -> the same days for APScheduler 3 (names, so numbering cannot be confused)."""
    if value in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in value.lower().split(","):
        m = _DOW_ITEM.match(item)
        if not m:
            raise CronError(f"day-of-week field `{value}`: `{item}` is not a day (0-7, sun-sat), range or step")

        def num(tok: str) -> int:
            if tok.isdigit():
                return int(tok) % 7
            if tok not in _DOW_NAMES:
                raise CronError(f"day-of-week field `{value}`: `{tok}` is not a day name (sun, mon, ... sat)")
            return _DOW_NAMES.index(tok)

        step = int(m.group(6)) if m.group(6) else 1
        if m.group(1) == "*":
            lo, hi = 0, 6
        else:
            lo = num(m.group(2))
            hi_tok = m.group(4)
            # `5-7` is Friday to Sunday; a single day with a step (`1/2`) runs to Saturday, as in cron.
            hi = (7 if hi_tok == "7" else num(hi_tok)) if hi_tok else (6 if m.group(6) else lo)
            if hi < lo:
                raise CronError(f"day-of-week field `{value}`: the range `{item}` goes backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DOW_NAMES[d] for d in sorted(days))


@dataclass(frozen=True)
class CronExpression:
    """A standard 5-field cron expression read in an IANA time zone."""

    expr: str
    timezone: str = "UTC"
    _triggers: tuple = field(default=(), compare=False, repr=False)
    _hour_wildcard: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC") -> CronExpression:
        from apscheduler.triggers.cron import CronTrigger

        tz = zone(timezone)
        text = " ".join(str(expr).split())
        fields = _MACROS.get(text.lower(), text).split()
        if text.startswith("@") and text.lower() not in _MACROS:
            raise CronError(f"unknown shortcut `{text}` (known: {', '.join(_MACROS)})")
        if len(fields) != 5:
            raise CronError(f"`{text}` has {len(fields)} field{'s' if len(fields) != 1 else ''}; cron needs 5")
        values: dict[str, str] = {}
        for i, (name, aps, value) in enumerate(zip(_FIELDS, _APS_FIELDS, fields, strict=True)):
            pattern = _WITH_NAMES if name == "month" else _NUMERIC
            if name == "day-of-week":
                value = _dow_to_aps(value)
            elif name == "day-of-month" and value == "?":
                value = "*"
            elif not pattern.match(value):
                raise CronError(f"{name} field `{value}`: use numbers, `*`, ranges (a-b), lists (a,b) and steps (/n)")
            try:
                CronTrigger(**{aps: value}, timezone=tz)
            except ValueError as e:
                raise CronError(f"{name} field `{fields[i]}`: {_aps_message(e)}") from None
            values[aps] = value
        # Standard cron: with both day fields restricted, a day matches when either does.
        dom, dow = fields[2], fields[4]
        triggers: tuple[CronTrigger, ...]
        if dom.startswith(("*", "?")) or dow.startswith(("*", "?")):
            triggers = (CronTrigger(**values, timezone=tz),)
        else:
            triggers = (
                CronTrigger(**{**values, "day_of_week": "*"}, timezone=tz),
                CronTrigger(**{**values, "day": "*"}, timezone=tz),
            )
        return cls(text, timezone, triggers, fields[1].startswith("*"))

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def next_after(self, ts: float) -> float | None:
        """The first fire time strictly after the Unix time `ts`, or None if there is none."""
        start = datetime.fromtimestamp(ts, UTC) + timedelta(microseconds=1)
        while True:
            times = [t for t in (trig.get_next_fire_time(None, start) for trig in self._triggers) if t is not None]
            if not times:
                return None
            nxt = min(times)
            if self._hour_wildcard or not _repeated_wall_time(nxt, self.tz):
                return nxt.timestamp()
            # The second pass of an hour the clocks went back over: this wall time has already fired.
            start = nxt.astimezone(UTC) + timedelta(microseconds=1)

    def times_between(self, after: float, until: float):
        """Fire times t with after < t <= until, in order."""
        t = self.next_after(after)
        while t is not None and t <= until:
            yield t
            t = self.next_after(t)


def _repeated_wall_time(dt: datetime, tz: ZoneInfo) -> bool:
    """True for the second occurrence of a local time that happens twice (clocks going back)."""
    naive = dt.astimezone(tz).replace(tzinfo=None)
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and dt.utcoffset() == second.utcoffset()


def _aps_message(e: Exception) -> str:
    msg = str(e)
    m = re.match(r"Error validating expression '[^']*': (.*)", msg)
    return m.group(1) if m else msg


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ZoneInfoNotFoundError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, _zone_names()) or _zone_hint(name)
        raise ValueError(
            f"unknown time zone `{name}`"
            + (f"; {hint}" if hint else "")
            + " (give an IANA name such as UTC, Europe/Berlin, America/New_York)"
        ) from None


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _zone_hint(name: str) -> str | None:
    """`berlin` -> Europe/Berlin: match the last part of a zone name, ignoring case."""
    key = name.strip().lower().replace(" ", "_")
    hits = [z for z in _zone_names() if z.lower().rsplit("/", 1)[-1] == key]
    return f"did you mean `{hits[0]}`?" if len(hits) == 1 else None


def check_timezone(name: str) -> str:
    zone(name)
    return name


def check_cron(expr: str) -> str:
    """Validate a cron expression (in UTC; time zones do not change its syntax). Returns it normalized."""
    try:
        return CronExpression.parse(expr).expr
    except CronError as e:
        raise ValueError(
            f"invalid cron expression: {e} (cron: minute hour day-of-month month day-of-week, e.g. `0 2 * * *`)"
        ) from None


def check_fires(expr: str, timezone: str) -> None:
    cron = CronExpression.parse(expr, timezone)
    if cron.next_after(time.time()) is None:
        raise ValueError(f"the cron expression `{expr}` never fires (no date matches it, e.g. 30 February)")


# --- which fire times are due -----------------------------------------------------------------------------------


@dataclass
class Due:
    """What a schedule owes at `now`: times to fire, times missed, and the next time after them all."""

    fire: list[float]
    missed: list[float]
    missed_uncounted: int  # missed times older than the ones in `missed` (they get no row of their own)
    next_fire_at: float | None


def due_firings(
    cron: CronExpression,
    next_fire_at: float,
    now: float,
    catch_up: str,
    max_catch_up: int = 10,
    grace_s: float = MISFIRE_GRACE_S,
) -> Due:
    """Pure: given the earliest unhandled fire time, which times to fire now and which were missed.

    A time at most `grace_s` old is on time. Older ones were missed (no scheduler was running); of those,
    catch_up `none` fires none, `latest` fires the latest (unless an on-time firing comes right after it), and
    `all` fires up to `max_catch_up` of the latest, in order."""
    if next_fire_at > now:
        return Due([], [], 0, next_fire_at)
    on_time: list[float] = []
    late: deque[float] = deque(maxlen=max(max_catch_up, 1) + MAX_MISSED_ROWS)
    late_total = 0
    t: float | None = next_fire_at
    while t is not None and t <= now:
        if now - t <= grace_s:
            on_time.append(t)
        else:
            late.append(t)
            late_total += 1
        t = cron.next_after(t)
    late_list = list(late)
    if catch_up == "all":
        fire_late = late_list[-max_catch_up:]
    elif catch_up == "latest" and late_list and not on_time:
        fire_late = late_list[-1:]
    else:
        fire_late = []
    missed = late_list[: len(late_list) - len(fire_late)]
    uncounted = late_total - len(late_list)
    if len(missed) > MAX_MISSED_ROWS:
        uncounted += len(missed) - MAX_MISSED_ROWS
        missed = missed[-MAX_MISSED_ROWS:]
    return Due(fire_late + on_time, missed, uncounted, t)


# --- clocks -----------------------------------------------------------------------------------------------------


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(seconds, 0.0))


class ManualClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: float) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.t += max(seconds, 0.0)


class ScaledClock:
    """Starts at `start` and runs `speed` times faster than real time (the scheduler's hidden test hook)."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        self.start, self.speed, self._t0 = float(start), float(speed), time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.speed

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(seconds, 0.0) / self.speed)


def fmt_fire_time(ts: float | None, timezone: str = "UTC") -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, zone(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def iso_time(ts: float, timezone: str = "UTC") -> str:
    return datetime.fromtimestamp(ts, zone(timezone)).isoformat(timespec="seconds")
