"""The admin's health page: is everything running?"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from jobs import cache
from jobs.models import Backup
from scheduler import presence
from scheduler.broken import BROKEN
from scheduler.engine.leader import Leadership
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from tests.factories import create_run

pytestmark = pytest.mark.django_db

URL = "/admin/health/"


@pytest.fixture(autouse=True)
def clean_redis() -> None:
    redis_client().flushdb()


def run(job: str, schedule: str, status: str, minutes_ago: float) -> JobRun:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return create_run(job, status, at, schedule=schedule, finished_at=at, duration_seconds=1.0)


def test_anonymous_users_get_the_login_page() -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_permission_to_view_runs_is_refused() -> None:
    user = User.objects.create_user("staff", password="pw-staff-123", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_jobrun"))
    assert client.get(URL).status_code == 200


def test_everything_running_and_what_needs_attention(admin_client: Client) -> None:
    daily = CrontabSchedule.objects.create(minute="30", hour="2", timezone="Asia/Shanghai")
    every_10_min = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="nightly-backup", task="jobs.backup_database", crontab=daily)
    PeriodicTask.objects.create(
        name="refresh",
        task="jobs.refresh_cache",
        interval=every_10_min,
        last_run_at=timezone.now() - timedelta(hours=1),
    )
    failed = run("jobs.backup_database", "nightly-backup", JobRun.Status.FAILED, 30)
    run("jobs.refresh_cache", "refresh", JobRun.Status.SUCCEEDED, 60)
    Backup.objects.create(
        created_at=timezone.now() - timedelta(hours=5),
        path="/srv/backups/nightshift-postgresql-20261123-023000+0800.dump",
        size_bytes=5 * 1024 * 1024,
        sha256="0" * 64,
        duration_seconds=12.0,
        engine="postgresql",
        verified=True,
    )
    presence.record_beat_tick()
    presence.stamp_worker("celery@web-1")
    cache.refresh_all().raise_for_failures()

    response = admin_client.get(URL)
    page = response.content.decode()
    assert response.status_code == 200
    assert "Alive: last tick" in page
    assert "Workers (1 online)" in page and "celery@web-1" in page
    # The failed backup: among failures by job, and its schedule needs attention, with a link.
    attention = page[page.index('id="attention"') : page.index('id="failures"')]
    assert "nightly-backup" in attention and "last run failed" in attention
    assert f"/admin/scheduler/jobrun/{failed.pk}/change/" in attention
    # 10-minute schedule last run an hour ago: overdue.
    assert "refresh" in attention and "overdue since" in attention
    failures = page[page.index('id="failures"') : page.index('id="upcoming"')]
    assert "jobs.backup_database" in failures and "jobs.refresh_cache" not in failures
    # The next 02:30 in Shanghai is among the next runs.
    upcoming = page[page.index('id="upcoming"') : page.index('id="backup"')]
    assert ":30:00" in upcoming and "nightly-backup" in upcoming
    backup = page[page.index('id="backup"') :]
    assert "nightshift-postgresql-20261123-023000+0800.dump" in backup and "5.0\xa0MB" in backup


def test_a_broken_schedule_needs_attention_with_the_reason(admin_client: Client) -> None:
    every_minute = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.MINUTES)
    broken = PeriodicTask.objects.create(
        name="broken", task="jobs.heartbeat", interval=every_minute, kwargs='{"nope": 1}'
    )
    reason = "Unknown argument 'nope': jobs.heartbeat takes no arguments."
    # What beat writes for each slot of a schedule it cannot send (scheduler.engine).
    create_run(
        "jobs.heartbeat", JobRun.Status.FAILED, schedule="broken", error_type=BROKEN,
        error_message=reason,
    )  # fmt: skip
    cache.refresh_all().raise_for_failures()

    page = admin_client.get(URL).content.decode()
    attention = page[page.index('id="attention"') : page.index('id="failures"')]
    assert "broken: Unknown argument &#x27;nope&#x27;" in attention
    assert "each slot fails until the schedule is edited" in attention

    broken.kwargs = "{}"
    broken.save()  # fixed: beat sends it at its next slot
    cache.refresh_all().raise_for_failures()
    attention = admin_client.get(URL).content.decode().split('id="attention"')[1]
    assert "broken:" not in attention.split('id="failures"')[0]


def test_dead_beat_no_workers_and_no_backup_are_shown_loudly(admin_client: Client) -> None:
    page = admin_client.get(URL).content.decode()
    assert "No beat has ticked" in page
    assert "No worker is online" in page
    assert "No verified backup exists." in page


def test_the_leader_and_the_standby_beats_are_named(admin_client: Client) -> None:
    """Two beats on one Redis: the one holding the lease leads, the other stands by."""
    first, second = Leadership(), Leadership()
    assert first.hold() is True
    assert second.hold() is False
    first.stamp(leading=True)
    second.stamp(leading=False)
    page = admin_client.get(URL).content.decode()
    table = page[page.index('id="beats"') : page.index('id="workers"')]
    assert table.index(first.identity) < table.index(second.identity)  # the leader first
    assert "leader: sends due jobs" in table and "standby: ready to take over" in table
    # The leader gives the lease up at shutdown: the standby takes it at its next try.
    first.release()
    first.forget()
    time.sleep(0.6)
    assert second.hold() is True
    second.stamp(leading=True)
    page = admin_client.get(URL).content.decode()
    assert first.identity not in page and "No beat leads" not in page


def test_no_leader_is_shown_loudly(admin_client: Client) -> None:
    standby = Leadership()
    standby.stamp(leading=False)
    assert "No beat leads" in admin_client.get(URL).content.decode()


def test_the_page_reads_the_cache_not_the_run_table(
    admin_client: Client, django_assert_max_num_queries
) -> None:
    for i in range(50):
        run(f"jobs.job{i % 5}", f"schedule-{i % 5}", JobRun.Status.FAILED, i)
    cache.refresh_all().raise_for_failures()
    # Session, user, latest backup, the last 30 days' backups (their chart): the figures and
    # the runs per hour come from the cache.
    with django_assert_max_num_queries(4):
        assert admin_client.get(URL).status_code == 200


def test_the_admin_index_links_to_the_health_page(admin_client: Client) -> None:
    assert 'href="/admin/health/"' in admin_client.get("/admin/").content.decode()


def test_a_cancelled_run_is_not_a_failure(admin_client: Client) -> None:
    daily = CrontabSchedule.objects.create(minute="30", hour="2", timezone="Asia/Shanghai")
    PeriodicTask.objects.create(name="nightly-backup", task="jobs.backup_database", crontab=daily)
    run("jobs.backup_database", "nightly-backup", JobRun.Status.CANCELLED, 30)
    presence.record_beat_tick()
    cache.refresh_all().raise_for_failures()

    page = admin_client.get(URL).content.decode()

    attention = page[page.index('id="attention"') : page.index('id="failures"')]
    assert "last run cancelled" not in attention  # what a failed one says ("last run failed")
    failures = page[page.index('id="failures"') : page.index('id="upcoming"')]
    assert "jobs.backup_database" not in failures
