"""Creating django-celery-beat schedule rows the project's way (time zone: CELERY_TIMEZONE)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scheduler.defaults import DefaultSchedule, declared

logger = logging.getLogger(__name__)


def get_crontab(expression: str, timezone: str | None = None) -> CrontabSchedule:
    """Return the CrontabSchedule for a five-field expression, in Asia/Shanghai unless told."""
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
        "timezone": timezone or settings.CELERY_TIMEZONE,
    }
    # No unique constraint on the table: admins may have created twins, so take the first.
    existing = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return existing or CrontabSchedule.objects.create(**fields)


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)


def sync_default_schedules(schedules: list[DefaultSchedule] | None = None) -> SyncResult:
    """Create the declared schedules that are missing; leave existing ones exactly as they are."""
    result = SyncResult()
    for default in declared() if schedules is None else schedules:
        with transaction.atomic():
            if PeriodicTask.objects.filter(name=default.name).exists():
                # An admin may have edited it: never overwrite.
                result.existing.append(default.name)
                continue
            _, created = PeriodicTask.objects.get_or_create(
                name=default.name,
                defaults={
                    "task": default.task,
                    "crontab": get_crontab(default.crontab),
                    "kwargs": json.dumps(default.kwargs),
                    "enabled": default.enabled,
                    "description": default.description,
                },
            )
            if not created:  # another process created it meanwhile
                result.existing.append(default.name)
                continue
            logger.info("created default schedule %s (%s)", default.name, default.crontab)
            result.created.append(default.name)
    return result
