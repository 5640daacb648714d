from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import schedule, solar
from django_celery_beat.clockedschedule import clocked
from django_celery_beat.tzcrontab import TzAwareCrontab

from config.sentry import before_send
from scheduler.reporting import monitor_config


def test_crontab_monitor_has_its_time_zone_and_the_jobs_max_runtime() -> None:
    cron = TzAwareCrontab(minute="30", hour="2", tz=ZoneInfo("Asia/Shanghai"))
    assert monitor_config(cron, 1900, None) == {
        "schedule": {"type": "crontab", "value": "30 2 * * *"},
        "timezone": "Asia/Shanghai",
        "checkin_margin": 2,
        "max_runtime": 32,
    }


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (10, {"type": "interval", "value": 1, "unit": "minute"}),
        (90, {"type": "interval", "value": 2, "unit": "minute"}),
        (600, {"type": "interval", "value": 10, "unit": "minute"}),
        (7200, {"type": "interval", "value": 2, "unit": "hour"}),
        (86400, {"type": "interval", "value": 1, "unit": "day"}),
    ],
)
def test_every_interval_gets_a_monitor(seconds: int, expected: dict[str, object]) -> None:
    config = monitor_config(schedule(timedelta(seconds=seconds)), None, None)
    assert config["schedule"] == expected
    assert "max_runtime" not in config


def test_solar_is_monitored_as_todays_time_with_a_wide_margin() -> None:
    event = datetime(2026, 11, 22, 22, 41, tzinfo=UTC)
    config = monitor_config(solar("sunrise", 31.23, 121.47), 360, event)
    assert config["schedule"] == {"type": "crontab", "value": "41 22 * * *"}
    assert config["timezone"] == "UTC"
    assert config["checkin_margin"] == 15
    assert config["max_runtime"] == 6


def test_one_off_clocked_schedules_have_no_monitor() -> None:
    assert monitor_config(clocked(datetime(2026, 12, 1, tzinfo=UTC)), 60, None) == {}


def test_credentials_are_scrubbed_at_any_depth_and_checkins_pass() -> None:
    event = {
        "extra": {"celery-job": {"kwargs": {"db_password": "p1", "opts": {"API_TOKEN": "t1"}}}},
        "contexts": {"job": {"aws_secret_access_key": "s1", "path": "/backups"}},
        "breadcrumbs": {"values": [{"data": {"authorization": "Bearer x", "n": 1}}]},
    }
    scrubbed = before_send(event, {})
    assert "p1" not in str(scrubbed) and "t1" not in str(scrubbed) and "s1" not in str(scrubbed)
    assert "Bearer" not in str(scrubbed)
    assert scrubbed["contexts"]["job"]["path"] == "/backups"
    assert scrubbed["breadcrumbs"]["values"][0]["data"]["n"] == 1
    checkin = {"type": "check_in", "monitor_slug": "x", "status": "ok"}
    assert before_send(dict(checkin), {}) == checkin
