"""Which scheduled occurrence ("slot") a dispatch belongs to, computed the same by every beat.

Two beat processes reading one database must agree on the slot of a dispatch, or the worker
cannot tell a duplicate from a new occurrence. The slot is therefore a function of the schedule
and the clock only, never of a beat's in-memory `last_run_at`:

- crontab: the latest fire time at or before now, in the crontab's own time zone;
- interval: the start of the current interval, counted from the Unix epoch;
- solar: the latest solar event at or before now;
- clocked: its clocked time.

`next_slot` is the occurrence after it (None for one-off clocked schedules): by default a run
that has not started by then is stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, cast

from celery.schedules import crontab, schedule, solar

# Far enough back for a crontab that fires once a year, or on 29 February.
_MAX_DAYS = 4 * 366 + 1


@dataclass(frozen=True)
class Slot:
    at: datetime
    next_at: datetime | None


def slot_for(celery_schedule: Any, now: datetime) -> Slot | None:
    """The occurrence of `celery_schedule` that a dispatch at `now` serves; None if unknown."""
    sched: Any = celery_schedule  # celery's schedule classes are untyped
    if isinstance(sched, crontab):
        tz: tzinfo = sched.tz or UTC  # type: ignore[assignment]
        at = latest_crontab_fire(sched, now, tz)
        if at is None:
            return None
        return Slot(at=at, next_at=next_crontab_fire(sched, at, tz))
    if isinstance(sched, schedule):
        every = cast(Any, sched).run_every.total_seconds()
        if every <= 0:
            return None
        start = math.floor(now.timestamp() / every) * every
        at = datetime.fromtimestamp(start, tz=UTC)
        return Slot(at=at, next_at=at + timedelta(seconds=every))
    if isinstance(celery_schedule, solar):
        return _solar_slot(celery_schedule, now)
    clocked_time = getattr(celery_schedule, "clocked_time", None)
    if isinstance(clocked_time, datetime):
        return Slot(at=clocked_time, next_at=None)
    return None


def _matches_day(cron: Any, day: date) -> bool:
    # Celery requires day of month, month and day of week all to match (Sunday is 0).
    return (
        day.month in cron.month_of_year
        and day.day in cron.day_of_month
        and day.isoweekday() % 7 in cron.day_of_week
    )


def latest_crontab_fire(cron: Any, now: datetime, tz: tzinfo) -> datetime | None:
    """The latest time at or before `now` that `cron` fires, as an aware datetime in `tz`."""
    local = now.astimezone(tz)
    hours = sorted(cron.hour, reverse=True)
    minutes = sorted(cron.minute, reverse=True)
    for back in range(_MAX_DAYS):
        day = local.date() - timedelta(days=back)
        if not _matches_day(cron, day):
            continue
        for hour in hours:
            if back == 0 and hour > local.hour:
                continue
            for minute in minutes:
                if back == 0 and hour == local.hour and minute > local.minute:
                    continue
                return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    return None


def next_crontab_fire(cron: Any, after: datetime, tz: tzinfo) -> datetime | None:
    """The first time strictly after `after` that `cron` fires."""
    local = after.astimezone(tz).replace(second=0, microsecond=0)
    hours = sorted(cron.hour)
    minutes = sorted(cron.minute)
    for ahead in range(_MAX_DAYS):
        day = local.date() + timedelta(days=ahead)
        if not _matches_day(cron, day):
            continue
        for hour in hours:
            if ahead == 0 and hour < local.hour:
                continue
            for minute in minutes:
                if ahead == 0 and hour == local.hour and minute <= local.minute:
                    continue
                return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    return None


def _solar_slot(sun: solar, now: datetime) -> Slot | None:
    # remaining_estimate(t) is "time from now until the first event after t".
    def first_event_after(moment: datetime) -> datetime:
        event = now + sun.remaining_estimate(moment)
        return event.replace(microsecond=0) + timedelta(seconds=round(event.microsecond / 1e6))

    latest = None
    moment = now - timedelta(hours=49)
    for _ in range(8):
        event = first_event_after(moment)
        if event > now:
            return Slot(at=latest, next_at=event) if latest else None
        latest, moment = event, event + timedelta(seconds=1)
    return None
