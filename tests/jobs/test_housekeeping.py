from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from jobs.housekeeping import housekeeping
from jobs.models import Report
from scheduler.models import JobRun
from tests.factories import create_run

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Half past midnight in Shanghai: still the 14th in UTC, so a UTC "today" would be a day off.
NOW = datetime(2025, 6, 15, 0, 30, tzinfo=SHANGHAI)
SECOND = timedelta(seconds=1)


def add_report(day: date) -> Report:
    return Report.objects.create(day=day, created_at=NOW, data={}, html="", text="")


def add_session(key: str, expire_date: datetime) -> Session:
    return Session.objects.create(session_key=key, session_data="x", expire_date=expire_date)


def delete_statements(queries: CaptureQueriesContext, table: str) -> list[str]:
    quoted = f'"{table}"'
    return [q["sql"] for q in queries if q["sql"].split()[:3] == ["DELETE", "FROM", quoted]]


def test_housekeeping_deletes_exactly_what_is_past_retention(settings: Any) -> None:
    settings.JOB_HISTORY_DAYS = 90
    settings.REPORT_RETENTION_DAYS = 365
    run_cutoff = NOW - timedelta(days=90)
    old_runs = [
        create_run(started_at=run_cutoff - SECOND),
        create_run(status=JobRun.Status.FAILED, started_at=run_cutoff - timedelta(days=30)),
    ]
    kept_runs = [
        create_run(started_at=run_cutoff),
        create_run(started_at=run_cutoff + SECOND),
        create_run(started_at=NOW),
        # A row still `running` is not history, however old.
        create_run(status=JobRun.Status.RUNNING, started_at=run_cutoff - timedelta(days=10)),
    ]
    # Today in Shanghai is 2025-06-15; 365 days before is 2024-06-15 (2024 is a leap year).
    old_reports = [add_report(date(2024, 6, 14)), add_report(date(2023, 1, 1))]
    kept_reports = [add_report(date(2024, 6, 15)), add_report(date(2025, 6, 14))]
    add_session("expired-session", NOW - SECOND)
    add_session("live-session", NOW + SECOND)

    result = housekeeping(now=NOW)

    assert (result.runs, result.reports, result.sessions) == (2, 2, 1)
    assert set(JobRun.objects.values_list("pk", flat=True)) == {r.pk for r in kept_runs}
    assert set(Report.objects.values_list("day", flat=True)) == {r.day for r in kept_reports}
    assert list(Session.objects.values_list("session_key", flat=True)) == ["live-session"]
    assert result.runs_before == run_cutoff
    assert result.reports_before == date(2024, 6, 15)
    assert json.loads(json.dumps(result.as_dict())) == {
        "sessions": 1,
        "runs": 2,
        "reports": 2,
        "schedules_disabled": 0,
        "runs_before": "2025-03-17T00:30:00+08:00",
        "reports_before": "2024-06-15",
        "disabled": [],
    }
    assert not {r.pk for r in old_runs} & set(JobRun.objects.values_list("pk", flat=True))
    assert not {r.day for r in old_reports} & set(Report.objects.values_list("day", flat=True))

    # Idempotent: a second run finds nothing more to do.
    again = housekeeping(now=NOW)
    assert (again.runs, again.reports, again.sessions, again.schedules_disabled) == (0, 0, 0, 0)
    assert JobRun.objects.count() == len(kept_runs)


def test_deletes_go_in_batches_of_the_configured_size(settings: Any) -> None:
    settings.HOUSEKEEPING_BATCH_SIZE = 3
    old = NOW - timedelta(days=settings.JOB_HISTORY_DAYS + 1)
    for i in range(10):
        create_run(started_at=old - timedelta(minutes=i))
    kept = [create_run(started_at=NOW - timedelta(days=1)), create_run(started_at=NOW)]
    for i in range(7):
        add_session(f"old-{i}", NOW - timedelta(days=1))

    with CaptureQueriesContext(connection) as queries:
        result = housekeeping(now=NOW)

    assert (result.runs, result.sessions) == (10, 7)
    assert set(JobRun.objects.values_list("pk", flat=True)) == {r.pk for r in kept}
    assert not Session.objects.exists()
    # 10 rows in batches of 3: four DELETE statements, none of them table-wide.
    run_deletes = delete_statements(queries, "scheduler_jobrun")
    assert len(run_deletes) == 4
    assert all(" IN (" in sql for sql in run_deletes)
    assert len(delete_statements(queries, "django_session")) == 3


def crontab(expression: str) -> CrontabSchedule:
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return CrontabSchedule.objects.create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone="Asia/Shanghai",
    )


def schedule(name: str, **fields: Any) -> PeriodicTask:
    ran = fields.pop("ran", False)
    if not any(k in fields for k in ("crontab", "interval", "clocked")):
        fields["crontab"] = crontab("0 4 * * *")
    task = PeriodicTask.objects.create(name=name, task="jobs.heartbeat", **fields)
    if ran:  # as beat's sync saves it after a dispatch
        PeriodicTask.objects.filter(pk=task.pk).update(
            last_run_at=NOW - timedelta(hours=1), total_run_count=1
        )
    return task


def clocked(at: datetime) -> ClockedSchedule:
    return ClockedSchedule.objects.create(clocked_time=at)


def test_finished_one_off_clocked_and_expired_schedules_are_disabled() -> None:
    every_hour = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    finished = {
        schedule("one-off-ran", one_off=True, interval=every_hour, ran=True),
        schedule("clocked-ran", one_off=True, clocked=clocked(NOW - timedelta(hours=1)), ran=True),
        schedule("expired", expires=NOW - SECOND),
        schedule("expired-one-off", one_off=True, expires=NOW - timedelta(days=1)),
    }
    untouched = {
        schedule("daily"),
        schedule("daily-ran", ran=True),
        schedule("one-off-not-run-yet", one_off=True),
        schedule("clocked-future", one_off=True, clocked=clocked(NOW + timedelta(hours=1))),
        # Its time passed while beat was away: beat still runs it late, so it stays.
        schedule("clocked-due", one_off=True, clocked=clocked(NOW - timedelta(minutes=5))),
        schedule("expires-later", expires=NOW + timedelta(hours=1)),
        schedule("already-off", one_off=True, ran=True, enabled=False),
    }
    long_ago = timezone.now() - timedelta(days=7)
    PeriodicTasks.objects.update(last_update=long_ago)

    def state(names: list[str]) -> dict[str, tuple[Any, ...]]:
        rows = PeriodicTask.objects.filter(name__in=names)
        return {t.name: (t.enabled, t.last_run_at, t.total_run_count, t.date_changed) for t in rows}

    before = state([t.name for t in untouched])

    result = housekeeping(now=NOW)

    assert result.schedules_disabled == 4
    assert sorted(result.disabled) == sorted(t.name for t in finished)
    for task in PeriodicTask.objects.filter(name__in=[t.name for t in finished]):
        assert not task.enabled, task.name
        assert task.last_run_at is None
    # As beat does it: enabling a finished one-off again runs it once more.
    assert PeriodicTask.objects.get(name="one-off-ran").total_run_count == 0
    assert state(list(before)) == before
    # Beat reloads its schedule only when this changes.
    assert PeriodicTasks.last_change() > long_ago

    bumped = PeriodicTasks.last_change()
    again = housekeeping(now=NOW)
    assert (again.schedules_disabled, again.disabled) == (0, ())
    assert PeriodicTasks.last_change() == bumped  # nothing changed, beat need not reload


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JOB_HISTORY_DAYS", 0),
        ("REPORT_RETENTION_DAYS", -1),
        ("HOUSEKEEPING_BATCH_SIZE", 0),
        ("JOB_HISTORY_DAYS", "90"),
    ],
)
def test_bad_settings_fail_clearly_and_delete_nothing(
    settings: Any, name: str, value: object
) -> None:
    setattr(settings, name, value)
    create_run(started_at=NOW - timedelta(days=400))
    add_report(date(2020, 1, 1))
    add_session("expired-session", NOW - timedelta(days=1))
    schedule("expired", expires=NOW - SECOND)

    with pytest.raises(ImproperlyConfigured, match=f"{name} must be a whole number of at least 1"):
        housekeeping(now=NOW)

    assert (JobRun.objects.count(), Report.objects.count(), Session.objects.count()) == (1, 1, 1)
    assert PeriodicTask.objects.get(name="expired").enabled


def test_a_naive_now_is_refused() -> None:
    create_run(started_at=NOW - timedelta(days=400))
    with pytest.raises(ValueError, match="aware datetime"):
        housekeeping(now=datetime(2025, 6, 15, 0, 30))
    assert JobRun.objects.count() == 1
