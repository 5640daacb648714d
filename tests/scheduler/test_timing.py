"""When a schedule fires (scheduler.timing): the one answer engine, admin and health page share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery.schedules import crontab, schedule, solar
from django_celery_beat.clockedschedule import clocked
from django_celery_beat.tzcrontab import TzAwareCrontab

from scheduler.timing import Timing, following, latest, next_fire_times

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 23, 1, 7, 42, tzinfo=UTC)  # Monday 09:07:42 in Shanghai


def celery_next_after(sched: crontab, moment: datetime, now: datetime) -> datetime:
    """Celery's own answer to "when does it fire first after `moment`?", at a frozen `now`."""
    with time_machine.travel(now, tick=False):
        return now + sched.remaining_estimate(moment)


@pytest.mark.parametrize(
    "spec",
    [
        {"minute": "30", "hour": "8"},
        {"minute": "*/15"},
        {"minute": "0", "hour": "9", "day_of_week": "1"},  # Mondays (Sunday is 0)
        {"minute": "0", "hour": "10", "day_of_week": "1"},  # Mondays, not yet today
        {"minute": "5", "hour": "0", "day_of_month": "1"},  # first of the month
        {"minute": "0", "hour": "3", "day_of_month": "29", "month_of_year": "2"},  # leap day
    ],
)
def test_crontab_slots_agree_with_celery(spec: dict[str, str]) -> None:
    sched = TzAwareCrontab(tz=SHANGHAI, **spec)
    at = latest(sched, NOW)
    assert at is not None and at <= NOW
    after = following(sched, at)
    assert after is not None and after > NOW
    assert at.tzinfo == SHANGHAI
    assert celery_next_after(sched, at - timedelta(minutes=1), NOW) == at
    assert celery_next_after(sched, at, NOW) == after


def test_crontab_slots_are_in_the_crontab_time_zone() -> None:
    daily = TzAwareCrontab(minute="30", hour="8", tz=SHANGHAI)
    assert latest(daily, NOW) == datetime(2026, 11, 23, 8, 30, tzinfo=SHANGHAI)
    assert following(daily, NOW) == datetime(2026, 11, 24, 8, 30, tzinfo=SHANGHAI)


def test_interval_slots_follow_the_phase_of_the_schedule_itself() -> None:
    """An interval created 9.97 s into a 10 s cycle fires at 9.97 s, 19.97 s... never on the
    epoch's boundaries: beat, headers and deadline all count from the schedule's own phase."""
    every_10s = schedule(timedelta(seconds=10))
    created = NOW.replace(second=9, microsecond=970_000)
    timing = Timing(every_10s, changed_at=created)
    slots = [o.slot for o in timing.occurrences(None, limit=3)]
    assert slots == [created + timedelta(seconds=10 * k) for k in (1, 2, 3)]
    # The deadline of each slot (no start deadline) is the next slot, 10 s later.
    assert timing.deadline(slots[0], None) == slots[1]
    assert timing.deadline(slots[0], 4) == slots[0] + timedelta(seconds=4)
    # After a dispatch beat writes the slot itself as last_run_at: the phase never drifts.
    assert timing.after(slots[2]) is not None
    assert timing.after(slots[2]).slot == created + timedelta(seconds=40)  # type: ignore[union-attr]
    assert latest(every_10s, created + timedelta(seconds=25), created) == slots[1]


def test_a_start_time_fires_the_latest_slot_at_the_start_time_as_stock_beat_does() -> None:
    daily = TzAwareCrontab(minute="0", hour="8", tz=SHANGHAI)
    start = datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
    first = Timing(daily, start_time=start).first()
    assert first is not None
    assert (first.slot, first.due_at) == (datetime(2026, 11, 23, 8, 0, tzinfo=SHANGHAI), start)
    every_hour = schedule(timedelta(hours=1))
    first = Timing(every_hour, start_time=start).first()
    assert first is not None and (first.slot, first.due_at) == (start, start)


def test_expires_and_one_off_bound_the_occurrences() -> None:
    every_minute = TzAwareCrontab(minute="*", tz=SHANGHAI)
    expires = NOW + timedelta(minutes=3)
    timing = Timing(every_minute, expires=expires, last_run_at=NOW)
    assert [o.slot for o in timing.occurrences(NOW)] == [
        datetime(2026, 11, 23, 9, m, tzinfo=SHANGHAI) for m in (8, 9, 10)
    ]
    once = Timing(every_minute, one_off=True, last_run_at=NOW)
    assert len(list(once.occurrences(NOW))) == 1


def test_clocked_has_one_slot_and_no_deadline() -> None:
    when = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
    timing = Timing(clocked(when), one_off=True, changed_at=NOW - timedelta(days=1))
    first = timing.first()
    assert first is not None and first.slot == when
    assert timing.deadline(when, None) is None
    assert following(clocked(when), when) is None


def test_solar_slots_are_the_sunrises() -> None:
    sunrise = solar("sunrise", 31.23, 121.47)  # Shanghai
    at = latest(sunrise, NOW)
    after = following(sunrise, NOW)
    assert at is not None and after is not None
    assert at <= NOW < after
    local = at.astimezone(SHANGHAI)
    assert (local.date().isoformat(), 6 <= local.hour <= 7) == ("2026-11-23", True)
    assert abs((after - at) - timedelta(days=1)) < timedelta(minutes=5)
    assert at.microsecond == 0


def test_the_preview_shows_future_times_only() -> None:
    hourly = TzAwareCrontab(minute="0", tz=SHANGHAI)
    long_ago = NOW - timedelta(days=30)
    times = next_fire_times(Timing(hourly, last_run_at=long_ago), NOW, 2)
    assert times == [
        datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI),
        datetime(2026, 11, 23, 11, 0, tzinfo=SHANGHAI),
    ]
