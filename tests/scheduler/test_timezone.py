"""Crontabs created through the project run on Asia/Shanghai wall-clock time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scheduler.sync import get_crontab

pytestmark = pytest.mark.django_db


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    "make_crontab",
    [
        lambda: get_crontab("30 8 * * *"),
        lambda: CrontabSchedule.objects.create(minute="30", hour="8"),
    ],
    ids=["project-helper", "plain-orm-create"],
)
def test_crontab_0830_is_due_at_0830_shanghai_not_0830_utc(make_crontab) -> None:
    crontab = make_crontab()
    assert str(crontab.timezone) == "Asia/Shanghai"
    task = PeriodicTask.objects.create(name="tz-check", task="jobs.heartbeat", crontab=crontab)
    schedule = task.schedule
    last_run = utc(2026, 11, 22, 0, 30)  # yesterday's run, 08:30 in Shanghai

    with time_machine.travel(utc(2026, 11, 23, 0, 29, 50), tick=False):  # 08:29:50 Shanghai
        due, wait = schedule.is_due(last_run)
        assert not due
        assert 0 < wait <= 10
    with time_machine.travel(utc(2026, 11, 23, 0, 30, 5), tick=False):  # 08:30:05 Shanghai
        due, _ = schedule.is_due(last_run)
        assert due

    today_run = utc(2026, 11, 23, 0, 30)
    with time_machine.travel(utc(2026, 11, 23, 8, 30, 5), tick=False):  # 08:30 UTC = 16:30 CST
        due, wait = schedule.is_due(today_run)
        assert not due
        # The next run is tomorrow 08:30 Shanghai, 16 hours later.
        assert wait == pytest.approx(16 * 3600 - 5, abs=1)
