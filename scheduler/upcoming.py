"""The soonest next runs of the enabled schedules, computed when asked (for the health page).

When a schedule fires is scheduler.timing's answer; this module only asks it cheaply for many
schedules at once. One query groups the enabled schedules by what their next run depends on
(timing row, start, expiry, one-off, last slot, and the date of the last edit where that is
the phase): every crontab schedule beat has dispatched shares its group with the others on
that crontab, so 100,000 of them are a few groups; an interval keeps its own phase. One query
per kind of timing row builds each row's Celery schedule once, each group is computed once,
and only the soonest groups' schedules are read by name.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Case, Count, F, Min, When
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
# What a schedule's next run depends on (PeriodicTask.date_changed only as the phase of one
# with neither a last run nor a start time: timing.Timing's rule).
_KEY = (*(f"{kind}_id" for kind, _ in _KINDS), "start_time", "expires", "one_off", "last_run_at")


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
    enabled = (
        PeriodicTask.objects.filter(enabled=True)
        # The same test as timing.next_run: a one-off that ran has no next run.
        .exclude(one_off=True, total_run_count__gt=0)
        .exclude(one_off=True, clocked__isnull=False, last_run_at__isnull=False)
        .annotate(
            phase=Case(
                When(last_run_at__isnull=True, start_time__isnull=True, then=F("date_changed"))
            )
        )
        .order_by()
    )
    # Schedules alike in all of that share one row and one computation.
    groups = list(enabled.values_list(*_KEY, "phase").annotate(count=Count("pk"), first=Min("pk")))
    schedules: dict[tuple[str, int], Any] = {}
    for position, (kind, model) in enumerate(_KINDS):
        ids = {row[position] for row in groups if row[position] is not None}
        if ids:
            for timing_row in model.objects.filter(pk__in=ids):
                schedules[kind, timing_row.pk] = _celery_schedule(timing_row)
    found: list[tuple[datetime, int, int, tuple[Any, ...]]] = []
    for *refs, start, expires, one_off, last_run_at, phase, count, first in groups:
        kind, ref = next(((k, r) for (k, _), r in zip(_KINDS, refs, strict=True) if r), ("", 0))
        sched = schedules.get((kind, ref))
        if sched is None:  # no timing row, or one Celery cannot build: never fires
            continue
        timing = Timing(sched, start, expires, one_off, last_run_at, phase)
        try:
            times = next_fire_times(timing, now, count=1)
        except Exception:  # one broken schedule must not hide the others' next runs
            logger.warning("cannot compute the next run of schedule %s", first, exc_info=True)
            continue
        if times:
            key = (*refs, start, expires, one_off, last_run_at, phase)
            found.append((times[0], count, first, key))
    found.sort(key=lambda group: group[:3])
    soonest: list[tuple[datetime, int]] = []
    for at, count, first, key in found:
        if len(soonest) >= limit:
            break
        if count == 1:
            soonest.append((at, first))
            continue
        # A group of many is read for its first few names: one query, at most limit / 2 times.
        alike = enabled.filter(**_matching(key)).order_by("name")
        soonest += [(at, pk) for pk in alike.values_list("pk", flat=True)[: limit - len(soonest)]]
    names = PeriodicTask.objects.only("name", "task").in_bulk([pk for _, pk in soonest])
    runs = [
        NextRun(at, names[pk].name, names[pk].task, pk) for at, pk in soonest if pk in names
    ]  # a schedule deleted in between is left out
    return Upcoming(runs, sum(group[1] for group in found))


def _matching(key: tuple[Any, ...]) -> dict[str, Any]:
    """The filter for the schedules of one group (None matches NULL)."""
    return {
        (f"{name}__isnull" if value is None else name): (True if value is None else value)
        for name, value in zip((*_KEY, "phase"), key, strict=True)
    }


def _celery_schedule(row: Any) -> Any:
    try:
        return row.schedule
    except (OverflowError, ValueError):  # as timing.celery_schedule: one beat cannot build
        return None
