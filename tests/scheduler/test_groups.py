"""The admin's two groups: what a migrated database gives them, and who grants what."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.db.models.signals import post_migrate

pytestmark = pytest.mark.django_db

JOBS_RECORDS = {"jobs.view_backup", "jobs.view_report", "jobs.view_workerheartbeat"}


def _perms(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
    }


def test_groups_carry_the_intended_permissions() -> None:
    schedule_models = ["scheduler.schedule", "django_celery_beat.periodictask"]
    # Timing rows are edited in the schedule form only; editors may add one from its "+".
    new_timings = [
        "django_celery_beat.add_intervalschedule",
        "django_celery_beat.add_solarschedule",
        "django_celery_beat.add_clockedschedule",
    ]
    records = [
        "scheduler.jobrun",
        "jobs.backup",
        "jobs.report",
        "jobs.workerheartbeat",
    ]

    def perm(model: str, action: str) -> str:
        app_label, name = model.split(".")
        return f"{app_label}.{action}_{name}"

    assert _perms("Schedule editors") == {
        *(perm(m, a) for m in schedule_models for a in ("add", "change", "delete", "view")),
        "scheduler.run_schedule",
        "scheduler.change_schedulepolicy",
        "scheduler.view_schedulepolicy",
        *new_timings,
        *(perm(m, "view") for m in records),
    }
    assert _perms("Viewers") == {perm(m, "view") for m in [*schedule_models, *records]}


def test_migrate_takes_back_the_timing_pages_an_older_version_granted() -> None:
    editors = Group.objects.get(name="Schedule editors")
    editors.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="django_celery_beat",
            codename__in=["change_crontabschedule", "delete_intervalschedule"],
        )
    )

    call_command("migrate", verbosity=0)

    assert not {
        "django_celery_beat.change_crontabschedule",
        "django_celery_beat.delete_intervalschedule",
    } & _perms(editors.name)


def test_migrate_gives_back_what_is_missing_and_keeps_what_an_operator_added() -> None:
    viewers = Group.objects.get(name="Viewers")
    expected = _perms("Viewers")
    viewers.permissions.remove(Permission.objects.get(codename="view_backup"))
    viewers.permissions.add(Permission.objects.get(codename="view_user"))
    Group.objects.filter(name="Schedule editors").delete()

    call_command("migrate", verbosity=0)

    assert _perms("Viewers") == {*expected, "auth.view_user"}
    editors = Group.objects.get(name="Schedule editors")
    assert {"scheduler.run_schedule", "jobs.view_backup"} <= _perms(editors.name)


def test_the_jobs_app_grants_its_own_models() -> None:
    Group.objects.all().delete()
    jobs = apps.get_app_config("jobs")

    post_migrate.send(
        sender=jobs,
        app_config=jobs,
        verbosity=0,
        interactive=False,
        using="default",
        apps=apps,
        plan=[],
    )

    assert _perms("Viewers") == JOBS_RECORDS
    assert _perms("Schedule editors") == JOBS_RECORDS
