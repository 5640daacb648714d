"""Queries about schedules, runs and jobs, for the admin, its services and the system checks.

Nothing here changes state (that is scheduler.services).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

from celery import current_app
from django.db.models import Model, OuterRef, Q, QuerySet, Subquery
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from scheduler.models import JobRun, SchedulePolicy
from scheduler.policy import KNOB, KNOBS

# --- The registered jobs ----------------------------------------------------------------------


def registered_tasks() -> set[str]:
    """Names of every task the project's jobs provide.

    Celery discovers the apps' tasks modules only when a worker or beat starts; the admin and a
    management command must ask for them, or every job would look missing. Asked for directly:
    through Celery's import_modules signal, its Django fix-up would run every system check each
    time, and one of them (scheduler.checks) asks for the jobs itself.
    """
    current_app.autodiscover_tasks(force=True)
    return set(current_app.tasks)


@dataclass(frozen=True)
class JobInfo:
    """What the schedule page shows about a job: its description, parameters and run policy."""

    name: str
    description: str
    parameters: str
    defaults: dict[str, Any]  # by knob name (scheduler.policy.KNOBS)


def _parameters(task: Any) -> str:
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return "unknown"
    words = [
        p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return ", ".join(words) or "none"


def _job_info(name: str, task: Any, conf: Any) -> JobInfo:
    doc = inspect.getdoc(task) or ""
    return JobInfo(
        name=name,
        description=doc.strip().splitlines()[0] if doc.strip() else "",
        parameters=_parameters(task),
        defaults={knob.name: knob.job_default(task, conf) for knob in KNOBS},
    )


def job_names() -> list[str]:
    """Every job a worker can run, sorted (Celery's own helper tasks left out)."""
    return sorted(name for name in registered_tasks() if not name.startswith("celery."))


def registered_jobs() -> dict[str, JobInfo]:
    """Every job a worker can run, by name, with what the schedule page shows about it."""
    tasks, conf = current_app.tasks, current_app.conf
    return {name: _job_info(name, tasks[name], conf) for name in job_names()}


def job_catalog() -> dict[str, dict[str, Any]]:
    """The registered jobs as the page's script reads them (description, defaults in words)."""
    return {
        name: {
            **asdict(info),
            "defaults": {k: KNOB[k].in_words(v) for k, v in info.defaults.items()},
        }
        for name, info in registered_jobs().items()
    }


def scheduled_jobs() -> list[str]:
    """The jobs some schedule runs, by name."""
    return list(PeriodicTask.objects.order_by("task").values_list("task", flat=True).distinct())


# The timing rows a schedule fires by, and the schedule's field that points at each.
TIMING_FIELDS: dict[type[Model], str] = {
    CrontabSchedule: "crontab",
    IntervalSchedule: "interval",
    SolarSchedule: "solar",
    ClockedSchedule: "clocked",
}


# --- Schedules --------------------------------------------------------------------------------


def schedule_names() -> list[str]:
    """Every schedule's name, in order."""
    return list(PeriodicTask.objects.order_by("name").values_list("name", flat=True))


def schedules_using(timings: Iterable[Model]) -> list[str]:
    """The names of the schedules that fire by any of these timing rows (crontab, interval,
    solar or clocked), in order."""
    query = Q(pk__in=[])
    for row in timings:
        query |= Q(**{TIMING_FIELDS[type(row)]: row.pk})
    return list(PeriodicTask.objects.filter(query).order_by("name").values_list("name", flat=True))


def policy_of(task: PeriodicTask) -> SchedulePolicy | None:
    """The run-policy overrides of a saved schedule, if it has any."""
    if task.pk is None:
        return None
    return SchedulePolicy.objects.filter(periodic_task_id=task.pk).first()


def with_last_runs(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """Annotate each schedule with its newest run (its error too, which says whether the
    schedule is broken: scheduler.broken) and its newest success (index-backed)."""
    runs = JobRun.objects.filter(schedule=OuterRef("name")).order_by("-started_at")
    succeeded = runs.filter(status=JobRun.Status.SUCCEEDED)
    annotated: QuerySet[Any] = queryset.annotate(
        last_run_id=Subquery(runs.values("pk")[:1]),
        last_status=Subquery(runs.values("status")[:1]),
        last_error_type=Subquery(runs.values("error_type")[:1]),
        last_error_message=Subquery(runs.values("error_message")[:1]),
        last_started_at=Subquery(runs.values("started_at")[:1]),
        last_duration=Subquery(runs.values("duration_seconds")[:1]),
        last_success_at=Subquery(succeeded.values("started_at")[:1]),
    )
    return annotated


def recent_runs(schedule: str, count: int) -> QuerySet[JobRun]:
    """The newest `count` runs of the schedule named `schedule`, newest first."""
    return JobRun.objects.filter(schedule=schedule).order_by("-started_at")[:count]


class StripRun(NamedTuple):
    """What a run strip (scheduler.charts) draws of a run: rows, not models (a list page draws
    2,000 of them)."""

    pk: int
    schedule: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    status: str
    attempt: int
    error_type: str


def _strip_rows(runs: QuerySet[JobRun]) -> list[StripRun]:
    return [StripRun(*row) for row in runs.values_list("pk", *StripRun._fields[1:])]


def strip_runs(schedule: str, count: int) -> list[StripRun]:
    """The newest `count` runs of one schedule, newest first, as a strip draws them."""
    return _strip_rows(recent_runs(schedule, count))


def with_strip_start(queryset: QuerySet[Any], count: int) -> QuerySet[Any]:
    """Annotate each schedule with `strip_since`: when its `count`-th newest run started (None:
    it has fewer), one index probe (jobrun_schedule_newest) per schedule shown."""
    runs = JobRun.objects.filter(schedule=OuterRef("name")).order_by("-started_at")
    annotated: QuerySet[Any] = queryset.annotate(
        strip_since=Subquery(runs.values("started_at")[count - 1 : count])
    )
    return annotated


def strips_of(schedules: Iterable[Any], count: int) -> dict[str, list[StripRun]]:
    """The newest `count` runs of each schedule (annotated by `with_strip_start`), newest first,
    by schedule name: one query, an index range per schedule (jobrun_schedule_newest)."""
    ranges = Q(pk__in=[])
    for schedule in schedules:
        since: datetime | None = schedule.strip_since
        if since is None:
            ranges |= Q(schedule=schedule.name)
        else:
            ranges |= Q(schedule=schedule.name, started_at__gte=since)
    found: dict[str, list[StripRun]] = {}
    for run in _strip_rows(JobRun.objects.filter(ranges).order_by("-started_at", "-id")):
        runs = found.setdefault(run.schedule, [])
        if len(runs) < count:  # runs that started at the same moment as the count-th
            runs.append(run)
    return found
