from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from django.conf import settings
from django.core.cache import cache as django_cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

from jobs import cache, health
from scheduler.models import JobRun
from tests.factories import create_run

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2025, 6, 15, 10, 0, tzinfo=SHANGHAI)

Register = Callable[..., cache.Warmer]


@pytest.fixture
def register() -> Iterator[Register]:
    """Register warmers for one test; they and their cached values are gone afterwards."""
    keys: list[str] = []

    def add(key: str, compute: Callable[[], object], ttl: timedelta | int = 3600) -> cache.Warmer:
        django_cache.delete(key)
        registered = cache.register_warmer(key, compute, ttl)
        keys.append(key)
        return registered

    yield add
    for key in keys:
        cache.unregister_warmer(key)
        django_cache.delete(key)


def redis_ttl(key: str) -> int:
    """Seconds the key has left in the real Redis (-2: missing, -1: no expiry)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.ttl(django_cache.make_key(key)))
    finally:
        client.close()


def test_readers_never_see_a_miss_during_refresh(register: Register) -> None:
    versions = itertools.count(1)

    def slow() -> dict[str, int]:
        time.sleep(0.05)  # a refresh takes a while: the window a delete-first would open
        return {"version": next(versions)}

    register("test:slow", slow)
    cache.refresh_all()  # the first fill

    reads: list[int] = []  # the version each read saw; 0 for a miss
    stop = threading.Event()

    def read() -> None:
        # Django's cache directly, as a reader that found nothing would see it.
        while not stop.is_set():
            value = django_cache.get("test:slow")
            reads.append(0 if value is None else value["version"])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(6):
            assert "test:slow" in cache.refresh_all().refreshed
    finally:
        stop.set()
        reader.join()

    assert reads and reads.count(0) == 0, f"{reads.count(0)} of {len(reads)} reads missed"
    # The reads spanned several refreshes, and each replaced the value.
    assert len(set(reads)) >= 3
    assert django_cache.get("test:slow") == {"version": 7}


def test_a_failing_warmer_keeps_its_old_value_and_does_not_stop_the_others(
    register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> object:
        raise ValueError("upstream down")

    register("test:broken", broken, ttl=3600)
    register("test:fine", lambda: "new value", ttl=timedelta(minutes=30))
    django_cache.set("test:broken", "old value", 600)

    with caplog.at_level(logging.ERROR, logger="jobs.cache"):
        result = cache.refresh_all()

    assert result.failed == {"test:broken": "ValueError: upstream down"}
    assert "test:fine" in result.refreshed and health.JOB_HEALTH_KEY in result.refreshed
    assert django_cache.get("test:fine") == "new value"
    assert 1700 < redis_ttl("test:fine") <= 1800
    # The old value is still served, with the TTL it had (not renewed by a failed refresh).
    assert django_cache.get("test:broken") == "old value"
    assert 0 < redis_ttl("test:broken") <= 600
    (record,) = [r for r in caplog.records if "test:broken" in r.getMessage()]
    assert record.exc_info is not None and "upstream down" in caplog.text

    total = len(cache.warmers())
    with pytest.raises(
        cache.CacheRefreshError,
        match=rf"^1 of {total} cache warmers failed: test:broken: ValueError: upstream down$",
    ):
        result.raise_for_failures()


def test_a_clean_refresh_raises_nothing(register: Register) -> None:
    register("test:fine", lambda: 42)
    result = cache.refresh_all()
    assert result.failed == {}
    assert result.refreshed == [w.key for w in cache.warmers()]
    result.raise_for_failures()
    assert django_cache.get("test:fine") == 42


def test_get_computes_and_stores_on_a_cold_start_only(register: Register) -> None:
    calls: list[int] = []

    def compute() -> dict[str, int]:
        calls.append(1)
        return {"calls": len(calls)}

    register("test:cold", compute, ttl=timedelta(minutes=20))

    assert cache.get("test:cold") == {"calls": 1}
    assert cache.get("test:cold") == {"calls": 1}
    assert len(calls) == 1
    assert 1100 < redis_ttl("test:cold") <= 1200
    # A cached None is a value, not a miss.
    register("test:none", lambda: calls.append(1))
    assert cache.get("test:none") is None
    assert cache.get("test:none") is None
    assert len(calls) == 2


def test_the_decorator_registers_a_warmer(register: Register) -> None:
    @cache.warmer("test:decorated", ttl=120)
    def decorated() -> str:
        return "hello"

    try:
        (found,) = [w for w in cache.warmers() if w.key == "test:decorated"]
        assert (found.compute, found.timeout) == (decorated, 120)
        assert cache.get("test:decorated") == "hello"
    finally:
        cache.unregister_warmer("test:decorated")
        django_cache.delete("test:decorated")


@pytest.mark.parametrize(
    ("key", "ttl", "error", "message"),
    [
        ("test:dup", 60, ValueError, "'test:dup' is already registered"),
        ("has space", 60, ValueError, "printable ASCII characters, no spaces"),
        ("", 60, ValueError, "printable ASCII characters"),
        ("test:ttl", 0, ValueError, "ttl must be at least one second"),
        ("test:ttl", timedelta(seconds=-5), ValueError, "ttl must be at least one second"),
    ],
)
def test_bad_registrations_fail_clearly(
    register: Register, key: str, ttl: Any, error: type[Exception], message: str
) -> None:
    register("test:dup", lambda: 1)
    before = [w.key for w in cache.warmers()]
    with pytest.raises(error, match=message):
        cache.register_warmer(key, lambda: 2, ttl)
    assert [w.key for w in cache.warmers()] == before
    assert cache.get("test:dup") == 1


def test_unknown_keys_are_an_error() -> None:
    with pytest.raises(KeyError, match="no cache warmer is registered under 'test:nope'"):
        cache.get("test:nope")
    with pytest.raises(KeyError, match="no cache warmer is registered under 'test:nope'"):
        cache.unregister_warmer("test:nope")


# --- The job-health summary -----------------------------------------------------------------


def crontab(expression: str, tz: str = "Asia/Shanghai") -> CrontabSchedule:
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return CrontabSchedule.objects.create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=tz,
    )


def by_job(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["job"]: row for row in summary["jobs"]}


def test_the_job_health_warmer_is_registered() -> None:
    (found,) = [w for w in cache.warmers() if w.key == health.JOB_HEALTH_KEY]
    assert found.compute is health.job_health
    assert found.timeout == 3600


def test_job_health_summary_matches_the_runs_and_schedules() -> None:
    S = JobRun.Status
    with time_machine.travel(NOW, tick=False):
        PeriodicTask.objects.create(
            name="nightly-backup", task="jobs.backup_database", crontab=crontab("30 2 * * *")
        )
        create_run("jobs.backup_database", S.SUCCEEDED, NOW - timedelta(days=2))

        every_10 = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
        PeriodicTask.objects.create(
            name="cache-every-10", task="jobs.refresh_cache", interval=every_10
        )
        # Beat saved last_run_at half an hour ago; the run history knows a later dispatch.
        PeriodicTask.objects.filter(name="cache-every-10").update(
            last_run_at=NOW - timedelta(minutes=30)
        )
        create_run(
            "jobs.refresh_cache", S.SUCCEEDED, NOW - timedelta(minutes=3), schedule="cache-every-10"
        )
        # A manual run of the same schedule does not move beat's next dispatch.
        create_run(
            "jobs.refresh_cache",
            S.FAILED,
            NOW - timedelta(minutes=1),
            schedule="cache-every-10",
            trigger=JobRun.Trigger.MANUAL,
        )

        PeriodicTask.objects.create(
            name="hb-off", task="jobs.heartbeat", crontab=crontab("* * * * *"), enabled=False
        )
        create_run("jobs.heartbeat", S.LOST, NOW - timedelta(hours=24, minutes=1))
        create_run("jobs.heartbeat", S.TIMED_OUT, NOW - timedelta(hours=23, minutes=59))
        create_run("jobs.heartbeat", S.FAILED, NOW - timedelta(hours=2))
        create_run("jobs.heartbeat", S.SUCCEEDED, NOW - timedelta(hours=1))
        create_run("jobs.heartbeat", S.RUNNING, NOW - timedelta(minutes=5))

        PeriodicTask.objects.create(
            name="report-daily", task="jobs.daily_report", crontab=crontab("0 8 * * *")
        )
        PeriodicTask.objects.create(
            name="report-once",
            task="jobs.daily_report",
            one_off=True,
            clocked=ClockedSchedule.objects.create(clocked_time=NOW + timedelta(hours=2)),
        )
        PeriodicTask.objects.create(
            name="expired",
            task="jobs.expired",
            crontab=crontab("0 * * * *"),
            expires=NOW - timedelta(hours=1),
        )
        create_run(
            "jobs.old_manual", S.FAILED, NOW - timedelta(days=3), trigger=JobRun.Trigger.MANUAL
        )

        with CaptureQueriesContext(connection) as queries:
            summary = health.job_health()

    assert len(queries) == 3  # whatever the number of jobs and schedules
    assert summary["generated_at"] == "2025-06-15T10:00:00+08:00"
    assert json.loads(json.dumps(summary)) == summary
    jobs = by_job(summary)
    assert list(jobs) == [
        "jobs.backup_database",
        "jobs.daily_report",
        "jobs.expired",
        "jobs.heartbeat",
        "jobs.refresh_cache",
    ]
    backup = jobs["jobs.backup_database"]
    assert backup["schedules"] == ["nightly-backup"]
    assert (backup["last_run_at"], backup["last_status"]) == (
        "2025-06-13T10:00:00+08:00",
        "succeeded",
    )
    assert (backup["runs_24h"], backup["failures_24h"]) == (0, 0)
    assert backup["next_run_at"] == "2025-06-16T02:30:00+08:00"

    heartbeat = jobs["jobs.heartbeat"]
    assert heartbeat["schedules"] == []
    assert heartbeat["last_run_at"] == "2025-06-15T09:55:00+08:00"
    assert heartbeat["last_status"] == "running"
    assert (heartbeat["runs_24h"], heartbeat["failures_24h"]) == (4, 2)
    assert heartbeat["next_run_at"] is None

    refresh = jobs["jobs.refresh_cache"]
    assert (refresh["last_status"], refresh["failures_24h"]) == ("failed", 1)
    assert refresh["next_run_at"] == "2025-06-15T10:07:00+08:00"

    report = jobs["jobs.daily_report"]
    assert report["schedules"] == ["report-daily", "report-once"]
    assert report["last_run_at"] is None and report["runs_24h"] == 0
    assert report["next_run_at"] == "2025-06-15T12:00:00+08:00"  # the earlier of the two

    assert jobs["jobs.expired"]["next_run_at"] is None


@pytest.mark.parametrize(
    ("now", "expression", "tz", "expected"),
    [
        (NOW, "30 2 * * *", "Asia/Shanghai", "2025-06-16T02:30:00+08:00"),
        (NOW.replace(hour=1), "30 2 * * *", "Asia/Shanghai", "2025-06-15T02:30:00+08:00"),
        # 02:30 UTC is 10:30 in Shanghai: still ahead of 10:00 Shanghai on the same day.
        (NOW, "30 2 * * *", "UTC", "2025-06-15T10:30:00+08:00"),
        (NOW, "0 9 * * 1", "Asia/Shanghai", "2025-06-16T09:00:00+08:00"),  # next Monday
    ],
)
def test_next_run_of_a_crontab(now: datetime, expression: str, tz: str, expected: str) -> None:
    with time_machine.travel(now, tick=False):
        PeriodicTask.objects.create(name="cron", task="jobs.cron", crontab=crontab(expression, tz))
        (row,) = health.job_health()["jobs"]
    assert row["next_run_at"] == expected


def test_an_overdue_schedule_runs_now() -> None:
    with time_machine.travel(NOW, tick=False):
        hourly = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
        PeriodicTask.objects.create(name="hourly", task="jobs.hourly", interval=hourly)
        PeriodicTask.objects.filter(name="hourly").update(last_run_at=NOW - timedelta(hours=5))
        (row,) = health.job_health()["jobs"]
    assert row["next_run_at"] == "2025-06-15T10:00:00+08:00"


def test_a_refresh_puts_the_summary_in_the_cache() -> None:
    django_cache.delete(health.JOB_HEALTH_KEY)
    create_run("jobs.heartbeat", JobRun.Status.SUCCEEDED, datetime.now(SHANGHAI))
    assert health.JOB_HEALTH_KEY in cache.refresh_all().refreshed
    cached = django_cache.get(health.JOB_HEALTH_KEY)
    assert by_job(cached)["jobs.heartbeat"]["last_status"] == "succeeded"
    assert health.cached_job_health() == cached
    assert 3500 < redis_ttl(health.JOB_HEALTH_KEY) <= 3600
