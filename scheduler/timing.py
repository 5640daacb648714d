"""When a schedule fires: the one answer that beat's engine, the slot headers, the admin's list
and preview, the health page and the Sentry monitor config all ask.

A schedule's occurrences ("slots") follow from its row alone, never from a beat's memory:

- crontab: its fire times, in the crontab's own time zone;
- interval: every `every` seconds counted from its phase: the last slot dispatched
  (`last_run_at`, which the engine writes as the slot itself, so the phase never drifts), else
  its `start_time`, else the moment it was created or last edited (`date_changed`);
- solar: the solar events, to the second;
- clocked: its clocked time, once.

Bounds keep django-celery-beat's meaning: nothing is due before `start_time`, except that the
latest slot at or before `start_time` is due at `start_time` (stock beat dates a task with a start
time and no last run decades back, so it fires once as soon as the start time has come); no slot
at or after `expires`; a one-off schedule has one occurrence.

A slot's deadline is when a run of it that has not started is stale: `slot + start_deadline`
when the job or the schedule's policy sets one, else the schedule's next slot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, cast

from celery.schedules import crontab, schedule, solar
from django.utils import timezone
from django_celery_beat.clockedschedule import clocked

# Far enough back or ahead for a crontab that fires once a year, or on 29 February.
_MAX_DAYS = 4 * 366 + 1

# Interval bounds. Beat never dispatches an interval shorter than SHORTEST_INTERVAL: it has no
# slots (a script can store every=0, or microseconds). The schedule form asks for at least
# MIN_INTERVAL: a slot's run that has not started by the next slot expires, and from beat's
# dispatch to a worker starting the job takes a second or more (an interval of 1 s expired 14
# of 16 runs). MAX_INTERVAL: longer is a yearly crontab or a clocked time.
SHORTEST_INTERVAL = timedelta(seconds=1)
MIN_INTERVAL = timedelta(seconds=10)
MAX_INTERVAL = timedelta(days=366)
_PERIOD_SECONDS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1, "microseconds": 1e-6}


def interval_problem(every: int, period: str) -> str:
    """Why an interval of `every` `period` cannot be a schedule's ('' when it can)."""
    seconds = every * _PERIOD_SECONDS.get(period, 0)
    if seconds < MIN_INTERVAL.total_seconds():
        return (
            f"Every {every} {period} is too often: at least {MIN_INTERVAL.seconds} seconds. A run "
            "that has not started by the next slot expires, and a worker takes a second or more "
            "to start one (use a crontab for every minute)."
        )
    if seconds > MAX_INTERVAL.total_seconds():
        return (
            f"Every {every} {period} is longer than {MAX_INTERVAL.days} days: use a crontab "
            "(e.g. once a year) or a clocked time."
        )
    return ""


@dataclass(frozen=True)
class Occurrence:
    """A slot and when it is due: the slot itself, or the start time for a slot before it."""

    slot: datetime
    due_at: datetime


# --- The schedule's own sequence ----------------------------------------------------------------


def following(sched: Any, after: datetime, phase: datetime | None = None) -> datetime | None:
    """The first slot of `sched` strictly after `after`; an interval counts from `phase`."""
    if isinstance(sched, crontab):
        return next_crontab_fire(sched, after, _tz(sched))
    if isinstance(sched, schedule):
        every = _every(sched)
        if every is None:
            return None
        if phase is None:
            return after + every
        return phase + (math.floor((after - phase) / every) + 1) * every
    if isinstance(sched, solar):
        return _solar_after(sched, after)
    if isinstance(sched, clocked):
        at: datetime = sched.clocked_time
        return at if at > after else None
    return None


def latest(sched: Any, at: datetime, phase: datetime | None = None) -> datetime | None:
    """The last slot of `sched` at or before `at`; an interval counts from `phase` (no phase:
    `at` itself is a slot)."""
    if isinstance(sched, crontab):
        return latest_crontab_fire(sched, at, _tz(sched))
    if isinstance(sched, schedule):
        every = _every(sched)
        if every is None:
            return None
        if phase is None:
            return at
        if phase > at:
            return None
        return phase + math.floor((at - phase) / every) * every
    if isinstance(sched, solar):
        event, moment = None, at - timedelta(hours=49)
        for _ in range(8):
            found = _solar_after(sched, moment)
            if found is None or found > at:
                return event
            event, moment = found, found
        return event
    if isinstance(sched, clocked):
        clocked_at: datetime = sched.clocked_time
        return clocked_at if clocked_at <= at else None
    return None


def _every(sched: Any) -> timedelta | None:
    """The interval's length; None (no slots) when shorter than SHORTEST_INTERVAL."""
    every: timedelta = cast(Any, sched).run_every
    return every if every >= SHORTEST_INTERVAL else None


def _tz(sched: Any) -> tzinfo:
    zone: tzinfo = sched.tz or UTC
    return zone


# --- Timing: a schedule row's bounds around that sequence --------------------------------------


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: a Celery schedule plus the PeriodicTask fields that bound it."""

    schedule: Any
    start_time: datetime | None = None
    expires: datetime | None = None
    one_off: bool = False
    # The last slot dispatched (PeriodicTask.last_run_at); None: never dispatched.
    last_run_at: datetime | None = None
    # When the schedule was created or last edited: an interval's phase when nothing else is.
    changed_at: datetime | None = None

    @classmethod
    def of(cls, task: Any) -> Timing:
        return cls(
            celery_schedule(task),
            task.start_time,
            task.expires,
            bool(task.one_off),
            task.last_run_at,
            task.date_changed,
        )

    def first(self) -> Occurrence | None:
        """The first occurrence of a schedule never dispatched."""
        sched = self.schedule
        if isinstance(sched, clocked):
            slot: datetime | None = sched.clocked_time  # whenever the row was made
        elif self.start_time is not None:
            phase = self.start_time
            slot = latest(sched, self.start_time, phase) or following(sched, self.start_time, phase)
        else:
            since = self.changed_at or timezone.now()
            slot = following(sched, since, since)
        return self._bounded(slot)

    def after(self, last: datetime | None) -> Occurrence | None:
        """The occurrence after slot `last` (None: the first); None when there is none."""
        if last is None:
            return self.first()
        slot = following(self.schedule, last, last)
        if slot is not None and self.start_time is not None and slot < self.start_time:
            slot = latest(self.schedule, self.start_time, last) or slot
        return self._bounded(slot)

    def _bounded(self, slot: datetime | None) -> Occurrence | None:
        if slot is None or (self.expires is not None and slot >= self.expires):
            return None
        due = max(slot, self.start_time) if self.start_time is not None else slot
        return Occurrence(slot, due)

    def occurrences(self, last: datetime | None, limit: int = 100_000) -> Iterator[Occurrence]:
        """The occurrences after slot `last`, in order (at most `limit`; one if one-off)."""
        for _ in range(1 if self.one_off else limit):
            occurrence = self.after(last)
            if occurrence is None:
                return
            yield occurrence
            last = occurrence.slot

    def next_slot(self, slot: datetime) -> datetime | None:
        """The slot after `slot` by the schedule alone (None for a one-off): a deadline."""
        if self.one_off or isinstance(self.schedule, clocked):
            return None
        return following(self.schedule, slot, slot)

    def deadline(self, slot: datetime, start_deadline: float | None) -> datetime | None:
        """When a run of `slot` that has not started is stale (None: never)."""
        if start_deadline is not None:
            return slot + timedelta(seconds=start_deadline)
        return self.next_slot(slot)


def celery_schedule(task: Any) -> Any:
    """The Celery schedule beat builds for a PeriodicTask (None when it has none, or one beat
    cannot build: an interval a script set to a billion days, a latitude of 100)."""
    try:
        return task.schedule
    except (AttributeError, OverflowError, ValueError):  # no schedule FK set; out of range
        return None


def next_fire_times(timing: Timing, now: datetime | None = None, count: int = 5) -> list[datetime]:
    """Up to `count` times from `now` on when beat dispatches the schedule (aware datetimes)."""
    now = now or timezone.now()
    last = timing.last_run_at
    if last is None and timing.start_time is None and timing.changed_at is None:
        # A schedule being typed: count from now.
        timing = Timing(timing.schedule, None, timing.expires, timing.one_off, None, now)
    first = timing.after(last)
    if first is not None and first.due_at < now:
        # Slots already past are the engine's to dispatch or record, not the preview's.
        phase = last or timing.start_time or timing.changed_at
        last = latest(timing.schedule, now, phase) or last
    times = [o.due_at for o in timing.occurrences(last, limit=count + 1) if o.due_at >= now]
    return times[:count]


def next_run(task: Any, now: datetime | None = None) -> datetime | None:
    """When beat will next dispatch the task; None if never (disabled, expired, one-off done)."""
    if not task.enabled:
        return None
    if task.one_off and (task.total_run_count or (task.clocked_id and task.last_run_at)):
        return None
    times = next_fire_times(Timing.of(task), now, count=1)
    return times[0] if times else None


# --- Crontab arithmetic -------------------------------------------------------------------------


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
    limit = now.astimezone(UTC)
    hours = sorted(cron.hour, reverse=True)
    minutes = sorted(cron.minute, reverse=True)
    for back in range(_MAX_DAYS):
        day = local.date() - timedelta(days=back)
        if not _matches_day(cron, day):
            continue
        changes = _clocks_change(day, tz)
        fires = (
            _wall_time(day, hour, minute, tz)
            for hour in hours
            if back > 0 or hour <= local.hour or changes
            for minute in minutes
        )
        past = (fire for fire in fires if fire.astimezone(UTC) <= limit)
        if changes:
            found = max(past, key=lambda fire: fire.astimezone(UTC), default=None)
        else:
            found = next(past, None)
        if found is not None:
            return found
    return None


def _wall_time(day: date, hour: int, minute: int, tz: tzinfo) -> datetime:
    """That wall-clock time in `tz`: its first occurrence when clocks go back; when they jump
    over it, the same moment on the new clock (02:30 becomes 03:30), as Celery fires it."""
    fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    return fire.astimezone(UTC).astimezone(tz)


def _clocks_change(day: date, tz: tzinfo) -> bool:
    """Whether `tz` changes its offset on `day` (fire times are then not in wall-time order)."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = start + timedelta(days=1)
    return start.utcoffset() != end.utcoffset()


@dataclass(frozen=True)
class _Cron:
    """A crontab's expanded fields, hashable: the cache key of its fire times."""

    minute: tuple[int, ...]
    hour: tuple[int, ...]
    day_of_month: frozenset[int]
    month_of_year: frozenset[int]
    day_of_week: frozenset[int]


def next_crontab_fire(cron: Any, after: datetime, tz: tzinfo) -> datetime | None:
    """The first time strictly after `after` that `cron` fires."""
    key = _Cron(
        tuple(sorted(cron.minute)),
        tuple(sorted(cron.hour)),
        frozenset(cron.day_of_month),
        frozenset(cron.month_of_year),
        frozenset(cron.day_of_week),
    )
    return _next_crontab_fire(key, after.replace(second=0, microsecond=0), tz)


@lru_cache(maxsize=4096)
def _next_crontab_fire(cron: _Cron, after: datetime, tz: tzinfo) -> datetime | None:
    # Cached: at a slot, thousands of schedules sharing a crontab ask the same question.
    local = after.astimezone(tz)
    # Compared as instants: within one zone Python compares wall times, which repeat in autumn.
    limit = after.astimezone(UTC)
    for ahead in range(_MAX_DAYS):
        day = local.date() + timedelta(days=ahead)
        if not _matches_day(cron, day):
            continue
        changes = _clocks_change(day, tz)
        fires = (
            _wall_time(day, hour, minute, tz)
            for hour in cron.hour
            if ahead > 0 or hour >= local.hour or changes
            for minute in cron.minute
        )
        future = (fire for fire in fires if fire.astimezone(UTC) > limit)
        if changes:
            found = min(future, key=lambda fire: fire.astimezone(UTC), default=None)
        else:
            found = next(future, None)
        if found is not None:
            return found
    return None


def _solar_after(sun: solar, after: datetime) -> datetime | None:
    """The first solar event strictly after `after`, to the second."""
    moment = after + timedelta(seconds=1)
    probe = solar(sun.event, sun.lat, sun.lon, nowfun=lambda: moment)
    event = moment + probe.remaining_estimate(moment)
    event = event.replace(microsecond=0) + timedelta(seconds=round(event.microsecond / 1e6))
    return event if event > after else None
