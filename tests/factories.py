"""Rows tests build. One module for them all (see CONVENTIONS.md); grown as tests need rows.

Runs: `job_run` (unsaved), `create_run`, `create_runs` (bulk) and `insert_runs` (a million, in
SQL). Schedules: `make_schedule`; `many_schedules_and_runs` for query budgets. Users of the
admin's groups: `user_in`. Backups: `create_backup`. A site's worth of rows: `sample_site`.

`differential_schedules` is the random schedule set of the differential test
(tests/scheduler/test_engine_differential.py): every kind of timing, every option a
PeriodicTask row can carry, reproducible from a seeded `random.Random`.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from io import StringIO
from typing import Any
from uuid import uuid4

from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
    SolarSchedule,
)

# A million runs in seconds, in SQL; shared with bench/admin.py, hence kept outside tests/.
from devtools.bulk_runs import insert_runs as insert_runs
from jobs.models import Backup, WorkerHeartbeat
from scheduler.models import JobRun, Schedule
from scheduler.sync import get_crontab

# A PBKDF2 hash made once: hashing a password per test user would cost seconds.
PASSWORD_HASH = "pbkdf2_sha256$1000000$salt$" + "A" * 43 + "="

# --- Runs ---------------------------------------------------------------------------------------


def job_run(
    job: str = "jobs.heartbeat",
    status: str = JobRun.Status.SUCCEEDED,
    started_at: datetime | None = None,
    duration: float | None = None,
    **fields: Any,
) -> JobRun:
    """An unsaved run: by default a scheduled run of `job` that succeeded just now, with a
    task id of its own. `duration` (seconds) sets finished_at and duration_seconds."""
    started_at = timezone.now() if started_at is None else started_at
    if duration is not None:
        fields.setdefault("finished_at", started_at + timedelta(seconds=duration))
        fields.setdefault("duration_seconds", duration)
    fields.setdefault("task_id", uuid4().hex)
    fields.setdefault("trigger", JobRun.Trigger.SCHEDULE)
    return JobRun(job=job, status=status, started_at=started_at, **fields)


def create_run(
    job: str = "jobs.heartbeat",
    status: str = JobRun.Status.SUCCEEDED,
    started_at: datetime | None = None,
    duration: float | None = None,
    **fields: Any,
) -> JobRun:
    """`job_run`, saved."""
    run = job_run(job, status, started_at, duration, **fields)
    run.save()
    return run


def create_runs(runs: Iterable[JobRun], batch_size: int = 5000) -> list[JobRun]:
    """Save many `job_run`s at once (bulk_create)."""
    return JobRun.objects.bulk_create(runs, batch_size=batch_size)


# --- Schedules, users, backups ------------------------------------------------------------------


def make_schedule(
    name: str, expression: str = "0 15 * * *", tz: str | None = None, **fields: Any
) -> Schedule:
    fields.setdefault("task", "jobs.heartbeat")
    if "crontab" not in fields:  # crontab=None: another kind (interval=..., clocked=...)
        fields["crontab"] = get_crontab(expression, tz)
    schedule: Schedule = Schedule.objects.create(name=name, **fields)
    return schedule


def many_schedules_and_runs(schedules: int, runs: int) -> None:
    """`schedules` schedules (crontab and interval in turn) and `runs` runs of them over 30
    days, in rounds; the newest run of every schedule timed out."""
    crontab = get_crontab("*/5 * * * *")
    every_hour = IntervalSchedule.objects.create(every=1, period="hours")
    Schedule.objects.bulk_create(
        [
            Schedule(
                name=f"s{i:04d}",
                task="jobs.heartbeat",
                crontab=crontab if i % 2 else None,
                interval=None if i % 2 else every_hour,
            )
            for i in range(schedules)
        ],
        batch_size=1000,
    )
    PeriodicTasks.update_changed()
    start = timezone.now() - timedelta(days=30)
    rounds = runs // schedules
    statuses = ["succeeded", "failed", "succeeded"]
    create_runs(
        job_run(
            task_id=f"t{i}",
            schedule=f"s{i % schedules:04d}",
            trigger="schedule",
            started_at=start + timedelta(seconds=i * 20),
            duration_seconds=1.5,
            # The newest run of every schedule timed out.
            status="timed_out" if i // schedules == rounds - 1 else statuses[i % 3],
        )
        for i in range(runs)
    )


def user_in(group: str, name: str) -> User:
    """A staff user in one of the admin's groups (no password: log in with force_login)."""
    user = User.objects.create(username=name, is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def create_backup(
    created_at: datetime, path: str, engine: str, verified: bool = True, size_bytes: int = 1
) -> Backup:
    """A Backup row (its file is the caller's business)."""
    return Backup.objects.create(
        created_at=created_at,
        path=path,
        size_bytes=size_bytes,
        sha256="0" * 64,
        duration_seconds=1,
        engine=engine,
        verified=verified,
    )


def sample_site() -> None:
    """What a site holds: users, run history with results and tracebacks, schedules."""
    for name in ("ops", "alice", "夜班"):
        User.objects.create(username=name, email=f"{name}@example.com", password=PASSWORD_HASH)
    start = timezone.now() - timedelta(days=3)
    create_runs(
        job_run(
            task_id=f"task-{i}",
            job="jobs.heartbeat" if i % 3 else "jobs.backup_database",
            schedule="nightshift-heartbeat",
            trigger=JobRun.Trigger.SCHEDULE,
            started_at=start + timedelta(minutes=i),
            finished_at=start + timedelta(minutes=i, seconds=2) if i % 7 else None,
            status=JobRun.Status.SUCCEEDED if i % 5 else JobRun.Status.FAILED,
            # Hex noise: enough data that the dump is tens of kilobytes even compressed.
            traceback=f"Traceback ... {secrets.token_hex(200)}",
            result={"n": i, "note": "ünïcode ✓", "ok": bool(i % 5)},
        )
        for i in range(400)
    )
    WorkerHeartbeat.objects.create(hostname="worker@box", last_seen_at=timezone.now(), runs=42)
    call_command("sync_schedules", stdout=StringIO())


# --- The differential test's schedules ----------------------------------------------------------

COUNTS = {"crontab": 200, "interval": 120, "solar": 80, "clocked": 110}
ZONES = ["Asia/Shanghai", "UTC", "America/New_York"]
# (minute, hour, day_of_month, month_of_year, day_of_week), weight
CRONTABS = [
    (("*/15", "*", "*", "*", "*"), 1),
    (("0", "*", "*", "*", "*"), 2),
    (("0", "*/3", "*", "*", "*"), 4),
    (("*/20", "6-18", "*", "*", "*"), 1),
    (("30", "8", "*", "*", "mon-fri"), 4),
    (("0", "9", "*", "*", "1"), 2),
    (("7", "13", "*", "*", "fri"), 2),
    (("10", "*/6", "*", "*", "sat,sun"), 3),
    (("15", "1-3", "*", "*", "sun"), 3),
    (("45", "23", "*", "*", "*"), 4),
    (("0", "4", "*", "*", "*"), 3),
    (("0,30", "1", "*", "*", "*"), 4),
    (("30", "2", "*", "*", "*"), 4),
    (("0", "0", "1", "*", "*"), 4),
    (("5", "0", "1", "*", "*"), 3),
    (("0", "12", "1-7", "*", "*"), 3),
    (("59", "23", "31", "*", "*"), 3),
    (("0", "6", "31", "10", "*"), 3),
    (("0", "0", "*", "11", "*"), 3),
    (("30", "1", "2", "11", "*"), 3),
    (("0", "3", "9", "3", "*"), 3),
]
# (every, period), weight: 5 minutes to a day in every unit; short ones rare, so that 48 h
# hold a few thousand dispatches.
INTERVALS = [
    ((300, "seconds"), 0.1),
    ((5, "minutes"), 0.1),
    ((10, "minutes"), 0.3),
    ((900, "seconds"), 0.5),
    ((30, "minutes"), 1),
    ((45, "minutes"), 2),
    ((1, "hours"), 4),
    ((90, "minutes"), 5),
    ((7200, "seconds"), 5),
    ((3, "hours"), 5),
    ((6, "hours"), 5),
    ((12, "hours"), 5),
    ((1, "days"), 5),
    ((86400, "seconds"), 3),
]
SOLAR_EVENTS = [
    "sunrise",
    "sunset",
    "solar_noon",
    "dawn_civil",
    "dusk_nautical",
    "dawn_astronomical",
]
PLACES = [(31.23, 121.47), (40.71, -74.01), (51.51, -0.13), (-33.87, 151.21), (64.15, -21.94)]
QUEUES = [None, None, "celery", "reports", "maintenance"]
EXCHANGES = [None, None, None, "celery", "nightshift"]
ROUTING_KEYS = [None, None, "celery", "reports"]


def _whole(moment: datetime) -> datetime:
    """A time as typed in the admin: whole seconds."""
    return moment.replace(microsecond=0)


def _pick(rng: random.Random, weighted: Sequence[tuple[Any, float]]) -> Any:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted])[0]


def differential_schedules(rng: random.Random, start: datetime, hours: float) -> None:
    """COUNTS rows of each kind: first every timing once, plainly; then every option varied."""
    crontabs = {
        (spec, zone): CrontabSchedule.objects.create(
            minute=spec[0],
            hour=spec[1],
            day_of_month=spec[2],
            month_of_year=spec[3],
            day_of_week=spec[4],
            timezone=zone,
        )
        for spec, _ in CRONTABS
        for zone in ZONES
    }
    intervals = {
        spec: IntervalSchedule.objects.create(every=spec[0], period=spec[1])
        for spec, _ in INTERVALS
    }
    solars = [
        SolarSchedule.objects.create(event=event, latitude=lat, longitude=lon)
        for event in SOLAR_EVENTS
        for lat, lon in PLACES
    ]
    plain: dict[str, list[Any]] = {
        "crontab": list(crontabs.values()),
        "interval": list(intervals.values()),
        "solar": list(solars),
        "clocked": [],
    }
    window = timedelta(hours=hours)
    day = timedelta(days=1)
    number = 0
    for kind, count in COUNTS.items():
        for i in range(count):
            number += 1
            fields: dict[str, Any] = {
                "name": f"diff-{number:03d}-{kind}",
                "task": rng.choice(["diff.report", "diff.cleanup"]),  # test_engine_differential's
                "args": json.dumps(rng.choice([[], [number], ["x", 2], [{"k": [1, 2]}]])),
                "kwargs": json.dumps(rng.choice([{}, {"n": number}, {"dry_run": True}])),
                "queue": rng.choice(QUEUES),
                "exchange": rng.choice(EXCHANGES),
                "routing_key": rng.choice(ROUTING_KEYS),
                "priority": rng.choice([None, None, 0, 3, 9]),
                "headers": json.dumps(rng.choice([{}, {}, {"x-team": "ops"}])),
            }
            # When the row was created or last edited; an interval's phase when nothing else is.
            changed = start if rng.random() < 0.3 else start - rng.uniform(0, 3) * day
            every = None
            if kind == "crontab":
                fields["crontab"] = (
                    crontabs[_pick(rng, CRONTABS), rng.choice(ZONES)]
                    if i >= len(plain[kind])
                    else plain[kind][i]
                )
            elif kind == "interval":
                interval = (
                    intervals[_pick(rng, INTERVALS)] if i >= len(plain[kind]) else plain[kind][i]
                )
                fields["interval"] = interval
                every = timedelta(**{interval.period: interval.every})
                # Most phases are less than a period old when beat starts (nothing overdue).
                changed = start - every * rng.uniform(0, 1 if rng.random() < 0.7 else 3)
            elif kind == "solar":
                fields["solar"] = plain[kind][i] if i < len(plain[kind]) else rng.choice(solars)
            else:
                # Spread over the window; some already past when beat starts, some of those on
                # a row saved after that time (as when one types "now" and saves a bit later).
                offset = rng.uniform(-0.1, 1.02) * window
                fields["clocked"] = ClockedSchedule.objects.create(
                    clocked_time=_whole(start + offset)
                )
                changed = start - rng.uniform(0.1, 2) * day
                if offset < timedelta(0) and rng.random() < 0.5:
                    changed = start + offset / 2
            fields["one_off"] = kind == "clocked"
            if i >= len(plain[kind]):
                fields.update(_options(rng, kind, start, window, every))
            task = PeriodicTask.objects.create(**fields)
            PeriodicTask.objects.filter(pk=task.pk).update(date_changed=changed)


def _options(
    rng: random.Random, kind: str, start: datetime, window: timedelta, every: timedelta | None
) -> dict[str, Any]:
    day = timedelta(days=1)
    options: dict[str, Any] = {
        "enabled": rng.random() < 0.93,
        "total_run_count": 0 if rng.random() < 0.7 else rng.randint(1, 40),
    }
    if kind != "clocked" and rng.random() < 0.06:
        options["one_off"] = True
    r = rng.random()
    if r < 0.1:
        options["expires"] = _whole(start + rng.uniform(-0.05, 1) * window)
    elif r < 0.2:
        options["expire_seconds"] = rng.choice([30, 600, 3600])
    r = rng.random()
    if r < 0.1:
        options["start_time"] = _whole(start - rng.uniform(0, 3) * day)
    elif r < 0.2:
        options["start_time"] = _whole(start + rng.uniform(0, 1) * window)
    if kind != "clocked" and rng.random() < 0.35:
        # Written by a beat: its last dispatch, to the microsecond.
        if every is not None:
            options["last_run_at"] = start - every * rng.uniform(0, rng.choice([1, 1, 3]))
        else:
            options["last_run_at"] = start - rng.uniform(0, 3) * day
    return options
