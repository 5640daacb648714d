"""Things that change schedules and runs: run one now (with its own arguments or others),
enable, disable, duplicate, set its run policy; retry a run, cancel a running one.

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

from scheduler import policy, recording, selectors
from scheduler.batching import chunks
from scheduler.models import JobRun, Schedule, SchedulePolicy
from scheduler.recording import REQUESTED_BY_HEADER, RETRY_OF_HEADER, SCHEDULE_HEADER

logger = logging.getLogger(__name__)

BATCH = 500  # rows per UPDATE ... WHERE pk IN (...)


def run_now(
    task: PeriodicTask,
    requested_by: str,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> str:
    """Publish one run of the schedule now, recorded as `manual` by `requested_by`; the task id.

    The message carries what beat would send (arguments, queue, the schedule's run-policy
    overrides) plus the name of who asked. `args` and `kwargs`, when given, replace the
    schedule's arguments for this run only (the caller checks them: scheduler.arguments).
    """
    if task.task not in selectors.registered_jobs():
        raise LookupError(f"{task.task} is not a registered job; nothing was sent")
    try:
        if args is None:
            args = json.loads(task.args or "[]")
        if kwargs is None:
            kwargs = json.loads(task.kwargs or "{}")
    except ValueError as exc:
        raise ValueError(f"its arguments are not valid JSON ({exc}); nothing was sent") from exc
    task_id = _publish(task.task, args, kwargs, task, {REQUESTED_BY_HEADER: requested_by})
    logger.info("%s (%s) run by %s: task %s", task.name, task.task, requested_by, task_id)
    return task_id


def _publish(
    job: str,
    args: Any,
    kwargs: Any,
    task: PeriodicTask | None,
    headers: dict[str, Any],
    schedule: str = "",
) -> str:
    """Send `job` with these arguments as its schedule `task` would (its headers, queue and
    run-policy overrides) plus `headers`; the task id. Without the schedule row (`schedule`
    names one that was deleted, or none), the job's own defaults."""
    name = task.name if task is not None else schedule
    try:
        stored = json.loads(task.headers or "{}") if task is not None else {}
    except ValueError as exc:
        raise ValueError(f"its headers are not valid JSON ({exc}); nothing was sent") from exc
    policy_headers, options = policy.dispatch_options(name) if name else ({}, {})
    message_headers = {
        **(stored if isinstance(stored, dict) else {}),
        **policy_headers,
        **({SCHEDULE_HEADER: name} if name else {}),
        **headers,
    }
    for option in ("queue", "exchange", "routing_key", "priority"):
        value = getattr(task, option, None)
        if value not in (None, ""):
            options[option] = value
    result = current_app.send_task(
        job, args=args, kwargs=kwargs, headers=message_headers, **options
    )
    return str(result.id)


def retry_run(run: JobRun, requested_by: str) -> str:
    """Send a failed, lost or timed-out run's job again with the arguments that run had, as a
    new task (trigger `retry`) whose row names `requested_by` and links to `run`; its task id.

    ValueError or LookupError, saying why and that nothing was sent, for a run of another status,
    a run whose arguments were not recorded, or a job no longer registered.
    """
    if run.status not in JobRun.RETRYABLE:
        raise ValueError(
            f"run #{run.pk} {run.get_status_display()}: only a failed, lost or timed-out run "
            "can be retried; nothing was sent"
        )
    if run.job not in selectors.registered_jobs():
        raise LookupError(f"{run.job} is not a registered job any more; nothing was sent")
    if run.args is None or run.kwargs is None:
        raise ValueError(
            f"run #{run.pk} has no recorded arguments (recorded before runs kept them, written "
            "by beat, or over the size cap), so it cannot be run again with the same ones; "
            "nothing was sent"
        )
    task = PeriodicTask.objects.filter(name=run.schedule).first() if run.schedule else None
    headers = {REQUESTED_BY_HEADER: requested_by, RETRY_OF_HEADER: run.pk}
    task_id = _publish(run.job, run.args, run.kwargs, task, headers, schedule=run.schedule)
    logger.info("run %s of %s retried by %s: task %s", run.pk, run.job, requested_by, task_id)
    return task_id


def cancel_run(run: JobRun, by: str) -> bool:
    """Cancel a `running` run: the workers revoke its task and terminate the process running it
    (Celery's default SIGTERM: a pool process dies of it at once), its row says `cancelled` by
    `by`, and no later delivery of its message runs (scheduler.recording.cancel). False,
    changing nothing, if the run had already ended."""
    return recording.cancel(
        run, by, lambda: current_app.control.revoke(run.task_id, terminate=True, signal="SIGTERM")
    )


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
