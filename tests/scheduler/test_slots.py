"""Slot arithmetic: every beat must compute the same occurrence, and it must match Celery's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery.schedules import crontab, schedule, solar
from django_celery_beat.clockedschedule import clocked
from django_celery_beat.tzcrontab import TzAwareCrontab

from scheduler.slots import slot_for

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
def test_crontab_slot_is_the_latest_fire_and_agrees_with_celery(spec: dict[str, str]) -> None:
    sched = TzAwareCrontab(tz=SHANGHAI, **spec)
    slot = slot_for(sched, NOW)
    assert slot is not None and slot.next_at is not None
    assert slot.at <= NOW < slot.next_at
    assert slot.at.tzinfo == SHANGHAI
    assert celery_next_after(sched, slot.at - timedelta(minutes=1), NOW) == slot.at
    assert celery_next_after(sched, slot.at, NOW) == slot.next_at


def test_crontab_slot_is_in_shanghai_time() -> None:
    slot = slot_for(TzAwareCrontab(minute="30", hour="8", tz=SHANGHAI), NOW)
    assert slot is not None
    assert slot.at == datetime(2026, 11, 23, 8, 30, tzinfo=SHANGHAI)
    assert slot.next_at == datetime(2026, 11, 24, 8, 30, tzinfo=SHANGHAI)


def test_two_beats_a_second_apart_agree_on_the_slot() -> None:
    sched = TzAwareCrontab(minute="*", tz=SHANGHAI)
    assert slot_for(sched, NOW.replace(second=1)) == slot_for(sched, NOW.replace(second=59))


def test_interval_slots_are_counted_from_the_epoch() -> None:
    every_2s = schedule(timedelta(seconds=2))
    a = slot_for(every_2s, NOW.replace(microsecond=100))
    b = slot_for(every_2s, NOW.replace(microsecond=900_000))
    assert a == b
    assert a is not None and a.at == NOW.replace(second=42, microsecond=0)
    assert a.next_at == a.at + timedelta(seconds=2)
    c = slot_for(every_2s, NOW + timedelta(seconds=2))
    assert c is not None and c.at == a.next_at


def test_clocked_slot_is_its_time_and_has_no_next() -> None:
    when = datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI)
    slot = slot_for(clocked(when), NOW)
    assert slot is not None and (slot.at, slot.next_at) == (when, None)


def test_solar_slot_is_the_latest_sunrise() -> None:
    sunrise = solar("sunrise", 31.23, 121.47)  # Shanghai
    with time_machine.travel(NOW, tick=False):
        slot = slot_for(sunrise, NOW)
    assert slot is not None and slot.next_at is not None
    assert slot.at <= NOW < slot.next_at
    local = slot.at.astimezone(SHANGHAI)
    assert (local.date().isoformat(), 6 <= local.hour <= 7) == ("2026-11-23", True)
    assert abs((slot.next_at - slot.at) - timedelta(days=1)) < timedelta(minutes=5)
