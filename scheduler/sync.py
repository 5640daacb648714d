"""Creating django-celery-beat schedule rows the project's way (time zone: CELERY_TIMEZONE)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from scheduler import services
from scheduler.defaults import DefaultSchedule, declared
from scheduler.selectors import registered_tasks

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


def _crontab_expression(crontab: CrontabSchedule) -> str:
    return " ".join(
        [
            crontab.minute,
            crontab.hour,
            crontab.day_of_month,
            crontab.month_of_year,
            crontab.day_of_week,
        ]
    )


def drift(schedules: list[DefaultSchedule] | None = None) -> list[str]:
    """How the database differs from the declared schedules, one line per difference."""
    lines = []
    for default in declared() if schedules is None else schedules:
        task = PeriodicTask.objects.select_related("crontab").filter(name=default.name).first()
        if task is None:
            lines.append(f"{default.name}: missing (code: {default.task} at {default.crontab})")
            continue
        found = {
            "task": task.task,
            "crontab": _crontab_expression(task.crontab) if task.crontab else "(not a crontab)",
            "time zone": str(task.crontab.timezone) if task.crontab else "-",
            "kwargs": json.loads(task.kwargs or "{}"),
            "enabled": task.enabled,
        }
        wanted = {
            "task": default.task,
            "crontab": default.crontab,
            "time zone": settings.CELERY_TIMEZONE,
            "kwargs": default.kwargs,
            "enabled": default.enabled,
        }
        for key, value in wanted.items():
            if found[key] != value:
                lines.append(f"{default.name}: {key} is {found[key]!r} (code: {value!r})")
    registered = registered_tasks()
    for name, task_name in PeriodicTask.objects.filter(enabled=True).values_list("name", "task"):
        if task_name not in registered:
            lines.append(f"{name}: runs {task_name!r}, which no job provides")
    return lines


def reset_schedule(name: str) -> PeriodicTask:
    """Overwrite the schedule `name` with its declaration in code (an admin's edits are lost)."""
    default = next((d for d in declared() if d.name == name), None)
    if default is None:
        raise LookupError(f"no default schedule is declared under the name {name!r}")
    with transaction.atomic():
        task = PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
        task.task = default.task
        task.crontab = get_crontab(default.crontab)
        task.interval = task.solar = task.clocked = None
        task.kwargs = json.dumps(default.kwargs)
        task.args = "[]"
        task.enabled = default.enabled
        task.description = default.description
        task.save()
    logger.warning("reset schedule %s to its declaration in code", name)
    return task


def disable_orphans() -> list[str]:
    """Disable enabled schedules whose task no job provides any more; return their names."""
    registered = registered_tasks()
    orphans = [
        task
        for task in PeriodicTask.objects.filter(enabled=True).only("pk", "name", "task")
        if task.task not in registered
    ]
    for task in orphans:
        logger.warning("disabling schedule %s: its task %s no longer exists", task.name, task.task)
    if orphans:
        services.disable(PeriodicTask.objects.filter(pk__in=[t.pk for t in orphans]))
    return [task.name for task in orphans]
