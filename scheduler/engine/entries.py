"""Schedule rows as the engine keeps them: one Entry per enabled PeriodicTask, built once per
change of its row, with everything a dispatch needs (so a dispatch never queries anything)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from celery import Celery
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler import policy
from scheduler.arguments import check_arguments
from scheduler.timing import SHORTEST_INTERVAL, Occurrence, Timing

logger = logging.getLogger(__name__)

_MESSAGE_OPTIONS = ("queue", "exchange", "routing_key", "priority")
_EVER = datetime.min.replace(tzinfo=UTC)


@dataclass(slots=True, eq=False)
class Entry:
    """An enabled schedule: its message, its timing and where it stands."""

    id: int
    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]  # apply_async options, headers included
    timing: Timing
    timing_key: tuple[Any, ...]  # what, changed, makes the engine recount the slots owed
    policy: dict[str, Any]  # SchedulePolicy overrides
    start_deadline: float | None
    total_run_count: int
    last: datetime | None  # the last slot handled (dispatched or recorded)
    next: Occurrence | None = None
    version: int = 0
    # Slots before this are not owed (the schedule did not run then: created or enabled later).
    owed_from: datetime = _EVER
    # Why beat cannot send it (scheduler.broken): its slots are recorded `failed`, not sent.
    broken: str = ""
    reported: bool = False  # its breakage was reported to Sentry (or found reported already)

    def deadline(self, slot: datetime) -> datetime | None:
        return self.timing.deadline(slot, self.start_deadline)


def rows(ids: Iterable[int] | None = None) -> QuerySet[PeriodicTask]:
    """Enabled schedules with their timing rows and policy, a few queries per chunk."""
    # The timing rows are prefetched (one query per kind and chunk), not joined: thousands of
    # schedules share a handful of them, and a join would build one model object per row.
    query = (
        PeriodicTask.objects.filter(enabled=True)
        .select_related("nightshift_policy")
        .prefetch_related("crontab", "interval", "solar", "clocked")
    )
    if ids is not None:
        query = query.filter(pk__in=list(ids))
    ordered: QuerySet[PeriodicTask] = query.order_by()
    return ordered


class Builder:
    """Builds Entries, sharing one Celery schedule object among rows with the same timing."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._schedules: dict[tuple[Any, ...], Any] = {}
        # Thousands of schedules share a job and its arguments: each fit is checked once.
        self._fits: dict[tuple[str, str, str], str] = {}

    def build_all(self, tasks: Iterable[PeriodicTask]) -> Iterator[Entry]:
        for task in tasks:
            entry = self.build(task)
            if entry is not None:
                yield entry

    def build(self, task: PeriodicTask) -> Entry | None:
        """The entry of an enabled row; None (logged) when beat cannot use the row."""
        try:
            key, sched = self._schedule(task)
        except (ValueError, TypeError, OverflowError) as exc:
            logger.error("schedule %r cannot be dispatched: %s", task.name, exc)
            return None
        if sched is None:
            logger.error("schedule %r has no crontab, interval, solar or clocked", task.name)
            return None
        if key[0] == "interval" and sched.run_every < SHORTEST_INTERVAL:
            # Its slots would follow each other at once: beat would send in a loop.
            logger.error(
                "schedule %r cannot be dispatched: its interval (every %s %s) is shorter than %g s",
                task.name,
                task.interval.every,
                task.interval.period,
                SHORTEST_INTERVAL.total_seconds(),
            )
            return None
        args, kwargs, headers, broken = self._message(task)
        if broken:
            logger.warning("schedule %r is broken: %s", task.name, broken)
        # An empty queue (or exchange, routing key) is unset: the job's own queue applies
        # (`queue=` on its task), not Celery's default one.
        options: dict[str, Any] = {
            name: getattr(task, name)
            for name in _MESSAGE_OPTIONS
            if getattr(task, name) not in (None, "")
        }
        expires = task.expires or task.expire_seconds
        if expires:
            options["expires"] = expires
        headers["periodic_task_name"] = task.name
        options["headers"] = headers
        try:
            overrides = task.nightshift_policy.overrides()
        except PeriodicTask.nightshift_policy.RelatedObjectDoesNotExist:
            overrides = {}
        job = self.app.tasks.get(task.task)
        start_deadline = overrides.get(
            "start_deadline", policy.KNOB["start_deadline"].job_default(job, self.app.conf)
        )
        # In the project's time zone, so an interval's slots read as Asia/Shanghai times too.
        timing = Timing(
            sched,
            _local(task.start_time),
            _local(task.expires),
            bool(task.one_off),
            _local(task.last_run_at),
            _local(task.date_changed),
        )
        return Entry(
            id=task.pk,
            name=task.name,
            task=task.task,
            args=args,
            kwargs=kwargs,
            options=options,
            timing=timing,
            timing_key=(key, task.start_time, task.expires, bool(task.one_off)),
            policy=overrides,
            start_deadline=start_deadline,
            total_run_count=task.total_run_count,
            last=_local(task.last_run_at),
            broken=broken,
        )

    def _message(self, task: PeriodicTask) -> tuple[list[Any], dict[str, Any], dict[str, Any], str]:
        """(args, kwargs, headers, why the schedule is broken: '' when it is not)."""
        try:
            args = json.loads(task.args or "[]")
            kwargs = json.loads(task.kwargs or "{}")
            headers = json.loads(task.headers or "{}")
        except ValueError as exc:
            return [], {}, {}, f"its args, kwargs or headers are not valid JSON ({exc})"
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return [], {}, {}, "its args must be a JSON list and its kwargs a JSON object"
        if not isinstance(headers, dict):
            return [], {}, {}, "its headers must be a JSON object"
        fit = (task.task, task.args or "", task.kwargs or "")
        if fit not in self._fits:
            self._fits[fit] = "; ".join(check_arguments(task.task, args, kwargs))
        return args, kwargs, headers, self._fits[fit]

    def _schedule(self, task: PeriodicTask) -> tuple[tuple[Any, ...], Any]:
        if task.crontab_id and task.crontab is not None:
            c = task.crontab
            key: tuple[Any, ...] = (
                "crontab",
                c.minute,
                c.hour,
                c.day_of_month,
                c.month_of_year,
                c.day_of_week,
                str(c.timezone),
            )
            holder = c
        elif task.interval_id and task.interval is not None:
            key = ("interval", task.interval.every, task.interval.period)
            holder = task.interval
        elif task.solar_id and task.solar is not None:
            s = task.solar
            key = ("solar", s.event, str(s.latitude), str(s.longitude))
            holder = s
        elif task.clocked_id and task.clocked is not None:
            key = ("clocked", task.clocked.clocked_time)
            holder = task.clocked
        else:
            return ("none",), None
        if key not in self._schedules:
            self._schedules[key] = holder.schedule
        return key, self._schedules[key]


def _local(moment: datetime | None) -> datetime | None:
    # The project's zone, looked up once: timezone.localtime() asks a thread-local for it on
    # every call, a second of beat's start at 100,000 schedules.
    return moment.astimezone(_zone()) if moment is not None else None


@functools.cache
def _zone() -> tzinfo:
    return timezone.get_default_timezone()


def message_options(entry: Entry) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headers, other apply_async options) of the entry's next message, policy included."""
    policy_headers, policy_options = policy.split(entry.policy)
    headers = dict(entry.options["headers"])
    headers.update(policy_headers)
    options = {k: v for k, v in entry.options.items() if k != "headers"}
    options.update(policy_options)
    return headers, options
