"""The soonest next runs of the enabled schedules, computed when asked (for the health page).

When a schedule fires is scheduler.timing's answer; this module only asks it cheaply for many
schedules at once. One query reads the few columns timing needs from every enabled schedule,
one query per kind of timing row (crontab, interval, solar, clocked) builds each row's Celery
schedule once, and schedules that share a timing row and its bounds and phase (every schedule
on one crontab after beat dispatched their common slot) share one computation. Only the
`limit` soonest get their names read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from scheduler.timing import Timing, next_fire_times

logger = logging.getLogger(__name__)

# In PeriodicTask.scheduler's order: an interval wins over a crontab, and so on.
_KINDS: tuple[tuple[str, Any], ...] = (
    ("interval", IntervalSchedule),
    ("crontab", CrontabSchedule),
    ("solar", SolarSchedule),
    ("clocked", ClockedSchedule),
)
_COLUMNS = (
    "pk",
    *(f"{kind}_id" for kind, _ in _KINDS),
    "start_time",
    "expires",
    "one_off",
    "total_run_count",
    "last_run_at",
    "date_changed",
)


@dataclass(frozen=True)
class NextRun:
    at: datetime
    schedule: str
    job: str
    schedule_id: int


@dataclass(frozen=True)
class Upcoming:
    """The soonest next runs, and how many enabled schedules have a next run at all."""

    runs: list[NextRun]
    total: int


def soonest_runs(limit: int, now: datetime | None = None) -> Upcoming:
    """The `limit` soonest next runs (never before `now`) of the enabled schedules."""
    now = now or timezone.now()
    rows = list(PeriodicTask.objects.filter(enabled=True).values_list(*_COLUMNS))
    schedules: dict[tuple[str, int], Any] = {}
    for position, (kind, model) in enumerate(_KINDS, start=1):
        ids = {row[position] for row in rows if row[position] is not None}
        if ids:
            for timing_row in model.objects.filter(pk__in=ids):
                schedules[kind, timing_row.pk] = _celery_schedule(timing_row)
    known: dict[tuple[Any, ...], datetime | None] = {}
    found: list[tuple[datetime, int]] = []
    for pk, *refs, start, expires, one_off, total_run_count, last_run_at, changed in rows:
        kind, ref = next(((k, r) for (k, _), r in zip(_KINDS, refs, strict=True) if r), ("", 0))
        sched = schedules.get((kind, ref))
        if sched is None:  # no timing row, or one Celery cannot build: never fires
            continue
        # The same test as timing.next_run: a one-off that ran has no next run.
        if one_off and (total_run_count or (kind == "clocked" and last_run_at)):
            continue
        # The date of the last edit is a phase only when nothing else is.
        phase = changed if last_run_at is None and start is None else None
        key = (kind, ref, start, expires, one_off, last_run_at, phase)
        if key not in known:
            timing = Timing(sched, start, expires, one_off, last_run_at, changed)
            try:
                times = next_fire_times(timing, now, count=1)
            except Exception:  # one broken schedule must not hide the others' next runs
                logger.warning("cannot compute the next run of schedule %s", pk, exc_info=True)
                times = []
            known[key] = times[0] if times else None
        at = known[key]
        if at is not None:
            found.append((at, pk))
    found.sort()
    soonest = found[:limit]
    names = PeriodicTask.objects.only("name", "task").in_bulk([pk for _, pk in soonest])
    runs = [
        NextRun(at, names[pk].name, names[pk].task, pk) for at, pk in soonest if pk in names
    ]  # a schedule deleted in between is left out
    return Upcoming(runs, len(found))


def _celery_schedule(row: Any) -> Any:
    try:
        return row.schedule
    except (OverflowError, ValueError):  # as timing.celery_schedule: one beat cannot build
        return None
