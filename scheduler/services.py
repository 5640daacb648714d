"""Things that change schedules: run one now, enable, disable, duplicate, set its run policy.

The admin's actions call these, and so do sync_schedules and housekeeping. A bulk change goes in
primary-key chunks and ends with PeriodicTasks.update_changed(): update() sends no signal, and
without it beat would keep its old entries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from celery import current_app
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from scheduler import policy, selectors
from scheduler.batching import chunks
from scheduler.models import Schedule, SchedulePolicy
from scheduler.recording import REQUESTED_BY_HEADER, SCHEDULE_HEADER

logger = logging.getLogger(__name__)

BATCH = 500  # rows per UPDATE ... WHERE pk IN (...)


def run_now(task: PeriodicTask, requested_by: str) -> str:
    """Publish one run of the schedule now, recorded as `manual` by `requested_by`; the task id.

    The message carries what beat would send (arguments, queue, the schedule's run-policy
    overrides) plus the name of who asked.
    """
    if task.task not in selectors.registered_jobs():
        raise LookupError(f"{task.task} is not a registered job; nothing was sent")
    try:
        args = json.loads(task.args or "[]")
        kwargs = json.loads(task.kwargs or "{}")
        headers = json.loads(task.headers or "{}")
    except ValueError as exc:
        raise ValueError(f"its arguments are not valid JSON ({exc}); nothing was sent") from exc
    policy_headers, options = policy.dispatch_options(task.name)
    headers = {
        **(headers if isinstance(headers, dict) else {}),
        **policy_headers,
        SCHEDULE_HEADER: task.name,
        REQUESTED_BY_HEADER: requested_by,
    }
    for option in ("queue", "exchange", "routing_key", "priority"):
        value = getattr(task, option)
        if value not in (None, ""):
            options[option] = value
    result = current_app.send_task(task.task, args=args, kwargs=kwargs, headers=headers, **options)
    logger.info("%s (%s) run by %s: task %s", task.name, task.task, requested_by, result.id)
    return str(result.id)


def enable(schedules: QuerySet[Any]) -> list[int]:
    """Enable the disabled ones of `schedules` from their next slot on; their primary keys."""
    ids = list(schedules.filter(enabled=False).order_by("pk").values_list("pk", flat=True))
    now = timezone.now()
    for batch in chunks(ids, BATCH):
        # last_run_at = now: beat would otherwise count from an old date_changed and fire a
        # slot that passed earlier today at once.
        PeriodicTask.objects.filter(pk__in=batch, enabled=False).update(
            enabled=True, last_run_at=now
        )
    if ids:
        PeriodicTasks.update_changed()
    return ids


def disable(
    schedules: QuerySet[Any], now: datetime | None = None, *, reset_count: bool = False
) -> dict[int, str]:
    """Disable the enabled ones of `schedules` and tell beat; their names, by primary key.

    As saving one disabled does, each forgets its last run and counts as changed at `now`.
    `reset_count` also zeroes its run count, as beat does for a one-off schedule that ran:
    enabled again, it runs once more.
    """
    rows = dict(schedules.filter(enabled=True).order_by("pk").values_list("pk", "name"))
    now = now or timezone.now()
    reset = {"total_run_count": 0} if reset_count else {}
    for batch in chunks(list(rows), BATCH):
        PeriodicTask.objects.filter(pk__in=batch, enabled=True).update(
            enabled=False, last_run_at=None, date_changed=now, **reset
        )
    if rows:
        PeriodicTasks.update_changed()
    return rows


def copy_name(name: str) -> str:
    """A free name for a copy: name-copy, name-copy-2, ..."""
    base = f"{name[:190]}-copy"
    taken = set(PeriodicTask.objects.filter(name__startswith=base).values_list("name", flat=True))
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def duplicate(task: PeriodicTask) -> Schedule:
    """A disabled copy of the schedule (and of its run policy) under a new name."""
    original_pk = task.pk
    copy: Schedule = Schedule.objects.get(pk=original_pk)
    copy.pk = copy.id = None
    copy._state.adding = True
    copy.name = copy_name(task.name)
    copy.enabled = False
    copy.last_run_at = None
    copy.total_run_count = 0
    copy.save()  # save() tells beat
    source = SchedulePolicy.objects.filter(periodic_task_id=original_pk).first()
    if source is not None:
        source.pk = None
        source.periodic_task_id = copy.pk
        source.save(force_insert=True)
    return copy


def set_policy(task: PeriodicTask, values: Mapping[str, Any]) -> None:
    """Make `values` (by knob name; None or '' for the job's default) the schedule's overrides.

    ValueError, naming each knob, if a value is out of its bounds (scheduler.policy.KNOBS).
    """
    overrides = policy.set_values(values)
    problems = [
        f"{name}: {why}"
        for name, value in overrides.items()
        if (why := policy.KNOB[name].problem(value))
    ]
    if problems:  # the form says so first; this keeps scripts within the bounds too
        raise ValueError(" ".join(problems))
    if not overrides:
        SchedulePolicy.objects.filter(periodic_task_id=task.pk).delete()
        return
    row = {
        knob.name: overrides.get(knob.name, "" if knob.choices else None) for knob in policy.KNOBS
    }
    SchedulePolicy.objects.update_or_create(periodic_task_id=task.pk, defaults=row)
