"""The health page at scale: next runs computed live, every table bounded."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from jobs import cache
from jobs.views import NEXT_RUNS, TABLE_ROWS
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from scheduler.timing import next_run
from scheduler.upcoming import soonest_runs
from tests.factories import create_run, make_schedule

pytestmark = pytest.mark.django_db

URL = "/admin/health/"


@pytest.fixture(autouse=True)
def clean_redis() -> None:
    redis_client().flushdb()


def upcoming_rows(page: str) -> list[str]:
    table = page[page.index('id="upcoming"') : page.index('id="backup"')]
    return [row.split("</tr>")[0] for row in table.split("<tr>")[2:]]


def test_a_schedule_created_after_the_cache_refresh_is_among_the_next_runs(
    admin_client: Client,
) -> None:
    make_schedule("daily", "30 2 * * *")
    cache.refresh_all().raise_for_failures()
    every_minute = make_schedule("every-minute", "* * * * *")  # the cache does not know it

    with time_machine.travel(timezone.now(), tick=False):  # the page and the test, one now
        rows = upcoming_rows(admin_client.get(URL).content.decode())
        expected = timezone.localtime(next_run(every_minute), timezone.get_default_timezone())
    assert "every-minute" in rows[0] and "daily" in rows[1]
    assert f"{expected:%Y-%m-%d %H:%M:%S}" in rows[0]


def test_next_runs_are_never_in_the_past_even_when_the_cache_is_old(
    admin_client: Client,
) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        make_schedule("every-5-min", "*/5 * * * *")
        cache.refresh_all().raise_for_failures()
        first = admin_client.get(URL).content.decode()
    # Half an hour later, the cache was not refreshed (beat or the worker down): the page still
    # shows the next 5-minute slot from now, not the one the cache computed.
    later = start + timedelta(minutes=30)
    with time_machine.travel(later, tick=False):
        page = admin_client.get(URL).content.decode()
    shown = timezone.localtime(later, timezone.get_default_timezone())
    slot = shown.replace(second=0, microsecond=0) + timedelta(minutes=5 - shown.minute % 5)
    assert f"{slot:%Y-%m-%d %H:%M:%S}" in upcoming_rows(page)[0]
    assert upcoming_rows(page) != upcoming_rows(first)


def test_next_runs_of_every_kind_match_the_schedule_page(admin_client: Client) -> None:
    now = timezone.now()
    kinds = [
        make_schedule("cron", "15 3 * * *"),
        make_schedule(
            "interval",
            crontab=None,
            interval=IntervalSchedule.objects.create(every=7, period="minutes"),
            last_run_at=now - timedelta(hours=2),  # overdue: its next slot is still ahead
        ),
        make_schedule(
            "clocked",
            crontab=None,
            one_off=True,
            clocked=ClockedSchedule.objects.create(clocked_time=now + timedelta(hours=3)),
        ),
        make_schedule(
            "solar",
            crontab=None,
            solar=SolarSchedule.objects.create(event="sunrise", latitude=31.2, longitude=121.5),
        ),
        make_schedule("later", "0 4 * * *", start_time=now + timedelta(days=3)),
    ]
    make_schedule("disabled", "* * * * *", enabled=False)
    make_schedule("expired", "* * * * *", expires=now - timedelta(minutes=1))
    make_schedule(
        "one-off-done",
        crontab=None,
        one_off=True,
        total_run_count=1,
        clocked=ClockedSchedule.objects.create(clocked_time=now - timedelta(hours=1)),
    )

    upcoming = soonest_runs(10, now)
    assert {run.schedule: run.at for run in upcoming.runs} == {
        task.name: next_run(task, now) for task in kinds
    }
    assert upcoming.total == len(kinds)
    assert all(run.at >= now for run in upcoming.runs)
    assert [run.at for run in upcoming.runs] == sorted(run.at for run in upcoming.runs)


def test_the_page_is_bounded_and_links_to_the_rest(
    admin_client: Client, django_assert_max_num_queries
) -> None:
    schedules = NEXT_RUNS + TABLE_ROWS + 5
    for i in range(schedules):
        name = f"s{i:03d}"
        make_schedule(name, f"{i % 60} * * * *")
        create_run(f"jobs.job{i}", JobRun.Status.FAILED, schedule=name)
    cache.refresh_all().raise_for_failures()

    # Session, user, latest backup, the backups' chart, the enabled schedules (grouped), their
    # crontabs, the soonest names.
    with django_assert_max_num_queries(7):
        page = admin_client.get(URL).content.decode()
    assert len(upcoming_rows(page)) == NEXT_RUNS
    more = schedules - NEXT_RUNS
    assert f'and <a href="/admin/scheduler/schedule/?enabled__exact=1">{more} more</a>' in page
    attention = page[page.index('id="attention"') : page.index('id="failures"')]
    assert attention.count("last run failed") == TABLE_ROWS
    assert f"{schedules - TABLE_ROWS} more</a>" in attention
    failures = page[page.index('id="failures"') : page.index('id="upcoming"')]
    assert failures.count("<tr>") == TABLE_ROWS + 1  # the head row and TABLE_ROWS jobs
    assert "/admin/scheduler/jobrun/?status__in=" in failures
    assert f"{schedules - TABLE_ROWS} more</a>" in failures
    # The link lists the failed runs.
    link = failures.split('href="')[-1].split('"')[0].replace("&amp;", "&")
    response = admin_client.get(link)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == schedules


def test_a_schedule_beat_cannot_use_does_not_hide_the_others(admin_client: Client) -> None:
    # An interval a script set to a billion days: Celery cannot build it, beat never sends it.
    huge = IntervalSchedule.objects.create(every=10**9, period="days")
    make_schedule("broken-by-script", crontab=None, interval=huge)
    make_schedule("daily", "30 2 * * *")
    rows = upcoming_rows(admin_client.get(URL).content.decode())
    assert len(rows) == 1 and "daily" in rows[0]


def test_schedules_alike_share_one_computation_and_all_count(
    django_assert_max_num_queries,
) -> None:
    now = timezone.now()
    slot = now.replace(second=0, microsecond=0)  # what beat wrote after their common slot
    for i in range(15):
        make_schedule(f"minutely-{i:02d}", "* * * * *", last_run_at=slot)
    make_schedule("hourly", "0 * * * *", last_run_at=slot)
    # The groups, their crontabs, the first ten of the large group, the names.
    with django_assert_max_num_queries(4):
        upcoming = soonest_runs(10, now)
    assert upcoming.total == 16
    assert [run.schedule for run in upcoming.runs] == [f"minutely-{i:02d}" for i in range(10)]
    expected = next_run(PeriodicTask.objects.get(name="minutely-00"), now)
    assert {run.at for run in upcoming.runs} == {expected}
