"""Schedules in words (scheduler.describe) and the next times the admin shows for them."""

from __future__ import annotations

import pytest
from django_celery_beat.models import (
    ClockedSchedule,
    SolarSchedule,
)

from scheduler.describe import (
    CrontabError,
    check_crontab_field,
    crontab_in_words,
    parse_crontab,
)
from scheduler.timing import Timing, next_fire_times
from tests.scheduler.schedule_pages import (
    SHANGHAI,
    at,
)

pytestmark = pytest.mark.django_db


# --- Schedule arithmetic and words ----------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "Every minute (Asia/Shanghai)"),
        ("*/10 * * * *", "Every 10 minutes (Asia/Shanghai)"),
        ("30 2 * * *", "At 02:30, every day (Asia/Shanghai)"),
        ("0 9 * * mon-fri", "At 09:00, Monday through Friday (Asia/Shanghai)"),
        ("0 8 1 * *", "At 08:00, on day 1 of the month (Asia/Shanghai)"),
    ],
)
def test_crontab_in_words(expression: str, words: str) -> None:
    fields = dict(
        zip(
            ["minute", "hour", "day_of_month", "month_of_year", "day_of_week"],
            expression.split(),
            strict=True,
        )
    )
    assert crontab_in_words(fields, "Asia/Shanghai") == words


def test_crontab_fields_are_normalised_not_rewritten() -> None:
    assert check_crontab_field("minute", " 0, 30 ") == "0,30"
    assert check_crontab_field("day_of_week", "Mon-Fri") == "Mon-Fri"
    assert check_crontab_field("month_of_year", "jan,jul") == "jan,jul"
    with pytest.raises(CrontabError, match=r"^hour: 24 is out of range 0-23$"):
        check_crontab_field("hour", "24")


def test_next_fire_times_respect_start_expiry_and_one_off() -> None:
    now = at("2026-03-10 10:00")
    cron = parse_crontab(
        {
            "minute": "0",
            "hour": "*/6",
            "day_of_month": "*",
            "month_of_year": "*",
            "day_of_week": "*",
        },
        "Asia/Shanghai",
    )
    assert next_fire_times(Timing(cron, last_run_at=now), now, 3) == [
        at("2026-03-10 12:00"),
        at("2026-03-10 18:00"),
        at("2026-03-11 00:00"),
    ]
    bounded = Timing(cron, expires=at("2026-03-10 19:00"), last_run_at=now)
    assert next_fire_times(bounded, now) == [at("2026-03-10 12:00"), at("2026-03-10 18:00")]
    assert next_fire_times(Timing(cron, one_off=True, last_run_at=now), now) == [
        at("2026-03-10 12:00")
    ]


def test_solar_and_clocked_next_times() -> None:
    now = at("2026-06-21 12:00")
    sunset = SolarSchedule.objects.create(event="sunset", latitude=31.23, longitude=121.47)
    times = next_fire_times(Timing(sunset.schedule), now, 3)
    assert [t.astimezone(SHANGHAI).date().isoformat() for t in times] == [
        "2026-06-21",
        "2026-06-22",
        "2026-06-23",
    ]
    # Midsummer sunset in Shanghai is a little after 19:00.
    assert all(19 <= t.astimezone(SHANGHAI).hour < 20 for t in times)
    once = ClockedSchedule.objects.create(clocked_time=at("2026-07-01 09:00"))
    assert next_fire_times(Timing(once.schedule), now) == [at("2026-07-01 09:00")]
