"""The schedule pages of the admin, through the Django test client on the real database."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
    SolarSchedule,
)
from django_celery_beat.schedulers import ModelEntry

import tests.e2e_app  # noqa: F401  (registers tests.sleep, a job with a required argument)
from config.celery import app
from scheduler import leases
from scheduler.describe import (
    CrontabError,
    check_crontab_field,
    crontab_in_words,
    parse_crontab,
)
from scheduler.models import JobRun, Schedule, SchedulePolicy
from scheduler.sync import get_crontab
from scheduler.timing import Timing, next_fire_times

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
LIST = "/admin/scheduler/schedule/"
ADD = "/admin/scheduler/schedule/add/"
PREVIEW = "/admin/scheduler/schedule/preview/"


def at(text: str) -> datetime:
    """A wall-clock time in Shanghai."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def change_url(schedule: PeriodicTask) -> str:
    return f"/admin/scheduler/schedule/{schedule.pk}/change/"


def make_schedule(
    name: str, expression: str = "0 15 * * *", tz: str | None = None, **fields: Any
) -> Schedule:
    fields.setdefault("task", "jobs.heartbeat")
    schedule: Schedule = Schedule.objects.create(
        name=name, crontab=get_crontab(expression, tz), **fields
    )
    return schedule


def make_run(schedule: str, status: str, started_at: datetime, **fields: Any) -> JobRun:
    return JobRun.objects.create(
        task_id=f"{schedule}-{started_at.isoformat()}",
        job="jobs.heartbeat",
        schedule=schedule,
        trigger="schedule",
        started_at=started_at,
        status=status,
        **fields,
    )


def row_of(html: str, name: str) -> str:
    """The changelist row (<tr>) of the schedule called `name`."""
    rows = [row for row in html.split("<tr") if f">{name}</a></th>" in row]
    assert len(rows) == 1, f"no single row for {name}"
    return rows[0]


def form_data(**overrides: str | None) -> dict[str, str]:
    """A complete, valid schedule form; an override of None leaves the field out (unchecked)."""
    data: dict[str, str | None] = {
        "name": "nightly-report",
        "task": "jobs.daily_report",
        "description": "",
        "enabled": "on",
        "kind": "crontab",
        "minute": "0",
        "hour": "15",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "Asia/Shanghai",
        "interval": "",
        "solar": "",
        "clocked": "",
        "start_time_0": "",
        "start_time_1": "",
        "expires_0": "",
        "expires_1": "",
        "args": "[]",
        "kwargs": "{}",
        "queue": "",
        "overlap": "",
        "soft_time_limit": "",
        "time_limit": "",
        "max_retries": "",
        "start_deadline": "",
        **overrides,
    }
    return {key: value for key, value in data.items() if value is not None}


def change_data(schedule: PeriodicTask, **overrides: str | None) -> dict[str, str]:
    """The change form of `schedule` as the page shows it, with some fields edited."""
    cron = schedule.crontab
    shown: dict[str, str | None] = {
        "name": schedule.name,
        "task": schedule.task,
        "enabled": "on" if schedule.enabled else None,
        "minute": cron.minute,
        "hour": cron.hour,
        "day_of_month": cron.day_of_month,
        "month_of_year": cron.month_of_year,
        "day_of_week": cron.day_of_week,
        "timezone": str(cron.timezone),
        "args": schedule.args,
        "kwargs": schedule.kwargs,
    }
    return form_data(**{**shown, **overrides})


def user_in(group: str, name: str) -> User:
    user = User.objects.create(username=name, is_staff=True)  # force_login: no password needed
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def editor() -> User:
    return user_in("Schedule editors", "erin")


@pytest.fixture
def editor_client(client: Client, editor: User) -> Client:
    client.force_login(editor)
    return client


@pytest.fixture
def viewer_client(client: Client) -> Client:
    client.force_login(user_in("Viewers", "vic"))
    return client


@pytest.fixture
def broker() -> Any:
    """The suite's Redis (Celery's broker), empty before and after the test."""
    redis = leases.client()
    redis.flushdb()
    yield redis
    redis.flushdb()


def published(redis: Any) -> list[dict[str, Any]]:
    """The messages waiting in Celery's default queue: headers plus decoded args/kwargs."""
    messages = []
    for raw in redis.lrange("celery", 0, -1):
        envelope = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        messages.append({"headers": envelope["headers"], "args": args, "kwargs": kwargs})
    return messages


# --- The list --------------------------------------------------------------------------------


@time_machine.travel(at("2026-03-10 10:00"), tick=False)
def test_list_shows_schedule_in_words_next_run_in_shanghai_and_last_runs(
    admin_client: Client,
) -> None:
    make_schedule("daily-report", "0 15 * * *", task="jobs.daily_report")
    make_schedule("utc-midnight", "0 0 * * *", tz="UTC")
    make_schedule("paused", "*/10 * * * *", enabled=False)
    make_run("daily-report", "succeeded", at("2026-03-08 15:00"), duration_seconds=2.0)
    failed = make_run("daily-report", "failed", at("2026-03-09 15:00"), duration_seconds=4000.0)

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


def test_list_filters_by_job_enabled_and_last_status(admin_client: Client) -> None:
    make_schedule("a-report", task="jobs.daily_report")
    make_schedule("b-beat", enabled=False)
    make_schedule("c-never")
    now = timezone.now()
    make_run("a-report", "succeeded", now - timedelta(hours=2))
    make_run("a-report", "failed", now - timedelta(hours=1))
    make_run("b-beat", "failed", now - timedelta(hours=2))
    make_run("b-beat", "succeeded", now - timedelta(hours=1))

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


# --- Enable, disable, duplicate --------------------------------------------------------------


def _daily_at_15_disabled_since_last_week() -> Schedule:
    schedule = make_schedule("daily-15", "0 15 * * *", enabled=False)
    # Last edited a week ago: what stock django-celery-beat falls back to without last_run_at.
    Schedule.objects.filter(pk=schedule.pk).update(date_changed=at("2026-03-03 09:00"))
    return schedule


def _is_due(schedule: PeriodicTask) -> bool:
    """What beat decides for the schedule now (its own ModelEntry, as the scheduler builds it)."""
    return bool(ModelEntry(PeriodicTask.objects.get(pk=schedule.pk), app=app).is_due().is_due)


@time_machine.travel(at("2026-03-10 15:00:30"), tick=False)
def test_stock_enable_makes_a_daily_job_fire_at_once() -> None:
    """The pitfall the enable action avoids: no last_run_at, so beat counts from date_changed."""
    schedule = _daily_at_15_disabled_since_last_week()
    PeriodicTask.objects.filter(pk=schedule.pk).update(enabled=True)
    assert _is_due(schedule)


@time_machine.travel(at("2026-03-10 15:00:30"), tick=False)
def test_enable_action_runs_at_the_next_slot_and_tells_beat(
    editor_client: Client, editor: User
) -> None:
    schedule = _daily_at_15_disabled_since_last_week()
    PeriodicTasks.objects.update(last_update=at("2026-03-10 15:00:00"))
    before = PeriodicTasks.last_change()

    response = editor_client.post(
        LIST, {"action": "enable_selected", "_selected_action": [schedule.pk]}, follow=True
    )

    assert "Enabled 1 schedule(s)" in response.content.decode()
    schedule.refresh_from_db()
    assert schedule.enabled
    assert schedule.last_run_at == at("2026-03-10 15:00:30")
    assert PeriodicTasks.last_change() > before
    assert not _is_due(schedule)
    entry = LogEntry.objects.get(object_id=str(schedule.pk))
    assert entry.user == editor
    assert entry.get_change_message() == "enabled: no → yes (runs from its next slot)"


@time_machine.travel(at("2026-03-10 15:00:30"), tick=False)
def test_enabling_in_the_form_runs_at_the_next_slot(editor_client: Client) -> None:
    schedule = _daily_at_15_disabled_since_last_week()
    response = editor_client.post(change_url(schedule), change_data(schedule, enabled="on"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.last_run_at == at("2026-03-10 15:00:30")
    assert not _is_due(schedule)


@time_machine.travel(at("2026-03-10 15:00"), tick=False)
def test_moving_an_enabled_schedule_to_an_earlier_hour_waits_for_its_next_slot(
    editor_client: Client,
) -> None:
    # Beat last ran it yesterday at 10:00; moved to 12:00 at 15:00 it must not catch up today.
    schedule = make_schedule("daily", "0 10 * * *", last_run_at=at("2026-03-09 10:00"))
    response = editor_client.post(change_url(schedule), change_data(schedule, hour="12"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule.refresh_from_db()
    assert schedule.crontab.hour == "12"
    assert schedule.last_run_at == at("2026-03-10 15:00")
    assert not _is_due(schedule)


def test_disable_action_tells_beat(editor_client: Client) -> None:
    schedule = make_schedule("beat", "* * * * *", last_run_at=timezone.now())
    PeriodicTasks.update_changed()
    before = PeriodicTasks.last_change()
    editor_client.post(LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert schedule.last_run_at is None
    assert PeriodicTasks.last_change() > before


def test_duplicate_makes_disabled_copies_with_new_names_and_the_policy(
    editor_client: Client,
) -> None:
    original = make_schedule("report", kwargs='{"force": true}', task="jobs.daily_report")
    SchedulePolicy.objects.create(periodic_task=original, soft_time_limit=100, max_retries=0)
    for _ in range(2):
        response = editor_client.post(
            LIST, {"action": "duplicate_selected", "_selected_action": [original.pk]}
        )
        assert response.status_code == 302
    copies = Schedule.objects.exclude(pk=original.pk).order_by("name")
    assert [c.name for c in copies] == ["report-copy", "report-copy-2"]
    for copy in copies:
        assert not copy.enabled
        assert (copy.task, copy.kwargs, copy.crontab_id) == (
            "jobs.daily_report",
            '{"force": true}',
            original.crontab_id,
        )
        policy = SchedulePolicy.objects.get(periodic_task=copy)
        assert (policy.soft_time_limit, policy.max_retries) == (100, 0)
    original.refresh_from_db()
    assert original.enabled and original.name == "report"


# --- Run now ---------------------------------------------------------------------------------


def test_run_now_publishes_the_schedules_job_with_who_asked(
    editor_client: Client, broker: Any
) -> None:
    schedule = make_schedule("report", task="jobs.daily_report", kwargs='{"force": true}')
    SchedulePolicy.objects.create(periodic_task=schedule, max_retries=1)
    response = editor_client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/", follow=True)
    [notice] = [str(m) for m in response.context["messages"]]
    assert notice.startswith("report: started jobs.daily_report as a manual run.")
    [message] = published(broker)
    assert message["headers"]["task"] == "jobs.daily_report"
    assert message["headers"]["periodic_task_name"] == "report"
    assert message["headers"]["nightshift_requested_by"] == "erin"
    assert message["headers"]["nightshift_policy"] == {"max_retries": 1}
    assert message["kwargs"] == {"force": True}
    assert "Ran now" in LogEntry.objects.get(object_id=str(schedule.pk)).get_change_message()


def test_run_now_action_publishes_each_selected(editor_client: Client, broker: Any) -> None:
    ids = [make_schedule(name).pk for name in ("one", "two")]
    editor_client.post(LIST, {"action": "run_selected", "_selected_action": ids})
    assert sorted(m["headers"]["periodic_task_name"] for m in published(broker)) == ["one", "two"]


def test_run_now_of_a_job_no_worker_knows_sends_nothing(editor_client: Client, broker: Any) -> None:
    schedule = make_schedule("ghost", task="jobs.gone")
    response = editor_client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/", follow=True)
    assert "jobs.gone is not a registered job; nothing was sent" in response.content.decode()
    assert published(broker) == []


def test_run_now_needs_its_permission(viewer_client: Client, broker: Any) -> None:
    schedule = make_schedule("report")
    assert viewer_client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/").status_code == 403
    viewer_client.post(LIST, {"action": "run_selected", "_selected_action": [schedule.pk]})
    page = viewer_client.get(change_url(schedule)).content.decode()
    assert "Run now" not in page
    assert published(broker) == []
    assert viewer_client.get(f"/admin/scheduler/schedule/{schedule.pk}/run/").status_code == 405


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
    runs = [make_run("backup", "succeeded", start + timedelta(days=i)) for i in range(25)]
    html = admin_client.get(change_url(schedule)).content.decode()
    assert "Back up the database into BACKUP_DIR" in html
    assert '<span class="job-default" data-policy="soft_time_limit">3600 s</span>' in html
    assert '<span class="job-default" data-policy="max_retries">2</span>' in html
    linked = re.findall(r'href="/admin/scheduler/jobrun/(\d+)/change/"', html)
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


def test_nothing_without_login(client: Client) -> None:
    schedule = make_schedule("secret-job", kwargs='{"token": "abc"}')
    for url in (LIST, change_url(schedule), PREVIEW + "?kind=crontab&minute=0"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert b"secret-job" not in response.content and b"CST" not in response.content
    run = client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/")
    assert run.status_code == 302 and run["Location"].startswith("/admin/login/")


# --- Permissions ---------------------------------------------------------------------------------


def test_a_viewer_sees_but_cannot_change(viewer_client: Client) -> None:
    schedule = make_schedule("report", task="jobs.daily_report")
    SchedulePolicy.objects.create(periodic_task=schedule, soft_time_limit=100)
    listing = viewer_client.get(LIST)
    assert listing.status_code == 200
    assert "report" in listing.content.decode()
    assert listing.context["action_form"] is None  # no action is open to a viewer
    page = viewer_client.get(change_url(schedule))
    html = page.content.decode()
    assert page.status_code == 200
    assert "At 15:00, every day (Asia/Shanghai)" in html
    assert "<td>100 s</td><td>override</td>" in html
    assert 'name="_save"' not in html
    refused = viewer_client.post(change_url(schedule), change_data(schedule, enabled=None))
    assert refused.status_code == 403
    viewer_client.post(LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled
    assert viewer_client.get(ADD).status_code == 403


def test_an_editor_may_not_change_the_policy_without_its_permission(
    editor_client: Client, editor: User
) -> None:
    editor.groups.clear()
    editor.user_permissions.set(
        Group.objects.get(name="Schedule editors")
        .permissions.exclude(codename="change_schedulepolicy")
        .all()
    )
    schedule = make_schedule("report", task="jobs.daily_report")
    response = editor_client.post(change_url(schedule), change_data(schedule, max_retries="9"))
    assert response.status_code == 302
    assert not SchedulePolicy.objects.filter(periodic_task=schedule).exists()


# --- Bounded queries -----------------------------------------------------------------------------

SCHEDULES = 2_000
RUNS = 100_000


def _bulk_schedules_and_runs() -> None:
    crontab = get_crontab("*/5 * * * *")
    every_hour = IntervalSchedule.objects.create(every=1, period="hours")
    Schedule.objects.bulk_create(
        [
            Schedule(
                name=f"s{i:04d}",
                task="jobs.heartbeat",
                crontab=crontab if i % 2 else None,
                interval=None if i % 2 else every_hour,
            )
            for i in range(SCHEDULES)
        ],
        batch_size=1000,
    )
    PeriodicTasks.update_changed()
    start = timezone.now() - timedelta(days=30)
    rounds = RUNS // SCHEDULES
    statuses = ["succeeded", "failed", "succeeded"]
    JobRun.objects.bulk_create(
        [
            JobRun(
                task_id=f"t{i}",
                job="jobs.heartbeat",
                schedule=f"s{i % SCHEDULES:04d}",
                trigger="schedule",
                started_at=start + timedelta(seconds=i * 20),
                duration_seconds=1.5,
                # The newest run of every schedule timed out.
                status="timed_out" if i // SCHEDULES == rounds - 1 else statuses[i % 3],
            )
            for i in range(RUNS)
        ],
        batch_size=5000,
    )


def test_lists_stay_within_a_query_budget_with_2000_schedules_and_100000_runs(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    _bulk_schedules_and_runs()
    newest = JobRun.objects.filter(schedule="s0001").order_by("-started_at").first()
    assert newest is not None
    # session, user, the job filter's choices, the count, the page
    with django_assert_max_num_queries(6):
        page = admin_client.get(LIST)
    assert len(page.context["cl"].result_list) == 100
    row = row_of(page.content.decode(), "s0001")
    assert f'href="/admin/scheduler/jobrun/{newest.pk}/change/">timed out</a>' in row
    with django_assert_max_num_queries(6):
        failed = admin_client.get(LIST, {"last_status": "failed", "o": "-7"})
    assert failed.status_code == 200
    assert failed.context["cl"].result_count == 0
    with django_assert_max_num_queries(6):
        timed_out = admin_client.get(LIST, {"last_status": "timed_out"})
    assert timed_out.context["cl"].result_count == SCHEDULES
    with django_assert_max_num_queries(10):
        runs = admin_client.get("/admin/scheduler/jobrun/")
    assert len(runs.context["cl"].result_list) == 50


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
