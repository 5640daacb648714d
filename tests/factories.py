"""Rows tests build. One module for them all (see CONVENTIONS.md); grown as tests need rows.

`differential_schedules` is the random schedule set of the differential test
(tests/scheduler/test_engine_differential.py): every kind of timing, every option a
PeriodicTask row can carry, reproducible from a seeded `random.Random`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

# A million runs in seconds, in SQL; shared with bench/admin.py, hence kept outside tests/.
from devtools.bulk_runs import insert_runs as insert_runs

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
                "task": rng.choice(["diff.report", "diff.cleanup"]),  # no such task here
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
