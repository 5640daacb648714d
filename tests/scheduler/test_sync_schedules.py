from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scheduler.defaults import DefaultSchedule, declared, register
from scheduler.sync import get_crontab, sync_default_schedules

pytestmark = pytest.mark.django_db


def test_sync_creates_the_heartbeat_every_minute_in_shanghai(
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("sync_schedules")
    task = PeriodicTask.objects.get(name="nightshift-heartbeat")
    assert task.task == "jobs.heartbeat"
    assert task.enabled
    assert task.crontab is not None
    assert str(task.crontab) == "* * * * * (m/h/dM/MY/d) Asia/Shanghai"
    assert "created  nightshift-heartbeat" in capsys.readouterr().out


def test_sync_never_overwrites_an_admins_edit(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("sync_schedules")
    task = PeriodicTask.objects.get(name="nightshift-heartbeat")
    task.crontab = get_crontab("*/5 * * * *")
    task.enabled = False
    task.kwargs = json.dumps({"edited": True})
    task.save()

    call_command("sync_schedules")

    task.refresh_from_db()
    assert task.crontab is not None
    assert (task.crontab.minute, task.enabled, task.kwargs) == ("*/5", False, '{"edited": true}')
    assert PeriodicTask.objects.filter(name="nightshift-heartbeat").count() == 1
    assert "kept     nightshift-heartbeat" in capsys.readouterr().out


def test_sync_reuses_an_existing_crontab_row() -> None:
    existing = CrontabSchedule.objects.create(minute="*", hour="*")
    sync_default_schedules(
        [DefaultSchedule(name="x-job", task="jobs.heartbeat", crontab="* * * * *")]
    )
    assert PeriodicTask.objects.get(name="x-job").crontab_id == existing.pk
    assert CrontabSchedule.objects.count() == 1


def test_the_heartbeat_is_declared() -> None:
    assert [s.name for s in declared()].count("nightshift-heartbeat") == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Has Spaces", "crontab": "* * * * *"}, "must be lower-case"),
        ({"name": "ok-name", "crontab": "* * *"}, "must have five fields"),
    ],
)
def test_bad_declarations_fail_loudly(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DefaultSchedule(task="jobs.heartbeat", name=kwargs["name"], crontab=kwargs["crontab"])


def test_declaring_a_different_schedule_under_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        register(
            DefaultSchedule(name="nightshift-heartbeat", task="jobs.other", crontab="0 * * * *")
        )
