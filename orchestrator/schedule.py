"""Schedules: submit a spec again and again at the times of a cron expression (`rlo schedule`): add, list,
pause, resume, remove, their history.

The registry is the source of truth. A schedule row holds the spec (validated when it was added), its cron, time
zone and policies, and `next_fire_at`, the earliest fire time not yet handled. Every fire time gets a row in
`schedule_firings` *before* anything is submitted (an INSERT on the (schedule, fire_time) key), so a scheduler
that restarts, or a second one, can never fire the same time twice; a firing interrupted between its claim and
its submission is not retried (it is marked failed, or linked to its run when the run exists).

Cron expressions, the fire times a schedule owes and the clocks are `orchestrator.cron`; the scheduler that fires
schedules is `orchestrator.scheduler`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .cron import CronExpression
from .errors import SpecError, UserError, did_you_mean
from .records import FiringRecord, ScheduleRecord
from .registry import Registry
from .settings import settings
from .spec import ScheduleSpec, problems_from
from .submission import check_cluster, prepare

if TYPE_CHECKING:
    from .spec import Spec

_NAME_FIX = "a schedule name is lowercase letters, digits and `-` (it also names the RayCronJob on Kubernetes)"

# --- the schedules (Python API of `rlo schedule ...`) ------------------------------------------------------------


def _registry(registry: Registry | None) -> Registry:
    return registry or Registry(settings().registry_path)


def schedule_spec_of(rec: ScheduleRecord):
    """The schedule section stored with a schedule (its effective settings)."""

    return ScheduleSpec.model_validate(rec.spec.get("schedule") or {"cron": rec.cron, "timezone": rec.timezone})


def preflight(spec: Spec, address: str | None = None, token: str | None = None) -> list[str]:
    """The checks `submit` makes before anything runs (plan, stop criteria, env, hyperparameters, fit on the
    cluster), without submitting or starting anything. Returns the notices."""

    prepared = prepare(spec)
    check_cluster(prepared.plan, address or spec.cluster.address, token)
    return list(prepared.notices)


def add_schedule(
    spec: Spec,
    *,
    name: str | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    overlap: str | None = None,
    catch_up: str | None = None,
    spec_path: str | None = None,
    replace: bool = False,
    paused: bool = False,
    now: float | None = None,
    registry: Registry | None = None,
    notices_out: list[str] | None = None,
) -> ScheduleRecord:
    """Validate `spec` as `submit` would, then store it as a schedule. The spec's `schedule:` section gives the
    cron and policies; the keyword arguments (the CLI flags) override it. Nothing runs until a scheduler fires."""
    sched = merged_schedule(
        spec, name=name, cron=cron, timezone=timezone, overlap=overlap, catch_up=catch_up, source=spec_path
    )
    notices = preflight(spec)
    if notices_out is not None:
        notices_out.extend(notices)
    reg = _registry(registry)
    now = time.time() if now is None else now
    expr = CronExpression.parse(sched.cron, sched.timezone)
    stored = spec.model_copy(update={"schedule": sched})
    rec = ScheduleRecord(
        name=sched.name,
        cron=sched.cron,
        timezone=sched.timezone,
        spec=stored.to_dict(),
        overlap=sched.overlap,
        catch_up=sched.catch_up,
        created_at=now,
        updated_at=now,
        paused=paused,
        spec_path=str(Path(spec_path).resolve()) if spec_path else None,
        next_fire_at=expr.next_after(now),
        extra={"base_dir": str(spec.base_dir)},
    )
    if not reg.add_schedule(rec, replace=replace):
        raise UserError(
            f"a schedule named `{sched.name}` already exists",
            fix="pick another --name, `rlo schedule add --replace` to change it, or `rlo schedule remove "
            f"{sched.name}` first",
        )
    return get_schedule(sched.name, reg)


def merged_schedule(spec: Spec, source: str | None = None, **flags: str | None):
    """The spec's `schedule:` section with the flags that were given (name, cron, timezone, overlap, catch_up)
    put over it, validated; a mistake names the flag or the spec's field."""
    from pydantic import ValidationError

    given = {k: v for k, v in flags.items() if v is not None}
    base = spec.schedule.model_dump() if spec.schedule else {}
    merged = {**base, **given}
    if "cron" not in merged:
        raise UserError(
            "no cron expression: the spec has no `schedule:` section and no --cron was given",
            fix='add `schedule: {cron: "0 2 * * *", timezone: UTC}` to the spec, or pass --cron "0 2 * * *"',
        )
    job = spec.job
    default = job.name or job.algorithm or (Path(job.entry_script).stem if job.entry_script else None)
    if merged.get("name") is None and default:
        merged["name"] = re.sub(r"[^a-z0-9-]+", "-", default.lower()).strip("-")[:50] or None
    try:
        sched = ScheduleSpec.model_validate(merged)
    except ValidationError as e:
        probs = [
            (
                ("--" + p.replace("_", "-")) if p in given else f"schedule.{p}" if p else "schedule",
                what,
                fix or (_NAME_FIX if p == "name" else None),
            )
            for p, what, fix in problems_from(e, ScheduleSpec)
        ]
        raise SpecError(source or "<spec>", probs) from None
    if sched.name is None:
        raise UserError(
            "the schedule needs a name",
            fix="pass --name NAME (lowercase letters, digits, `-`), or set `schedule.name` / `job.name` in the spec",
        )
    return sched


def get_schedule(name: str, registry: Registry | None = None) -> ScheduleRecord:
    reg = _registry(registry)
    rec = reg.schedule(name)
    if rec is None:
        names = [s.name for s in reg.schedules()]
        raise UserError(
            f"no schedule `{name}` in the registry ({reg.path})",
            fix=did_you_mean(name, names) or ("`rlo schedule list` shows the schedules" if names else "none exist yet"),
        )
    return rec


def list_schedules(registry: Registry | None = None) -> list[ScheduleRecord]:
    return _registry(registry).schedules()


def remove_schedule(name: str, registry: Registry | None = None) -> ScheduleRecord:
    reg = _registry(registry)
    rec = get_schedule(name, reg)
    reg.remove_schedule(name)
    return rec


def pause_schedule(name: str, registry: Registry | None = None) -> ScheduleRecord:
    """Stop firing (runs already going go on). Times that pass while paused are not fired on resume."""
    reg = _registry(registry)
    get_schedule(name, reg)
    reg.update_schedule(name, paused=True)
    return get_schedule(name, reg)


def resume_schedule(name: str, registry: Registry | None = None, now: float | None = None) -> ScheduleRecord:
    reg = _registry(registry)
    rec = get_schedule(name, reg)
    if rec.paused:
        now = time.time() if now is None else now
        nxt = CronExpression.parse(rec.cron, rec.timezone).next_after(now)
        reg.update_schedule(name, paused=False, next_fire_at=nxt)
    return get_schedule(name, reg)


def history(name: str, limit: int | None = None, registry: Registry | None = None) -> list[FiringRecord]:
    reg = _registry(registry)
    get_schedule(name, reg)
    return reg.firings(name, limit=limit)


def firing_tag(name: str, fire_time: float) -> str:
    """Written into the submitted run's command, so a firing can be linked to its run after a crash."""
    return f"schedule={name} firing={fire_time:.0f}"
