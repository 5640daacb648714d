from typing import Any

from django.apps import AppConfig
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


def _install_change_triggers(using: str = "default", **kwargs: Any) -> None:
    """A migration that rebuilds a schedule table (SQLite) drops its triggers: put them back."""
    from django.db import connections

    from scheduler.engine import changes

    changes.install(connections[using])
