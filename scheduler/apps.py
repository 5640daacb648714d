from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db.models.signals import post_migrate
from django.utils.module_loading import autodiscover_modules


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Each app declares its default schedules in `<app>/schedules.py`, the way admin.py works.
        autodiscover_modules("schedules")
        from scheduler import checks, signals  # noqa: F401  (register checks, connect handlers)

        post_migrate.connect(_install_change_triggers, sender=self)
        post_migrate.connect(_grant_groups, sender=self)


def _install_change_triggers(using: str = "default", **kwargs: Any) -> None:
    """A migration that rebuilds a schedule table (SQLite) drops its triggers: put them back."""
    from django.db import connections

    from scheduler.engine import changes

    changes.install(connections[using])


# django-celery-beat's models. The scheduler's admin edits PeriodicTask (as its Schedule) and
# timing rows only through the schedule form; the stock timing pages are read-only lists for
# superusers (scheduler.admin.timings), where editors may only add a row from the form's "+".
BEAT_TIMINGS = ["crontabschedule", "intervalschedule", "solarschedule", "clockedschedule"]
EDITOR_TIMINGS = ["add_intervalschedule", "add_solarschedule", "add_clockedschedule"]


def _grant_groups(
    sender: AppConfig, using: str = "default", apps: Apps = global_apps, **kwargs: Any
) -> None:
    """Editors manage schedules and see runs; viewers see both."""
    from scheduler import groups

    groups.grant(
        sender,
        {
            groups.EDITORS: [
                *groups.manage("schedule"),
                "run_schedule",
                "change_schedulepolicy",
                "view_schedulepolicy",
                *groups.view("jobrun"),
            ],
            groups.VIEWERS: groups.view("schedule", "jobrun"),
        },
        using,
        apps,
    )
    beat = global_apps.get_app_config("django_celery_beat")
    groups.grant(
        beat,
        {
            groups.EDITORS: [*groups.manage("periodictask"), *EDITOR_TIMINGS],
            groups.VIEWERS: groups.view("periodictask"),
        },
        using,
        apps,
    )
    # Granted before issue 13; these pages are no longer theirs.
    every_timing = groups.manage(*BEAT_TIMINGS)
    groups.revoke(
        beat,
        {
            groups.EDITORS: [p for p in every_timing if p not in EDITOR_TIMINGS],
            groups.VIEWERS: every_timing,
        },
        using,
        apps,
    )
