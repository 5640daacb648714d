"""The schedule admin's actions: enable, disable, duplicate, run now."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    PeriodicTask,
    PeriodicTasks,
)
from django_celery_beat.schedulers import ModelEntry

from config.celery import app
from scheduler.models import Schedule, SchedulePolicy
from tests.factories import make_schedule
from tests.scheduler.schedule_pages import (
    LIST,
    at,
    change_data,
    change_url,
    published,
)

pytestmark = pytest.mark.django_db


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
    assert message["queue"] == "heavy", "run now sends the job to its own queue"
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
