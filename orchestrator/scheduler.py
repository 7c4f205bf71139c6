"""The scheduler (`rlo scheduler`): fires the registry's schedules (`orchestrator.schedule`) at their times.

The registry is the source of truth. Every fire time gets a row in `schedule_firings` *before* anything is
submitted (an INSERT on the (schedule, fire_time) key), so a scheduler that restarts, or a second one, can never
fire the same time twice; a firing interrupted between its claim and its submission is not retried (it is marked
failed, or linked to its run when the run exists). One scheduler per registry: a file lock next to it.

    sched = Scheduler()              # takes the scheduler lock next to the registry
    sched.tick()                     # fire what is due now; returns the firings it recorded
    sched.run_forever(stop_event)    # `rlo scheduler`
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from .backends import EMBEDDED
from .cron import CronExpression, SystemClock, due_firings, iso_time
from .errors import EngineError, RloError, UserError
from .local_ray import LocalRayManager
from .records import TERMINAL, FiringRecord, ScheduleRecord
from .registry import Registry
from .run import Run
from .schedule import firing_tag, schedule_spec_of
from .settings import settings
from .spec import parse_spec

if TYPE_CHECKING:
    from .spec import Spec

# How often a scheduler with a queued firing checks whether the run it waits for has ended (seconds).
QUEUE_POLL_S = 5.0


class SchedulerLocked(UserError):
    pass


class Scheduler:
    """Fires the registry's schedules. One per registry: it holds a file lock next to the registry database.

    `clock` supplies now() and sleep(); `log` gets one line per firing (and a few about the scheduler)."""

    def __init__(
        self,
        registry: Registry | None = None,
        clock=None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry or Registry(settings().registry_path)
        self.clock = clock or SystemClock()
        self.log = log or (lambda line: None)
        self._lock: FileLock | None = None

    # --- the lock ---------------------------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path:
        return self.registry.path.with_name(self.registry.path.name + ".scheduler.lock")

    @property
    def holder_path(self) -> Path:
        """Who holds the lock, for the message of a scheduler that is refused. A file of its own: filelock 3
        empties the lock file at each try to take it."""
        return self.registry.path.with_name(self.registry.path.name + ".scheduler.holder")

    def acquire(self) -> Scheduler:
        if self._lock is not None:
            return self
        # Not thread-local: the scheduler may be closed from another thread than the one that took the lock.
        lock = FileLock(self.lock_path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            try:
                holder = self.holder_path.read_text().strip() or "?"
            except OSError:
                holder = "?"
            raise SchedulerLocked(
                f"another scheduler ({holder}) is already running on this registry ({self.registry.path})",
                fix="run one `rlo scheduler` per registry: stop the other one, or give this one its own RLO_HOME",
            ) from None
        self.holder_path.write_text(f"pid {os.getpid()}")
        self._lock = lock
        self.recover()
        return self

    def close(self) -> None:
        if self._lock is not None:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Scheduler:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.close()

    def recover(self) -> None:
        """Firings left `submitting` by a scheduler that stopped mid-way: link them to their run if it was
        created, else mark them failed. Never resubmitted: nothing may run twice."""
        stuck = self.registry.firings(outcome="submitting")
        if not stuck:
            return
        runs = self.registry.list(limit=500)
        for f in stuck:
            tag = firing_tag(f.schedule, f.fire_time)
            run = next((r for r in runs if r.command and r.command.endswith(tag)), None)
            if run is not None and run.status != "SUBMIT_FAILED":
                self.registry.update_firing(
                    f.schedule, f.fire_time, outcome="submitted", run_id=run.id, message="linked after a restart"
                )
            else:
                self.registry.update_firing(
                    f.schedule,
                    f.fire_time,
                    outcome="failed",
                    message="the scheduler stopped while submitting this firing; not retried, so that it cannot "
                    "run twice",
                )

    # --- firing -----------------------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[FiringRecord]:
        """Handle every schedule at `now` (default: the clock's now). Returns the firings recorded or changed."""
        self.acquire()
        now = self.clock.now() if now is None else now
        out: list[FiringRecord] = []
        for rec in self.registry.schedules():
            if rec.paused:
                continue
            try:
                out += self._tick_one(rec, now)
            except Exception as e:  # one broken schedule must not stop the others
                self.log(f"{iso_time(now)} {rec.name}: error: {type(e).__name__}: {e}")
        return out

    def _tick_one(self, rec: ScheduleRecord, now: float) -> list[FiringRecord]:
        sched = schedule_spec_of(rec)
        cron = CronExpression.parse(rec.cron, rec.timezone)
        out = self._release_queued(rec, now)
        if rec.next_fire_at is None or rec.next_fire_at > now:
            return out
        due = due_firings(cron, rec.next_fire_at, now, rec.catch_up, sched.max_catch_up)
        if due.missed:
            oldest = due.missed[0]
            msg = f"no scheduler was running (catch_up: {rec.catch_up})"
            claimed = self.registry.claim_firings(
                rec.name, due.missed, "missed", cron.next_after(due.missed[-1]), message=msg
            )
            if due.missed_uncounted and claimed and claimed[0] == oldest:
                self.registry.update_firing(
                    rec.name,
                    oldest,
                    outcome="missed",
                    message=f"{msg}; {due.missed_uncounted} earlier firings were missed too",
                )
            for t in claimed:
                self.log(f"{iso_time(t, rec.timezone)} {rec.name}: missed ({msg})")
                out.append(self._firing(rec.name, t))
        for t in due.fire:
            if not self.registry.claim_firings(rec.name, [t], "submitting", cron.next_after(t)):
                continue  # already handled by an earlier scheduler
            out.append(self._fire(rec, t, now))
        if not due.fire and not due.missed:
            self.registry.update_schedule(rec.name, next_fire_at=due.next_fire_at)
        return out

    def _firing(self, name: str, t: float) -> FiringRecord:
        rec = self.registry.firing(name, t)
        assert rec is not None, f"the firing row of {name} at {t} was written before"  # claimed first, always
        return rec

    def _previous_active(self, name: str) -> tuple[str | None, str | None]:
        """(run id, status) of the schedule's latest run when it is still going, else (None, None)."""

        last = self.registry.last_run_firing(name)
        if last is None or last.run_id is None:
            return None, None
        try:
            rec = self.registry.get(last.run_id)
        except RloError:
            return None, None  # the run's record is gone
        if rec.terminal or not rec.job_id:
            return None, None  # ended, or its submission never reached the engine
        try:
            rec = Run(rec, self.registry).refresh()
        except EngineError:
            if rec.backend == EMBEDDED and LocalRayManager().current() is None:
                return None, None  # its Ray is gone, and the run with it
            raise
        return (rec.id, rec.status) if rec.status not in TERMINAL else (None, None)

    def _fire(self, rec: ScheduleRecord, t: float, now: float) -> FiringRecord:
        where = f"{iso_time(t, rec.timezone)} {rec.name}"
        try:
            prev_id, prev_status = self._previous_active(rec.name)
        except RloError as e:
            return self._settle(rec, t, "failed", f"cannot tell whether the previous run is still going: {e}", where)
        message = None
        if prev_id is not None:
            if rec.overlap == "skip":
                return self._settle(rec, t, "skipped", f"previous run {prev_id} is still {prev_status}", where)
            if rec.overlap == "queue":
                waiting = [f for f in self.registry.firings(rec.name, outcome="queued") if f.fire_time != t]
                if waiting:
                    queued_at = iso_time(waiting[0].fire_time, rec.timezone)
                    msg = f"a firing is already queued ({queued_at}); at most one waits"
                    return self._settle(rec, t, "skipped", msg, where)
                return self._settle(rec, t, "queued", f"waits for run {prev_id} ({prev_status}) to end", where)
            # cancel_previous

            try:
                final = Run(self.registry.get(prev_id), self.registry).stop(wait=True, timeout=60)
            except RloError as e:
                return self._settle(rec, t, "failed", f"could not stop the previous run {prev_id}: {e}", where)
            message = f"stopped the previous run {prev_id} ({final})"
        return self._submit_firing(rec, t, "cancelled_previous" if message else "submitted", message, where)

    def _submit_firing(
        self, rec: ScheduleRecord, t: float, outcome: str, message: str | None, where: str
    ) -> FiringRecord:
        try:
            spec = self._spec_for(rec, t)
            from .submit import submit

            run = submit(spec, command=f"rlo scheduler # {firing_tag(rec.name, t)}", quiet=True)
        except Exception as e:  # a failed submission is recorded; the scheduler goes on
            text = str(e).strip().splitlines()
            return self._settle(rec, t, "failed", f"submission failed: {' '.join(text)[:500]}", where)
        parts = [message] if message else []
        if schedule_spec_of(rec).seed == "from_firing":
            parts.append(f"seed {spec.job.seed}")
        return self._settle(rec, t, outcome, "; ".join(parts) or None, where, run_id=run.id)

    def _settle(
        self, rec: ScheduleRecord, t: float, outcome: str, message: str | None, where: str, run_id: str | None = None
    ) -> FiringRecord:
        fields: dict[str, Any] = {"message": message}
        if run_id:
            fields["run_id"] = run_id
        self.registry.update_firing(rec.name, t, outcome=outcome, **fields)
        self.log(f"{where}: {outcome}" + (f" {run_id}" if run_id else "") + (f" ({message})" if message else ""))
        return self._firing(rec.name, t)

    def _spec_for(self, rec: ScheduleRecord, t: float) -> Spec:

        base = rec.extra.get("base_dir")
        spec = parse_spec(rec.spec, f"schedule `{rec.name}`", Path(base) if base else None)
        job = spec.job
        job.name = rec.name  # a fired run is named after its schedule (`rlo-nightly-...`), whatever the job's name
        if spec.schedule is not None and spec.schedule.seed == "from_firing":
            job.seed = int(t)
        # The run is the job alone (its link to the schedule is the firing row and the run's command).
        spec.schedule = None
        return spec

    def _release_queued(self, rec: ScheduleRecord, now: float) -> list[FiringRecord]:
        """Submit the oldest queued firing once the run it waits for has ended."""
        queued = self.registry.firings(rec.name, outcome="queued", oldest_first=True)
        if not queued:
            return []
        try:
            prev_id, _ = self._previous_active(rec.name)
        except RloError:
            return []  # try again at the next tick
        if prev_id is not None:
            return []
        f = queued[0]
        if not self.registry.update_firing(rec.name, f.fire_time, outcome="submitting", expect="queued"):
            return []
        where = f"{iso_time(f.fire_time, rec.timezone)} {rec.name}"
        late = max(now - f.fire_time, 0)
        return [self._submit_firing(rec, f.fire_time, "submitted", f"was queued; submitted {late:.0f} s late", where)]

    # --- the loop ---------------------------------------------------------------------------------------------

    def next_wake(self, now: float, max_sleep: float) -> float:
        """When the loop should look again: the earliest next fire time, sooner while a firing is queued."""
        wake = now + max_sleep
        for rec in self.registry.schedules():
            if not rec.paused and rec.next_fire_at is not None:
                wake = min(wake, rec.next_fire_at)
        if self.registry.firings(outcome="queued", limit=1):
            wake = min(wake, now + QUEUE_POLL_S)
        return max(wake, now)

    def run_forever(self, stop: threading.Event, max_sleep: float = 30.0, once: bool = False) -> None:
        """Fire schedules at their times until `stop` is set. The sleep is bounded by `max_sleep` (seconds of the
        clock) so schedules added meanwhile are seen."""
        self.acquire()
        while not stop.is_set():
            now = self.clock.now()
            self.tick(now)
            if once:
                return
            now = self.clock.now()
            self.clock.sleep(self.next_wake(now, max_sleep) - now, stop)
