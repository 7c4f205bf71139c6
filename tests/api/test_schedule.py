"""Schedules: cron parsing with time zones and DST, due firings and catch-up (pure, with a controlled clock), the
registry's no-double-firing claim, the RayCronJob rendering against KubeRay's CRD, the CLI and its errors, and
real firings on the session's Ray: overlap policies (skip, queue, cancel_previous), a scheduler restarted
between firings, and `rlo scheduler` as a real process stopped with SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from crd_validation import validate_manifest

from orchestrator.cron import MISFIRE_GRACE_S, CronError, CronExpression, ManualClock, due_firings
from orchestrator.errors import SpecError, UserError
from orchestrator.registry import Registry
from orchestrator.render import prepare_render
from orchestrator.schedule import add_schedule, pause_schedule, resume_schedule
from orchestrator.scheduler import Scheduler, SchedulerLocked
from orchestrator.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
RLO = [sys.executable, "-m", "orchestrator.cli"]


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def local(t: float, tz: str) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()


def fires(expr: str, tz: str, after: str, n: int) -> list[str]:
    cron, t, out = CronExpression.parse(expr, tz), ts(after), []
    for _ in range(n):
        t = cron.next_after(t)
        out.append(local(t, tz))
    return out


# --- cron expressions -------------------------------------------------------------------------------------------


class TestCron:
    def test_weekday_numbers_are_crons(self):
        # 2026-11-22 is a Sunday. Cron's 0 and 7 are Sunday (some schedulers count 0 as Monday).
        sunday = ["2026-11-29T00:00:00+00:00", "2026-12-06T00:00:00+00:00"]
        assert fires("0 0 * * 0", "UTC", "2026-11-22T01:00:00+00:00", 2) == sunday
        assert fires("0 0 * * 7", "UTC", "2026-11-22T01:00:00+00:00", 2) == sunday
        assert fires("0 0 * * sun", "UTC", "2026-11-22T01:00:00+00:00", 2) == sunday
        assert [d[:10] for d in fires("0 0 * * 5-7", "UTC", "2026-11-22T01:00:00+00:00", 3)] == [
            "2026-11-27",  # Fri
            "2026-11-28",  # Sat
            "2026-11-29",  # Sun
        ]
        assert [d[:10] for d in fires("0 9 * * 1-5", "UTC", "2026-11-27T10:00:00+00:00", 2)] == [
            "2026-11-30",  # Fri 10:00 -> Mon, Tue
            "2026-12-01",
        ]

    def test_day_of_month_or_day_of_week(self):
        # Both restricted: cron fires when either matches (the 13th, or any Friday).
        days = [d[:10] for d in fires("0 0 13 * 5", "UTC", "2026-11-22T01:00:00+00:00", 5)]
        assert days == ["2026-11-27", "2026-12-04", "2026-12-11", "2026-12-13", "2026-12-18"]
        # One of them `*` (or `?`): the other one decides alone.
        fridays = fires("0 0 ? * 5", "UTC", "2026-11-22T01:00:00+00:00", 2)
        assert [d[:10] for d in fridays] == ["2026-11-27", "2026-12-04"]
        thirteenths = fires("0 0 13 * *", "UTC", "2026-11-22T01:00:00+00:00", 2)
        assert [d[:10] for d in thirteenths] == ["2026-12-13", "2027-01-13"]
        # A stepped `*/10` is restricted (as in KubeRay's robfig/cron): the 1st, 11th, 21st, 31st or a Monday.
        days = [d[:10] for d in fires("0 0 */10 * 1", "UTC", "2026-11-22T01:00:00+00:00", 4)]
        assert days == ["2026-11-23", "2026-11-30", "2026-12-01", "2026-12-07"]

    def test_names_and_ranges(self):
        # Names in either case; `5-7` and `fri,sat,0` are the same days (Fri, Sat, Sun).
        for expr in ("0 0 * * 5-7", "0 0 * * FRI,sat,0"):
            assert [d[:10] for d in fires(expr, "UTC", "2026-11-22T01:00:00+00:00", 3)] == [
                "2026-11-27",
                "2026-11-28",
                "2026-11-29",
            ], expr
        # A single day with a step runs to Saturday: Fri, Sat, then the next Friday.
        assert [d[:10] for d in fires("0 0 * * 5/1", "UTC", "2026-11-22T01:00:00+00:00", 3)] == [
            "2026-11-27",
            "2026-11-28",
            "2026-12-04",
        ]
        assert [d[:7] for d in fires("0 0 1 JAN-mar *", "UTC", "2026-11-22T01:00:00+00:00", 3)] == [
            "2027-01",
            "2027-02",
            "2027-03",
        ]

    def test_shortcuts_and_steps(self):
        assert fires("@daily", "UTC", "2026-11-22T01:00:00+00:00", 1) == ["2026-11-23T00:00:00+00:00"]
        assert fires("*/20 9 * * *", "UTC", "2026-11-22T09:05:00+00:00", 3) == [
            "2026-11-22T09:20:00+00:00",
            "2026-11-22T09:40:00+00:00",
            "2026-11-23T09:00:00+00:00",
        ]

    def test_time_zone(self):
        # 02:00 in New York is 07:00 UTC in winter.
        t = CronExpression.parse("0 2 * * *", "America/New_York").next_after(ts("2026-11-22T00:00:00+00:00"))
        assert datetime.fromtimestamp(t, UTC).isoformat() == "2026-11-22T07:00:00+00:00"

    def test_dst_spring_forward_fires_once(self):
        # 2026-03-29 02:30 does not exist in Berlin: it fires once that day, when the clocks jump (as cron does).
        got = fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00+00:00", 3)
        assert got == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        # Four times in the skipped hour: still one firing that day.
        got = fires("*/15 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+00:00", 2)
        assert got == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]
        # With `*` hours the other hours fire as usual.
        got = fires("30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00+00:00", 2)
        assert got == ["2026-03-29T01:30:00+01:00", "2026-03-29T03:30:00+02:00"]

    def test_dst_fall_back_does_not_fire_twice(self):
        # 2026-10-25 02:30 happens twice in Berlin; a fixed-time job fires on the first pass only.
        got = fires("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00+00:00", 2)
        assert got == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        # With `*` hours the repeated hour is elapsed time and fires as such.
        got = fires("0 * * * *", "Europe/Berlin", "2026-10-24T23:30:00+00:00", 3)
        assert got == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
        # Restricted hours across the change: 02:30 once, and the hours around it as usual.
        got = fires("30 1-3 * * *", "Europe/Berlin", "2026-10-24T22:00:00+00:00", 4)
        assert got == [
            "2026-10-25T01:30:00+02:00",
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T03:30:00+01:00",
            "2026-10-26T01:30:00+01:00",
        ]
        # Asked from inside the repeated hour, the next time is after it (not the repeat of 02:30).
        t = CronExpression.parse("30 2 * * *", "Europe/Berlin").next_after(ts("2026-10-25T00:45:00+00:00"))
        assert local(t, "Europe/Berlin") == "2026-10-26T02:30:00+01:00"

    def test_next_after_is_strictly_after(self):
        cron = CronExpression.parse("*/20 9 * * *")
        t = ts("2026-11-22T09:20:00+00:00")
        assert cron.next_after(t) == t + 20 * 60 and cron.next_after(t - 0.5) == t
        assert list(cron.times_between(t - 1, t + 20 * 60)) == [t, t + 20 * 60]
        assert list(cron.times_between(t, t + 86400)) == [t + 20 * 60, t + 86400 - 20 * 60, t + 86400]
        assert CronExpression.parse("0 0 30 2 *").next_after(t) is None
        assert CronExpression.parse("0 0 29 2 *").next_after(t) == ts("2028-02-29T00:00:00+00:00")

    @pytest.mark.parametrize(
        "expr,needle",
        [
            ("61 * * * *", "minute field `61`: 61 is higher than the maximum value (59)"),
            ("* 24 * * *", "hour field `24`"),
            ("0 0 0 * *", "day-of-month field `0`: 0 is lower than the minimum value (1)"),
            ("0 0 * * 8", "day-of-week field `8`: 8 is higher than the maximum value (7)"),
            ("* * *", "has 3 fields; cron needs 5"),
            ("* * * * * *", "has 6 fields; cron needs 5"),
            ("0 0 * * funday", "day-of-week field `funday`: `funday` is not a day-of-week (0-7, sun-sat)"),
            ("0 0 * * 6-1", "day-of-week field `6-1`: the range `6-1` goes backwards"),
            ("0 0 * * sat-sun", "goes backwards"),
            # croniter's extensions, which standard cron (and KubeRay) do not read
            ("0 0 L * *", "day-of-month field `L`: use numbers, `*`, ranges (a-b), lists (a,b) and steps (/n)"),
            ("0 0 1W * *", "day-of-month field `1W`"),
            ("0 0 * * 1#2", "day-of-week field `1#2`"),
            ("H * * * *", "minute field `H`"),
            ("*/0 * * * *", "minute field `*/0`: the step in `*/0` must be 1 or more"),
            ("@fortnightly", "unknown shortcut `@fortnightly`"),
            ("0 0 * jab *", "month field `jab`: `jab` is not a month (1-12, jan-dec)"),
        ],
    )
    def test_invalid(self, expr, needle):
        with pytest.raises(CronError) as e:
            CronExpression.parse(expr)
        assert needle in str(e.value)


# --- the spec's schedule section ---------------------------------------------------------------------------------

JOB = {"name": "nightly", "algorithm": "PPO", "env": "CartPole-v1"}


class TestScheduleSpec:
    def test_defaults_and_round_trip(self):
        spec = parse_spec({"job": JOB, "schedule": {"cron": "0  2 * * *"}})
        s = spec.schedule
        assert (s.cron, s.timezone, s.overlap, s.catch_up, s.seed) == ("0 2 * * *", "UTC", "skip", "latest", "spec")
        again = parse_spec(yaml.safe_load(spec.to_yaml()))
        assert again.schedule == s

    def test_shipped_schedule_spec(self):
        spec = load_spec(ROOT / "cluster_configs" / "local-autoscale-schedule.yaml")
        assert spec.schedule.timezone == "Europe/Berlin" and spec.schedule.seed == "from_firing"

    @pytest.mark.parametrize(
        "schedule,needles",
        [
            ({"cron": "0 25 * * *"}, ["schedule.cron", "hour field `25`"]),
            ({"cron": "0 2 * * *", "timezone": "Europe/Berlim"}, ["schedule.timezone", "did you mean `Europe/Berlin`"]),
            ({"cron": "0 2 * * *", "timezone": "berlin"}, ["did you mean `Europe/Berlin`"]),
            ({"cron": "0 2 * * *", "overlap": "replace"}, ["schedule.overlap", "cancel_previous"]),
            ({"cron": "0 2 * * *", "catchup": "all"}, ["unknown key `catchup`", "did you mean `catch_up`"]),
            ({"cron": "0 0 30 2 *"}, ["never fires"]),
            ({"timezone": "UTC"}, ["schedule.cron", "required"]),
        ],
    )
    def test_bad_schedule(self, schedule, needles):
        with pytest.raises(SpecError) as e:
            parse_spec({"job": JOB, "schedule": schedule}, "nightly.yaml")
        text = str(e.value)
        assert text.startswith("nightly.yaml") and all(n in text for n in needles), text


# --- which firings are due (pure, controlled clock) --------------------------------------------------------------


class TestDue:
    cron = CronExpression.parse("0 * * * *")  # hourly
    t0 = ts("2026-11-22T00:00:00+00:00")
    H = 3600.0

    def test_nothing_due_before_the_time(self):
        due = due_firings(self.cron, self.t0, self.t0 - 1, "latest")
        assert due.fire == [] and due.missed == [] and due.next_fire_at == self.t0

    def test_on_time_within_grace(self):
        due = due_firings(self.cron, self.t0, self.t0 + MISFIRE_GRACE_S, "none")
        assert due.fire == [self.t0] and due.missed == [] and due.next_fire_at == self.t0 + self.H

    @pytest.mark.parametrize(
        "policy,fire,missed",
        [("none", [], [0, 1, 2, 3]), ("latest", [3], [0, 1, 2]), ("all", [1, 2, 3], [0])],
    )
    def test_catch_up_after_downtime(self, policy, fire, missed):
        now = self.t0 + 3 * self.H + 600  # down from before 00:00 to 03:10: 00:00..03:00 are late
        due = due_firings(self.cron, self.t0, now, policy, max_catch_up=3)
        assert due.fire == [self.t0 + i * self.H for i in fire]
        assert due.missed == [self.t0 + i * self.H for i in missed]
        assert due.next_fire_at == self.t0 + 4 * self.H

    def test_latest_yields_to_an_on_time_firing(self):
        now = self.t0 + 3 * self.H + 30  # 03:00 is on time: the missed ones are not caught up on top of it
        due = due_firings(self.cron, self.t0, now, "latest")
        assert due.fire == [self.t0 + 3 * self.H] and len(due.missed) == 3

    def test_long_downtime_is_bounded(self):
        minutely = CronExpression.parse("* * * * *")
        due = due_firings(minutely, self.t0, self.t0 + 7 * 86400, "all", max_catch_up=5)
        # 3 are within the grace (on time); of the late ones 5 are caught up, 50 get a row, the rest a count.
        assert len(due.fire) == 5 + 3 and len(due.missed) == 50
        assert due.missed_uncounted == 7 * 1440 + 1 - 3 - 5 - 50


# --- registry + scheduler without submissions ----------------------------------------------------------------


@pytest.fixture
def reg(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_HOME", str(tmp_path / "home"))
    return Registry(tmp_path / "home" / "registry.db")


def sleeper_spec(tmp_path: Path, seconds: float = 60, **schedule) -> Path:
    """A tiny job (an entry script that sleeps) with a schedule: fast to submit, and overlap is real."""
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    (job_dir / "sleeper.py").write_text(
        "import argparse, os, time\n"
        "p = argparse.ArgumentParser(); p.add_argument('--seconds', type=float); a = p.parse_args()\n"
        "print('run', os.environ['RLO_RUN_ID'], flush=True); time.sleep(a.seconds)\n"
    )
    spec = {
        "job": {
            "name": "sleeper-job",  # runs are named after the schedule all the same
            "entry_script": "sleeper.py",
            "script_args": {"seconds": seconds},
            "num_env_runners": 0,
        },
        "schedule": {"name": "sleepy", "cron": "* * * * *", **schedule},
    }
    path = job_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_claim_is_once_per_fire_time(reg, tmp_path):
    add_schedule(load_spec(sleeper_spec(tmp_path)), registry=reg, now=ts("2026-11-22T00:00:30+00:00"))
    t = ts("2026-11-22T00:01:00+00:00")
    assert reg.claim_firings("sleepy", [t], "submitting", t + 60) == [t]
    assert reg.claim_firings("sleepy", [t], "submitting", t + 60) == []  # a second scheduler, or a restart
    assert reg.schedule("sleepy").next_fire_at == t + 60
    assert [f.outcome for f in reg.firings("sleepy")] == ["submitting"]


def test_catch_up_none_records_missed_and_submits_nothing(reg, tmp_path):
    start = ts("2026-11-22T00:00:30+00:00")
    add_schedule(load_spec(sleeper_spec(tmp_path, catch_up="none")), cron="0 * * * *", registry=reg, now=start)
    lines: list[str] = []
    with Scheduler(reg, clock=ManualClock(start + 3.5 * 3600), log=lines.append) as sched:  # down until 03:30
        out = sched.tick()
    assert [(f.fire_time - start + 30) / 3600 for f in out] == [1, 2, 3]
    assert [f.outcome for f in out] == ["missed"] * 3 and "no scheduler was running" in out[0].message
    assert reg.list() == []  # nothing was submitted
    assert reg.schedule("sleepy").next_fire_at == ts("2026-11-22T04:00:00+00:00")
    assert len(lines) == 3 and all("missed" in ln for ln in lines)


def test_pause_resume_skips_the_paused_times(reg, tmp_path):
    start = ts("2026-11-22T00:00:30+00:00")
    add_schedule(load_spec(sleeper_spec(tmp_path)), registry=reg, now=start)
    pause_schedule("sleepy", registry=reg)
    with Scheduler(reg, clock=ManualClock(start + 3600)) as sched:
        assert sched.tick() == []
    rec = resume_schedule("sleepy", registry=reg, now=start + 3600)
    assert not rec.paused and rec.next_fire_at == ts("2026-11-22T01:01:00+00:00")
    assert reg.firings("sleepy") == []


def test_interrupted_firing_is_never_resubmitted(reg, tmp_path):
    from orchestrator.records import RunRecord
    from orchestrator.schedule import firing_tag

    start = ts("2026-11-22T00:00:30+00:00")
    add_schedule(load_spec(sleeper_spec(tmp_path)), registry=reg, now=start)
    t1, t2 = start + 30, start + 90
    # A scheduler died after claiming two firings: one had created its run, the other had not.
    reg.claim_firings("sleepy", [t1, t2], "submitting", t2 + 60)
    reg.create(
        RunRecord(
            id="rlo-sleepy-1",
            name="sleepy",
            created_at=start,
            updated_at=start,
            backend="ray-local",
            status="PENDING",
            spec={},
            command=f"rlo scheduler # {firing_tag('sleepy', t1)}",
        )
    )
    with Scheduler(reg, clock=ManualClock(t2 + 1)) as sched:  # the restarted scheduler
        assert sched.tick() == []
    got = {f.fire_time: (f.outcome, f.run_id) for f in reg.firings("sleepy")}
    assert got == {t1: ("submitted", "rlo-sleepy-1"), t2: ("failed", None)}
    assert "not retried" in reg.firings("sleepy", outcome="failed")[0].message


def test_one_scheduler_per_registry(reg):
    with Scheduler(reg):
        with pytest.raises(SchedulerLocked, match=f"pid {os.getpid()}"):
            Scheduler(reg).acquire()
    with Scheduler(reg):  # released on exit
        pass


_TAKE_LOCK = """
import os, sys
from orchestrator.registry import Registry
from orchestrator.scheduler import Scheduler, SchedulerLocked
try:
    Scheduler(Registry(sys.argv[1])).acquire()
except SchedulerLocked as e:
    print(e)
    sys.exit(3)
print(os.getpid())
os._exit(0)  # dies holding the lock: no close()
"""


def test_the_lock_holds_across_processes_and_dies_with_its_holder(reg):
    def other_process():
        return subprocess.run(
            [sys.executable, "-c", _TAKE_LOCK, str(reg.path)], capture_output=True, text=True, timeout=120
        )

    with Scheduler(reg) as sched:
        res = other_process()
        assert res.returncode == 3 and f"another scheduler (pid {os.getpid()}) is already running" in res.stdout
    assert not sched.holder_path.exists()  # a clean stop leaves no holder behind
    res = other_process()  # takes the lock and dies with it: its holder file stays, the lock goes with it
    assert res.returncode == 0, res.stderr
    assert sched.holder_path.read_text() == f"pid {res.stdout.strip()}"
    with Scheduler(reg) as again:
        assert again.holder_path.read_text() == f"pid {os.getpid()}"


def too_big(tmp_path: Path) -> Path:
    """A job that can never run here (8 env runners on a head of 16 vCPUs, asked of a 2-core machine)."""
    path = sleeper_spec(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["job"]["num_env_runners"] = 8
    path.write_text(yaml.safe_dump({**spec, "cluster": {"head": {"vcpus": 16}}}))
    return path


def test_add_validates_like_submit(reg, tmp_path):
    with pytest.raises(UserError, match="needs 9 CPUs"):
        add_schedule(load_spec(too_big(tmp_path)), cron="0 2 * * *", registry=reg)
    spec = load_spec(sleeper_spec(tmp_path))
    (tmp_path / "job" / "sleeper.py").unlink()
    with pytest.raises(UserError, match="entry script `sleeper.py` does not exist"):
        add_schedule(spec, registry=reg)
    assert reg.schedules() == []


# --- RayCronJob ---------------------------------------------------------------------------------------------------


def test_raycronjob_validates_against_the_crd(tmp_path):
    from orchestrator.render.kuberay import rayjob_spec
    from orchestrator.render.raycronjob import render_raycronjob

    spec = load_spec(ROOT / "cluster_configs" / "local-autoscale-schedule.yaml")
    out = render_raycronjob(prepare_render(spec), namespace="rl")
    doc = out.raycronjob
    # As the API server would: the CRD's schema, and no field it would prune.
    assert validate_manifest(doc) == []
    # The CRD has no concurrency policy to map `overlap` to: Kubernetes would drop one.
    with_policy = {**doc, "spec": {**doc["spec"], "concurrencyPolicy": "Forbid"}}
    assert validate_manifest(with_policy) == ["would be pruned: .spec.concurrencyPolicy"]
    assert doc["kind"] == "RayCronJob" and doc["metadata"]["name"] == "autoscale-nightly"
    assert doc["spec"]["schedule"] == "0 2 * * *" and doc["spec"]["timeZone"] == "Europe/Berlin"
    tmpl = doc["spec"]["jobTemplate"]
    assert "jobId" not in tmpl  # KubeRay gives each firing's RayJob its own
    assert tmpl["shutdownAfterJobFinishes"] is True and tmpl["entrypoint"].startswith("python -u -m entry_scripts.")
    # The template is the KubeRay renderer's RayJob spec (a RayJob validates with it too).
    unseeded = spec.model_copy(update={"job": spec.job.model_copy(update={"seed": None}), "schedule": None})
    expected = rayjob_spec(prepare_render(unseeded), run_id="rlo-autoscale-nightly-cron")
    expected.pop("jobId")
    assert tmpl == expected
    assert (
        validate_manifest({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"}, "spec": tmpl}) == []
    )
    notes = " ".join(out.notices)
    assert "no concurrency policy" in notes and "`overlap: skip` is not enforced" in notes
    assert "seed: from_firing" in notes
    travels = json.loads(yaml.safe_load(tmpl["runtimeEnvYAML"])["env_vars"]["RLO_SPEC_JSON"])
    assert travels["job"]["seed"] is None and travels["schedule"] is None


def test_raycronjob_with_job_files_and_errors(tmp_path):
    from orchestrator.render.raycronjob import render_raycronjob

    out = render_raycronjob(prepare_render(load_spec(sleeper_spec(tmp_path, overlap="queue", catch_up="none"))))
    kinds = [d["kind"] for d in out.documents]
    assert kinds == ["ConfigMap", "RayCronJob"]
    assert "sleeper.py" in json.dumps(out.documents[0])
    assert [validate_manifest(d) for d in out.documents[1:]] == [[]]
    assert "`overlap: queue` is not enforced" in out.notices[0] and "catch_up: none" in out.notices[1]
    with pytest.raises(UserError, match="no `schedule:` section"):
        render_raycronjob(prepare_render(parse_spec({"job": JOB})))


# --- the CLI (no Ray needed) --------------------------------------------------------------------------------------


def cli(home: Path, *args, check=None):
    res = subprocess.run(
        [*RLO, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "RLO_HOME": str(home)},
    )
    if check is not None:
        assert res.returncode == check, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    if res.returncode == 2:
        assert "Traceback" not in res.stderr + res.stdout
    return res


def test_cli_add_list_pause_resume_history_remove(tmp_path):
    home = tmp_path / "home"
    spec = sleeper_spec(tmp_path)
    res = cli(home, "schedule", "add", spec, "--cron", "30 2 * * *", "--timezone", "America/New_York", check=0)
    assert res.stdout.strip() == "sleepy" and "next firing" in res.stderr
    res = cli(home, "schedule", "list", check=0)
    row = res.stdout.splitlines()[1].split()
    assert row[:3] == ["sleepy", "30", "2"] and "America/New_York" in row
    assert " EST " in res.stdout and " UTC " in res.stdout and "active" in res.stdout
    listed = json.loads(cli(home, "schedule", "list", "--json", check=0).stdout)
    assert listed[0]["cron"] == "30 2 * * *" and listed[0]["overlap"] == "skip" and listed[0]["last_firing"] is None
    assert datetime.fromtimestamp(listed[0]["next_fire_at"], UTC).strftime("%H:%M") == "07:30"

    cli(home, "schedule", "pause", "sleepy", check=0)
    assert json.loads(cli(home, "schedule", "list", "--json").stdout)[0]["paused"] is True
    cli(home, "schedule", "resume", "sleepy", check=0)
    assert "has not fired yet" in cli(home, "schedule", "history", "sleepy", check=0).stderr
    # --once: nothing is due now, so nothing fires and no Ray starts.
    res = cli(home, "scheduler", "--once", check=0)
    assert "1 active schedule" in res.stdout and not (home / "local-ray" / "state.json").exists()

    res = cli(home, "schedule", "add", spec, check=2)
    assert "already exists" in res.stderr and "--replace" in res.stderr
    cli(home, "schedule", "add", spec, "--replace", "--overlap", "queue", check=0)
    assert json.loads(cli(home, "schedule", "list", "--json").stdout)[0]["cron"] == "* * * * *"
    cli(home, "schedule", "remove", "sleepy", check=0)
    assert json.loads(cli(home, "schedule", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "flags,needles",
    [
        (["--cron", "0 2 * *"], ["at `--cron`", "has 4 fields"]),
        (["--cron", "0 2 * * *", "--timezone", "Europe/Berlim"], ["at `--timezone`", "did you mean `Europe/Berlin`"]),
        (["--name", "Nightly_Run"], ["at `--name`", "lowercase letters"]),
        (["--overlap", "replace"], ["Invalid value for '--overlap'", "'replace' is not one of"]),
    ],
)
def test_cli_bad_input_stores_nothing(tmp_path, flags, needles):
    home = tmp_path / "home"
    res = cli(home, "schedule", "add", sleeper_spec(tmp_path), *flags, check=2)
    assert all(n in res.stderr for n in needles), res.stderr
    assert not (home / "registry.db").exists() or Registry(home / "registry.db").schedules() == []


def test_cli_errors_name_the_fix(tmp_path):
    home = tmp_path / "home"
    res = cli(home, "schedule", "add", too_big(tmp_path), "--cron", "0 2 * * *", check=2)
    assert "needs 9 CPUs" in res.stderr and "fix:" in res.stderr
    res = cli(home, "schedule", "add", "cluster_configs/local-cartpole.yaml", check=2)
    assert "no cron expression" in res.stderr and "--cron" in res.stderr
    cli(home, "schedule", "add", sleeper_spec(tmp_path), check=0)
    res = cli(home, "schedule", "history", "slepy", check=2)
    assert "no schedule `slepy`" in res.stderr and "did you mean `sleepy`?" in res.stderr
    for command in (["render", "raycronjob"], ["schedule", "render"]):
        out = tmp_path / "-".join(command)
        res = cli(home, *command, "cluster_configs/local-autoscale-schedule.yaml", "-o", out, check=0)
        doc = yaml.safe_load((out / "raycronjob.yaml").read_text())
        assert doc["kind"] == "RayCronJob" and doc["spec"]["timeZone"] == "Europe/Berlin"
        assert "note: KubeRay's RayCronJob has no concurrency policy" in res.stdout
    res = cli(home, "render", "raycronjob", "cluster_configs/local-cartpole.yaml", "-o", tmp_path, check=2)
    assert "no cron expression" in res.stderr


# --- real firings on the session's Ray ----------------------------------------------------------------------------


@pytest.fixture
def own_registry(rlo_home, tmp_path, monkeypatch):
    """The session's Ray, a registry of this test's own (runs and schedules of other tests stay apart)."""
    path = tmp_path / "registry.db"
    monkeypatch.setenv("RLO_REGISTRY", str(path))
    return Registry(path)


def stop_runs(reg: Registry) -> None:
    from orchestrator.run import Run

    for rec in reg.list():
        if not rec.terminal:
            Run(rec, reg).stop(wait=True, timeout=60)


@pytest.mark.ray
def test_overlap_policies_and_restart_with_real_runs(own_registry, tmp_path):
    reg = own_registry
    t0 = ts("2026-11-22T03:00:00+00:00")
    add_schedule(load_spec(sleeper_spec(tmp_path, seed="from_firing")), registry=reg, now=t0 - 30)
    lines: list[str] = []
    clock = ManualClock(t0)
    sched = Scheduler(reg, clock=clock, log=lines.append).acquire()
    try:
        # 03:00 fires: a real run (the job is named after the schedule, its seed is the fire time).
        [first] = sched.tick()
        assert first.outcome == "submitted" and first.run_id.startswith("rlo-sleepy-")
        run_a = reg.get(first.run_id)
        assert run_a.spec["job"]["seed"] == int(t0) and first.message == f"seed {int(t0)}"
        assert run_a.spec["schedule"] is None  # the run is the job alone
        assert "schedule=sleepy firing=" in run_a.command

        # 03:01, overlap skip: A is still going.
        [f] = sched.tick(clock.advance(60))
        assert f.outcome == "skipped" and first.run_id in f.message and f.run_id is None

        # 03:02 and 03:03, overlap queue: one firing waits, a second one does not pile up.
        reg.update_schedule("sleepy", overlap="queue")
        [f] = sched.tick(clock.advance(60))
        assert f.outcome == "queued" and first.run_id in f.message
        [f] = sched.tick(clock.advance(60))
        assert f.outcome == "skipped" and "already queued" in f.message
        # A ends: the queued 03:02 firing is submitted at the next tick.
        from orchestrator.run import Run

        assert Run(reg.get(first.run_id), reg).stop(wait=True, timeout=60) == "STOPPED"
        [f] = sched.tick(clock.advance(5))
        assert f.fire_time == t0 + 120 and f.outcome == "submitted" and "was queued" in f.message
        run_b = f.run_id
        assert reg.get(run_b).spec["job"]["seed"] == int(t0 + 120)

        # 03:04, overlap cancel_previous: B is stopped, C starts.
        reg.update_schedule("sleepy", overlap="cancel_previous")
        [f] = sched.tick(ts("2026-11-22T03:04:00+00:00"))
        assert f.outcome == "cancelled_previous" and f"stopped the previous run {run_b} (STOPPED)" in f.message
        assert Run(reg.get(run_b), reg).status() == "STOPPED" and f.run_id not in (first.run_id, run_b)
        assert Run(reg.get(f.run_id), reg).status() in ("PENDING", "RUNNING")
        history = [(g.fire_time - t0, g.outcome) for g in reversed(reg.firings("sleepy"))]
        assert history == [
            (0, "submitted"),
            (60, "skipped"),
            (120, "submitted"),
            (180, "skipped"),
            (240, "cancelled_previous"),
        ]
    finally:
        sched.close()

    # A new scheduler on the same registry (a restart) at the same time fires nothing twice and loses nothing;
    # at the next time it goes on, knowing from the registry alone that run C is still going.
    run_c = reg.last_run_firing("sleepy").run_id
    reg.update_schedule("sleepy", overlap="skip")
    with Scheduler(reg, clock=ManualClock(t0 + 245), log=lines.append) as again:
        assert again.tick() == []
        assert reg.schedule("sleepy") is not None and len(reg.firings("sleepy")) == 5
        [f] = again.tick(t0 + 300)
        assert f.outcome == "skipped" and run_c in f.message
        assert len(reg.list()) == 3
    assert len(lines) == 7 and all(ln.split()[1] == "sleepy:" for ln in lines)
    stop_runs(reg)


@pytest.mark.ray
def test_rlo_scheduler_process_fires_stops_and_restarts(own_registry, tmp_path, rlo):
    reg = own_registry
    rlo("schedule", "add", sleeper_spec(tmp_path, seconds=0.1, overlap="queue"), check_exit=0)
    first = reg.schedule("sleepy").next_fire_at
    # A clock 10x real time that starts 3 s (simulated) before the next fire time: firings every 6 s.
    start = first - 3
    proc = subprocess.Popen(
        [*RLO, "scheduler", "--clock-start", str(start), "--clock-speed", "10", "--max-sleep", "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len([f for f in reg.firings("sleepy") if f.run_id]) < 2:
            time.sleep(0.5)
            assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    firings = list(reversed(reg.firings("sleepy")))
    assert [f.fire_time for f in firings[:2]] == [first, first + 60]
    assert all(f.outcome in ("submitted", "queued", "skipped") for f in firings)
    assert [f.fire_time for f in firings if f.run_id][:2] == [first, first + 60]
    assert out.splitlines()[0].startswith("[rlo] scheduler (pid") and out.splitlines()[-1] == "[rlo] scheduler stopped"
    assert sum(" sleepy: " in ln for ln in out.splitlines()) >= len(firings)

    # Restarted at a time it has already handled: no new firing, and every run belongs to exactly one firing.
    before = {f.fire_time for f in reg.firings("sleepy")}
    res = rlo("scheduler", "--once", "--clock-start", str(max(before) + 1), check_exit=0)
    assert {f.fire_time for f in reg.firings("sleepy")} == before, res.stdout
    runs = [f.run_id for f in reg.firings("sleepy") if f.run_id]
    assert sorted(runs) == sorted(r.id for r in reg.list()) and len(set(runs)) == len(runs)
    stop_runs(reg)
