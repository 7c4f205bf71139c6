"""Cron expressions read as cron means them, the fire times a schedule owes, and the clocks a scheduler runs on.

Pure, no engine and no registry: the spec's checks (`schedule.cron`, `schedule.timezone`) and the scheduler
(`orchestrator.schedule`) both use it.

Fire times come from croniter, which reads standard cron: 0 and 7 are Sunday, and a restricted day-of-month
*and* day-of-week fire when either matches. Here the expression is first checked field by field, so that only
standard 5-field cron gets through (croniter also takes seconds, `L`, `W`, `#` and `H`, which KubeRay's
RayCronJob does not) and a mistake is reported with its field. Time zones are zoneinfo's. Clocks going forward
skip an hour: a time in it fires once, at the change (as cron does). Clocks going back repeat an hour: a time that
already fired in the first pass is not fired again (unless the hour field is `*`).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

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
# name, lowest and highest number, names (their index is their number)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("", *"jan feb mar apr may jun jul aug sep oct nov dec".split())),
    ("day-of-week", 0, 7, tuple("sun mon tue wed thu fri sat".split())),  # 0 and 7 are Sunday
)
_ITEM = re.compile(r"^(?:\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")
_SYNTAX = "use numbers, `*`, ranges (a-b), lists (a,b) and steps (/n)"


class CronError(ValueError):
    """An invalid cron expression; the message names the field."""


def _check_field(name: str, lo: int, hi: int, names: tuple[str, ...], value: str) -> None:
    """Standard cron syntax for one field, or a CronError that says what is wrong with it."""
    if value == "?" and name in ("day-of-month", "day-of-week"):
        return
    for item in value.lower().split(","):
        m = _ITEM.match(item)
        if not m:
            raise CronError(f"{name} field `{value}`: {_SYNTAX}")
        bounds = []
        for tok in (t for t in m.group(1, 2) if t is not None):
            if tok.isdigit():
                n = int(tok)
            elif tok in names:
                n = names.index(tok)
            elif names and tok.isalpha():
                raise CronError(f"{name} field `{value}`: `{tok}` is not a {name} ({lo}-{hi}, {names[lo]}-{names[-1]})")
            else:
                raise CronError(f"{name} field `{value}`: {_SYNTAX}")
            if n > hi or n < lo:
                limit = f"higher than the maximum value ({hi})" if n > hi else f"lower than the minimum value ({lo})"
                raise CronError(f"{name} field `{value}`: {n} is {limit}")
            bounds.append(n)
        if len(bounds) == 2 and bounds[1] < bounds[0]:
            raise CronError(f"{name} field `{value}`: the range `{item}` goes backwards")
        if m.group(3) is not None and int(m.group(3)) == 0:
            raise CronError(f"{name} field `{value}`: the step in `{item}` must be 1 or more")


@dataclass(frozen=True)
class CronExpression:
    """A standard 5-field cron expression read in an IANA time zone."""

    expr: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC") -> CronExpression:
        zone(timezone)
        text = " ".join(str(expr).split())
        if text.startswith("@") and text.lower() not in _MACROS:
            raise CronError(f"unknown shortcut `{text}` (known: {', '.join(_MACROS)})")
        fields = _MACROS.get(text.lower(), text).split()
        if len(fields) != 5:
            raise CronError(f"`{text}` has {len(fields)} field{'s' if len(fields) != 1 else ''}; cron needs 5")
        for spec, value in zip(_FIELDS, fields, strict=True):
            _check_field(*spec, value)
        try:
            croniter.expand(" ".join(fields))
        except CroniterError as e:  # what the checks above let through and croniter does not take
            raise CronError(f"`{text}`: {e}") from None
        return cls(text, timezone)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def _fields(self) -> list[str]:
        return _MACROS.get(self.expr.lower(), self.expr).split()

    def times_after(self, ts: float) -> Iterator[float]:
        """The fire times strictly after the Unix time `ts`, in order (endless unless no date matches)."""
        fields = self._fields()
        tz, hour_wildcard = self.tz, fields[1].startswith("*")
        it = croniter(" ".join(fields), datetime.fromtimestamp(ts, tz))
        while True:
            try:
                t = it.get_next(datetime)
            except CroniterBadDateError:
                return
            # The second pass of an hour the clocks went back over: this wall time has already fired.
            if t.timestamp() > ts and (hour_wildcard or not _repeated_wall_time(t, tz)):
                yield t.timestamp()

    def next_after(self, ts: float) -> float | None:
        """The first fire time strictly after the Unix time `ts`, or None if there is none."""
        return next(self.times_after(ts), None)

    def times_between(self, after: float, until: float) -> Iterator[float]:
        """Fire times t with after < t <= until, in order."""
        for t in self.times_after(after):
            if t > until:
                return
            yield t


def _repeated_wall_time(dt: datetime, tz: ZoneInfo) -> bool:
    """True for the second occurrence of a local time that happens twice (clocks going back)."""
    naive = dt.astimezone(tz).replace(tzinfo=None)
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and dt.utcoffset() == second.utcoffset()


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
    later = cron.times_after(next_fire_at)
    t: float | None = next_fire_at
    while t is not None and t <= now:
        if now - t <= grace_s:
            on_time.append(t)
        else:
            late.append(t)
            late_total += 1
        t = next(later, None)
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
