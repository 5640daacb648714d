"""The schedule list of the admin: schedules in words, next and last runs, filters, query budget."""

from __future__ import annotations

import re
from datetime import timedelta
from html import escape
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, IntervalSchedule, SolarSchedule

from scheduler.broken import BROKEN
from scheduler.models import JobRun, Schedule
from tests.factories import create_run, make_schedule, many_schedules_and_runs
from tests.scheduler.schedule_pages import (
    LIST,
    at,
    change_url,
    row_of,
)

pytestmark = pytest.mark.django_db


# --- The list --------------------------------------------------------------------------------


@time_machine.travel(at("2026-03-10 10:00"), tick=False)
def test_list_shows_schedule_in_words_next_run_in_shanghai_and_last_runs(
    admin_client: Client,
) -> None:
    make_schedule("daily-report", "0 15 * * *", task="jobs.daily_report")
    make_schedule("utc-midnight", "0 0 * * *", tz="UTC")
    make_schedule("paused", "*/10 * * * *", enabled=False)
    create_run(
        "jobs.heartbeat",
        "succeeded",
        at("2026-03-08 15:00"),
        schedule="daily-report",
        duration_seconds=2.0,
    )
    failed = create_run(
        "jobs.heartbeat",
        "failed",
        at("2026-03-09 15:00"),
        schedule="daily-report",
        duration_seconds=4000.0,
    )

    html = admin_client.get(LIST).content.decode()

    report = row_of(html, "daily-report")
    assert "jobs.daily_report" in report
    assert "At 15:00, every day (Asia/Shanghai)" in report
    assert "2026-03-10 15:00 CST" in report  # next run
    assert f'href="/admin/scheduler/jobrun/{failed.pk}/change/">failed</a>' in report
    assert "2026-03-09 15:00 CST" in report  # when the last run started
    assert "1 h 6 min" in report  # how long it took
    assert "2026-03-08 15:00 CST" in report  # the last success
    utc = row_of(html, "utc-midnight")
    assert "At 00:00, every day (UTC)" in utc
    assert "2026-03-11 08:00 CST" in utc  # midnight UTC, in Shanghai
    assert "never ran" in utc
    paused = row_of(html, "paused")
    assert "Every 10 minutes (Asia/Shanghai)" in paused
    assert "disabled" in paused


def test_list_marks_a_broken_schedule_with_the_reason_until_it_is_edited(
    admin_client: Client,
) -> None:
    broken = make_schedule("broken", kwargs='{"nope": 1}')
    make_schedule("failing")
    reason = "Unknown argument 'nope': jobs.heartbeat takes no arguments."
    # What beat writes for each slot of a schedule it cannot send (scheduler.engine).
    create_run(
        "jobs.heartbeat", "failed", schedule="broken", error_type=BROKEN, error_message=reason
    )
    create_run("jobs.heartbeat", "failed", schedule="failing", error_type="ValueError")

    html = admin_client.get(LIST).content.decode()
    row = row_of(html, "broken")
    assert 'class="schedule-broken"' in row and f"broken: {escape(reason)}" in row
    assert "schedule-broken" not in row_of(html, "failing")  # a job that failed is not broken

    # Saved since (fixed in the form, or by a script that saves the row): beat sends it again,
    # and the list stops calling it broken, though its newest run is still that failure.
    broken.kwargs = "{}"
    broken.save()
    assert "schedule-broken" not in row_of(admin_client.get(LIST).content.decode(), "broken")


@time_machine.travel(at("2026-03-10 10:00"), tick=False)
def test_list_says_why_an_enabled_schedule_has_no_next_run(admin_client: Client) -> None:
    # Made by a script: the form refuses each of these.
    make_schedule("expired", expires=at("2020-01-01 00:00"))
    make_schedule(
        "clocked-2020",
        crontab=None,
        clocked=ClockedSchedule.objects.create(clocked_time=at("2020-01-01 00:00")),
        one_off=True,
    )
    make_schedule(
        "every-0", crontab=None, interval=IntervalSchedule.objects.create(every=0, period="seconds")
    )

    make_schedule(
        "every-1e9-days",
        crontab=None,
        interval=IntervalSchedule.objects.create(every=10**9, period="days"),
    )
    make_schedule(
        "sunrise-nowhere",
        crontab=None,
        solar=SolarSchedule.objects.create(event="sunrise", latitude=100, longitude=10),
    )

    html = admin_client.get(LIST).content.decode()

    assert "none: expired at 2020-01-01 00:00 CST" in row_of(html, "expired")
    page = admin_client.get(change_url(Schedule.objects.get(name="expired"))).content.decode()
    assert "No next run: expired at 2020-01-01 00:00 CST." in page
    assert "none: its clocked time 2020-01-01 00:00 CST has passed" in row_of(html, "clocked-2020")
    assert "none: beat does not run an interval of every 0 seconds" in row_of(html, "every-0")
    assert "none: beat does not run an interval of every 1000000000 days" in row_of(
        html, "every-1e9-days"
    )
    assert "none: beat cannot use its timing: Argument latitude 100.000000 is invalid" in row_of(
        html, "sunrise-nowhere"
    )


def test_list_filters_by_job_enabled_and_last_status(admin_client: Client) -> None:
    make_schedule("a-report", task="jobs.daily_report")
    make_schedule("b-beat", enabled=False)
    make_schedule("c-never")
    now = timezone.now()
    create_run("jobs.heartbeat", "succeeded", now - timedelta(hours=2), schedule="a-report")
    create_run("jobs.heartbeat", "failed", now - timedelta(hours=1), schedule="a-report")
    create_run("jobs.heartbeat", "failed", now - timedelta(hours=2), schedule="b-beat")
    create_run("jobs.heartbeat", "succeeded", now - timedelta(hours=1), schedule="b-beat")

    def names(**query: str) -> list[str]:
        page = admin_client.get(LIST, query)
        assert page.status_code == 200
        return [s.name for s in page.context["cl"].result_list]

    assert names() == ["a-report", "b-beat", "c-never"]
    assert names(last_status="failed") == ["a-report"]
    assert names(last_status="succeeded") == ["b-beat"]
    assert names(last_status="never") == ["c-never"]
    assert names(job="jobs.daily_report") == ["a-report"]
    assert names(enabled__exact="0") == ["b-beat"]


# --- Bounded queries -----------------------------------------------------------------------------

SCHEDULES = 2_000
RUNS = 100_000


def test_lists_stay_within_a_query_budget_with_2000_schedules_and_100000_runs(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    many_schedules_and_runs(SCHEDULES, RUNS)
    newest = JobRun.objects.filter(schedule="s0001").order_by("-started_at").first()
    assert newest is not None
    # session, user, the job filter's choices, the count, the page, its run strips
    with django_assert_max_num_queries(6):
        page = admin_client.get(LIST)
    assert len(page.context["cl"].result_list) == 100
    row = row_of(page.content.decode(), "s0001")
    assert f'href="/admin/scheduler/jobrun/{newest.pk}/change/">timed out</a>' in row
    # Its strip of the last 20 runs (one query for the page's strips), the newest on the right.
    strip = re.findall(r'class="run-bar" data-status="(\w+)"', row)
    assert len(strip) == 20 and strip[-1] == "timed_out"
    with django_assert_max_num_queries(6):  # ordered by the last run's start, newest first
        failed = admin_client.get(LIST, {"last_status": "failed", "o": "-8"})
    assert failed.status_code == 200
    assert failed.context["cl"].result_count == 0
    with django_assert_max_num_queries(6):
        timed_out = admin_client.get(LIST, {"last_status": "timed_out"})
    assert timed_out.context["cl"].result_count == SCHEDULES
    with django_assert_max_num_queries(10):
        runs = admin_client.get("/admin/scheduler/jobrun/")
    assert len(runs.context["cl"].result_list) == 50
