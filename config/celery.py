"""The Celery app: `celery -A config worker` / `celery -A config beat -S django`."""

from __future__ import annotations

import os
from logging.config import dictConfig
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu.utils.objects import cached_property

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


class Nightshift(Celery):
    """The Celery app, whose `celery beat` runs Nightshift's schedule engine for `-S django`."""

    @cached_property
    def Beat(self) -> Any:  # Celery's name for it
        return self.subclass_with_self("scheduler.engine:Beat")  # type: ignore[arg-type]


# Every task of the project records its runs and follows its run policy (scheduler.tasks).
app = Nightshift("nightshift", task_cls="scheduler.tasks:JobTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs: Any) -> None:
    """Make worker and beat log through Django's LOGGING instead of Celery's own set-up."""
    from django.conf import settings

    dictConfig(settings.LOGGING)
