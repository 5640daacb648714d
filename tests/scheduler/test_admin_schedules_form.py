"""The schedule form of the admin: what it stores, what it refuses, its history, its preview."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
)

import tests.e2e_app  # noqa: F401  (registers tests.sleep, a job with a required argument)
from scheduler.models import Schedule, SchedulePolicy
from scheduler.sync import get_crontab
from tests.factories import create_run, make_schedule
from tests.scheduler.schedule_pages import (
    ADD,
    PREVIEW,
    at,
    change_data,
    change_url,
    form_data,
)

pytestmark = pytest.mark.django_db


# --- The form ------------------------------------------------------------------------------


def test_add_stores_crontab_in_shanghai_policy_and_history(
    editor_client: Client, editor: User
) -> None:
    response = editor_client.post(
        ADD,
        form_data(kwargs='{"force": true}', soft_time_limit="100", overlap="allow"),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = Schedule.objects.get(name="nightly-report")
    assert str(schedule.crontab) == "0 15 * * * (m/h/dM/MY/d) Asia/Shanghai"
    assert (schedule.interval, schedule.solar, schedule.clocked) == (None, None, None)
    assert json.loads(schedule.kwargs) == {"force": True}
    policy = SchedulePolicy.objects.get(periodic_task=schedule)
    assert policy.overrides() == {"overlap": "allow", "soft_time_limit": 100}
    entry = LogEntry.objects.get(object_id=str(schedule.pk))
    assert entry.user == editor
    assert entry.get_change_message() == (
        "Added: job jobs.daily_report; schedule: At 15:00, every day (Asia/Shanghai); enabled: yes"
    )


def test_the_same_crontab_is_reused(editor_client: Client) -> None:
    existing = get_crontab("0 15 * * *")
    editor_client.post(ADD, form_data())
    assert Schedule.objects.get(name="nightly-report").crontab_id == existing.pk
    assert CrontabSchedule.objects.count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("minute", "61", "minute: 61 is out of range 0-59"),
        ("hour", "8,25", "hour: 25 is out of range 0-23"),
        ("day_of_week", "7", "day_of_week: 7 is out of range 0-6 (0 is Sunday)"),
        ("day_of_month", "0", "day_of_month: 0 is out of range 1-31"),
        ("month_of_year", "13", "month_of_year: 13 is out of range 1-12"),
        ("minute", "*/0", "minute: step '0' must be a number 1-59"),
        ("minute", "5/15", "minute: a step needs a range: write 5-59/15 or */15"),
        ("hour", "20-4", "hour: range 20-4 goes backwards; write it as 20-23,0-4"),
        ("minute", "1,,2", "minute: empty item in '1,,2'"),
        ("minute", "", 'minute: empty; use "*" for every value'),
        ("day_of_week", "mon-frx", "day_of_week: 'frx' is not a number 0-6"),
        ("day_of_month", "31", "This crontab never fires"),
    ],
)
def test_invalid_crontab_shows_what_is_wrong_and_saves_nothing(
    editor_client: Client, field: str, value: str, message: str
) -> None:
    overrides = {field: value}
    if field == "day_of_month":
        overrides["month_of_year"] = "2"  # 31 February
    response = editor_client.post(ADD, form_data(**overrides))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(e.startswith(message) for e in errors[field]), errors
    assert message in response.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
    assert not PeriodicTask.objects.exists()
    assert not CrontabSchedule.objects.exists()


@pytest.mark.parametrize(
    ("task", "field", "value", "message"),
    [
        ("jobs.daily_report", "kwargs", "{day: 1}", "Not valid JSON"),
        ("jobs.daily_report", "kwargs", '["2026-01-01"]', "Must be a JSON dict"),
        (
            "jobs.daily_report",
            "kwargs",
            '{"dya": "2026-01-01"}',
            "Unknown argument 'dya': jobs.daily_report takes day, force.",
        ),
        ("tests.sleep", "kwargs", "{}", "Missing required argument 'seconds': tests.sleep takes"),
        ("jobs.heartbeat", "args", "[1]", "Too many positional arguments"),
        ("jobs.deleted", "task", "", "Select a valid choice"),
    ],
)
def test_bad_arguments_show_the_field_error_and_save_nothing(
    editor_client: Client, task: str, field: str, value: str, message: str
) -> None:
    data = form_data(task=task)
    if field != "task":
        data[field] = value
    response = editor_client.post(ADD, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in e for e in errors[field]), errors
    assert not PeriodicTask.objects.exists()


def test_a_schedule_of_a_job_that_is_gone_must_pick_another(editor_client: Client) -> None:
    schedule = make_schedule("ghost", task="jobs.gone")
    page = editor_client.get(change_url(schedule)).content.decode()
    assert "jobs.gone (not a registered job)" in page
    response = editor_client.post(change_url(schedule), change_data(schedule, description="x"))
    [error] = response.context["adminform"].form.errors["task"]
    assert error.startswith("jobs.gone is not a registered job: pick one of the list")
    schedule.refresh_from_db()
    assert schedule.description == ""


def test_exactly_one_schedule_kind(editor_client: Client) -> None:
    every_hour = IntervalSchedule.objects.create(every=1, period="hours")
    both = editor_client.post(ADD, form_data(interval=str(every_hour.pk)))
    assert (
        "Only one schedule kind can be set" in both.context["adminform"].form.errors["interval"][0]
    )
    none = editor_client.post(ADD, form_data(kind="solar"))
    assert "Pick the solar schedule" in none.context["adminform"].form.errors["solar"][0]
    clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    not_one_off = editor_client.post(ADD, form_data(kind="clocked", clocked=str(clocked.pk)))
    assert "tick one-off" in not_one_off.context["adminform"].form.errors["one_off"][0]
    assert not PeriodicTask.objects.exists()
    ok = editor_client.post(ADD, form_data(kind="interval", interval=str(every_hour.pk)))
    assert ok.status_code == 302
    schedule = Schedule.objects.get()
    assert (schedule.interval_id, schedule.crontab_id) == (every_hour.pk, None)


def test_soft_limit_must_stay_below_the_hard_one(editor_client: Client) -> None:
    # jobs.daily_report's own hard limit is 660 s.
    response = editor_client.post(ADD, form_data(soft_time_limit="700"))
    [error] = response.context["adminform"].form.errors["soft_time_limit"]
    assert error.startswith("The soft time limit (700 s) must be below the hard time limit (660 s)")
    assert not PeriodicTask.objects.exists()


def test_change_page_shows_the_job_its_defaults_recent_runs_and_next_runs(
    admin_client: Client,
) -> None:
    schedule = make_schedule("backup", "30 2 * * *", task="jobs.backup_database")
    start = timezone.now() - timedelta(days=30)
    runs = [
        create_run("jobs.heartbeat", "succeeded", start + timedelta(days=i), schedule="backup")
        for i in range(25)
    ]
    html = admin_client.get(change_url(schedule)).content.decode()
    assert "Back up the database into BACKUP_DIR" in html
    assert '<span class="job-default" data-policy="soft_time_limit">3600 s</span>' in html
    assert '<span class="job-default" data-policy="max_retries">2</span>' in html
    table = html[html.index('<table class="recent-runs">') :]  # after the strip of the last 100
    linked = re.findall(r'href="/admin/scheduler/jobrun/(\d+)/change/"', table)
    assert [int(pk) for pk in linked] == [run.pk for run in reversed(runs)][:20]
    assert html.count(" 02:30 CST</li>") == 5
    assert 'src="/static/scheduler/schedule_form.' in html


def test_history_names_each_changed_field_with_old_and_new_values(
    editor_client: Client, editor: User
) -> None:
    schedule = make_schedule("report", "0 15 * * *", task="jobs.daily_report", enabled=False)
    response = editor_client.post(
        change_url(schedule),
        change_data(
            schedule, hour="2", minute="30", enabled="on", kwargs='{"force": true}', max_retries="5"
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = LogEntry.objects.get(object_id=str(schedule.pk))
    assert entry.user == editor
    assert entry.get_change_message() == (
        "enabled: no → yes; "
        "schedule: At 15:00, every day (Asia/Shanghai) → At 02:30, every day (Asia/Shanghai); "
        'kwargs: {} → {"force": true}; max retries: job default → 5'
    )
    history = editor_client.get(f"/admin/scheduler/schedule/{schedule.pk}/history/")
    assert "At 02:30, every day (Asia/Shanghai)" in history.content.decode()
    assert "erin" in history.content.decode()


def test_history_hides_secret_looking_argument_values(editor_client: Client) -> None:
    schedule = make_schedule("sync", task="tests.fail", kwargs='{"message": "x"}')
    editor_client.post(
        change_url(schedule),
        change_data(schedule, kwargs='{"message": "x", "db_password": "hunter2"}'),
    )
    message = LogEntry.objects.get(object_id=str(schedule.pk)).get_change_message()
    assert message == 'kwargs: {"message": "x"} → {"db_password": "***", "message": "x"}'
    assert "hunter2" not in message


# --- The preview endpoint ------------------------------------------------------------------------


@time_machine.travel(at("2026-03-10 10:00"), tick=False)
def test_preview_gives_the_next_five_times_in_shanghai(editor_client: Client) -> None:
    fields = {k: form_data()[k] for k in ("kind", "day_of_month", "month_of_year", "timezone")}
    response = editor_client.get(
        PREVIEW, {**fields, "minute": "0", "hour": "0", "day_of_week": "mon-fri", "timezone": "UTC"}
    )
    assert response.status_code == 200
    data = response.json()
    assert data["description"] == "At 00:00, Monday through Friday (UTC)"
    # 2026-03-10 is a Tuesday; midnight UTC is 08:00 in Shanghai.
    assert data["display"] == [
        "2026-03-11 08:00 CST",
        "2026-03-12 08:00 CST",
        "2026-03-13 08:00 CST",
        "2026-03-16 08:00 CST",
        "2026-03-17 08:00 CST",
    ]
    assert data["times"][0] == "2026-03-11T00:00:00+00:00"


@time_machine.travel(at("2026-03-10 10:00"), tick=False)
def test_preview_of_an_interval_and_a_start_time(editor_client: Client) -> None:
    every_10 = IntervalSchedule.objects.create(every=10, period="minutes")
    plain = editor_client.get(PREVIEW, {"kind": "interval", "interval": every_10.pk}).json()
    assert plain["description"] == "Every 10 minutes"
    assert plain["display"][:2] == ["2026-03-10 10:10 CST", "2026-03-10 10:20 CST"]
    later = editor_client.get(
        PREVIEW,
        {
            "kind": "interval",
            "interval": every_10.pk,
            "start_time_0": "2026-03-12",
            "start_time_1": "09:00:00",
        },
    ).json()
    # Beat fires a task with a start time as soon as that time has come.
    assert later["display"][:2] == ["2026-03-12 09:00 CST", "2026-03-12 09:10 CST"]


def test_preview_explains_invalid_input(editor_client: Client) -> None:
    response = editor_client.get(PREVIEW, {**form_data(), "minute": "61"})
    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "errors": {"minute": ["minute: 61 is out of range 0-59"]},
    }


def test_a_schedule_keeping_a_short_interval_saves_but_a_new_short_interval_is_refused(
    editor_client: Client,
) -> None:
    # Made by a script before the form's rule: every 2 s.
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    other_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    schedule = make_schedule("fast", crontab=None, interval=every_2s)
    fields = {"name": "fast", "task": "jobs.heartbeat", "kind": "interval", "kwargs": "{}"}

    kept = form_data(**fields, interval=str(every_2s.pk), description="still every 2 s")
    assert editor_client.post(change_url(schedule), kept).status_code == 302
    assert Schedule.objects.get(pk=schedule.pk).description == "still every 2 s"

    other = form_data(**fields, interval=str(other_2s.pk), description="another 2 s")
    response = editor_client.post(change_url(schedule), other)
    assert response.status_code == 200
    assert "is too often: at least 10 seconds" in response.content.decode()
    assert Schedule.objects.get(pk=schedule.pk).interval_id == every_2s.pk
