from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
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


def test_check_passes_when_the_database_matches_the_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("sync_schedules")
    call_command("sync_schedules", "--check")
    assert "schedules match the code" in capsys.readouterr().out


def test_check_lists_every_drift_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("sync_schedules")
    PeriodicTask.objects.filter(name="nightshift-heartbeat").delete()
    lost = PeriodicTask.objects.get(name="nightshift-lost-runs")
    lost.crontab = get_crontab("*/5 * * * *")
    lost.save()
    PeriodicTask.objects.create(
        name="old-report", task="jobs.gone_report", crontab=get_crontab("0 8 * * *")
    )
    capsys.readouterr()

    with pytest.raises(CommandError, match="3 difference"):
        call_command("sync_schedules", "--check")

    out = capsys.readouterr().out
    assert "nightshift-heartbeat: missing" in out
    assert "nightshift-lost-runs: crontab is '*/5 * * * *' (code: '* * * * *')" in out
    assert "old-report: runs 'jobs.gone_report', which no job provides" in out
    # --check changes nothing.
    assert not PeriodicTask.objects.filter(name="nightshift-heartbeat").exists()
    assert PeriodicTask.objects.get(name="old-report").enabled


def test_reset_restores_one_schedule_and_keeps_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    call_command("sync_schedules")
    for name in ("nightshift-heartbeat", "nightshift-lost-runs"):
        task = PeriodicTask.objects.get(name=name)
        task.crontab = get_crontab("*/7 * * * *")
        task.enabled = False
        task.save()

    call_command("sync_schedules", "--reset", "nightshift-heartbeat")

    reset = PeriodicTask.objects.get(name="nightshift-heartbeat")
    kept = PeriodicTask.objects.get(name="nightshift-lost-runs")
    assert reset.crontab is not None and kept.crontab is not None
    assert (reset.crontab.minute, reset.enabled) == ("*", True)
    assert (kept.crontab.minute, kept.enabled) == ("*/7", False)
    assert "reset    nightshift-heartbeat" in capsys.readouterr().out


def test_reset_of_an_unknown_name_is_an_error() -> None:
    with pytest.raises(CommandError, match="no default schedule is declared under the name"):
        call_command("sync_schedules", "--reset", "no-such-schedule")


def test_schedules_of_vanished_tasks_are_disabled_with_a_warning(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gone = PeriodicTask.objects.create(
        name="old-report", task="jobs.gone_report", crontab=get_crontab("0 8 * * *")
    )
    call_command("sync_schedules")
    gone.refresh_from_db()
    assert not gone.enabled
    assert "disabled old-report: its task no longer exists" in capsys.readouterr().err
    # Real jobs are found even though no worker started in this process.
    assert PeriodicTask.objects.get(name="nightshift-heartbeat").enabled
