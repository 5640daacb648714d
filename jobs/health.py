"""The job-health summary the admin displays: per job, its last run, recent failures, next run.

Computed by a cache warmer (`jobs.refresh_cache`) in three queries whatever the number of jobs,
and read from the cache with `cached_job_health()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from jobs import cache
from scheduler.broken import broken_reason
from scheduler.models import JobRun
from scheduler.timing import Timing

logger = logging.getLogger(__name__)

JOB_HEALTH_KEY = "nightshift:job-health"
JOB_HEALTH_TTL = timedelta(hours=1)
# Failures are counted, and jobs without an enabled schedule listed, over this window.
WINDOW = timedelta(hours=24)

# A schedule whose slot passed this long ago without a dispatch is overdue.
OVERDUE_AFTER = timedelta(minutes=5)


def register() -> None:
    """Register the job-health warmer (called once, from the jobs app's ready())."""
    cache.register_warmer(JOB_HEALTH_KEY, job_health, ttl=JOB_HEALTH_TTL)


def cached_job_health() -> dict[str, Any]:
    """The summary as last refreshed (computed now if the cache has none)."""
    value = cache.get(JOB_HEALTH_KEY)
    if not isinstance(value, dict):
        raise TypeError(f"{JOB_HEALTH_KEY} holds {type(value).__name__}, not the summary dict")
    return value


def job_health() -> dict[str, Any]:
    """Per job with an enabled schedule or a run in the last 24 h: last run, failures, next run;
    per enabled schedule: next run, its last run, whether it is overdue and whether it is broken.

    Times are ISO 8601 strings in TIME_ZONE, so the value is JSON-friendly.
    """
    now = timezone.now()
    since = now - WINDOW

    def latest_run(**match: Any) -> Subquery:
        # One index lookup per outer row (jobrun_job_newest / jobrun_schedule_newest).
        runs = JobRun.objects.filter(**match).order_by("-started_at", "-id")
        return Subquery(runs.values("pk")[:1])

    schedules = list(
        PeriodicTask.objects.filter(enabled=True)
        .select_related("crontab", "interval", "solar", "clocked")
        .annotate(
            job_last_run_id=latest_run(job=OuterRef("task")),
            last_dispatch=Subquery(
                JobRun.objects.filter(schedule=OuterRef("name"), trigger=JobRun.Trigger.SCHEDULE)
                .order_by("-started_at", "-id")
                .values("started_at")[:1]
            ),
            schedule_last_run_id=latest_run(schedule=OuterRef("name")),
        )
        .order_by("name")
    )
    recent = list(
        JobRun.objects.filter(started_at__gte=since)
        .values("job")
        .annotate(
            runs=Count("pk"),
            failures=Count("pk", filter=Q(status__in=JobRun.FINAL_ERRORS)),
            last_run_id=latest_run(job=OuterRef("job")),
        )
        .order_by()
    )

    jobs: dict[str, _JobHealth] = {}
    per_schedule: list[tuple[Any, datetime | None]] = []
    for task in schedules:
        entry = jobs.setdefault(task.task, _JobHealth(task.task))
        entry.schedules.append(task.name)
        entry.last_run_id = task.job_last_run_id
        due = _next_run(task, now)
        entry.add_next_run(max(due, now) if due else None)
        per_schedule.append((task, due))
    for row in recent:
        entry = jobs.setdefault(row["job"], _JobHealth(row["job"]))
        entry.runs_24h, entry.failures_24h = row["runs"], row["failures"]
        entry.last_run_id = row["last_run_id"]

    run_ids = [entry.last_run_id for entry in jobs.values()]
    run_ids += [task.schedule_last_run_id for task, _ in per_schedule]
    last_runs = JobRun.objects.only("started_at", "status", "error_type", "error_message").in_bulk(
        [pk for pk in run_ids if pk is not None]
    )
    late = now - OVERDUE_AFTER
    return {
        "generated_at": _iso(now),
        "window_hours": int(WINDOW.total_seconds() // 3600),
        "jobs": [jobs[name].as_dict(last_runs) for name in sorted(jobs)],
        "schedules": [
            _schedule_dict(task, due, last_runs.get(task.schedule_last_run_id), now, late)
            for task, due in per_schedule
        ],
    }


def _schedule_dict(
    task: Any, due: datetime | None, last: JobRun | None, now: datetime, late: datetime
) -> dict[str, Any]:
    """One enabled schedule: its next run, its own last run, whether it is overdue or broken."""
    broken = ""
    if last is not None:
        broken = broken_reason(
            last.error_type, last.error_message, last.started_at, task.date_changed
        )
    return {
        "name": task.name,
        "job": task.task,
        "next_run_at": _iso(max(due, now)) if due else None,
        # A slot that passed more than OVERDUE_AFTER ago with no dispatch since: beat is not
        # sending it (stopped, or the schedule cannot be loaded).
        "overdue_since": _iso(due) if due is not None and due < late else None,
        "last_run_id": last.pk if last else None,
        "last_run_at": _iso(last.started_at) if last else None,
        "last_status": last.status if last else None,
        # Why beat cannot send it (scheduler.broken); None: it is not broken.
        "broken": broken or None,
    }


@dataclass
class _JobHealth:
    job: str
    last_run_id: int | None = None
    runs_24h: int = 0
    failures_24h: int = 0
    next_run_at: datetime | None = None
    schedules: list[str] = field(default_factory=list)

    def add_next_run(self, at: datetime | None) -> None:
        if at is not None and (self.next_run_at is None or at < self.next_run_at):
            self.next_run_at = at

    def as_dict(self, last_runs: dict[Any, JobRun]) -> dict[str, Any]:
        last = last_runs.get(self.last_run_id)
        return {
            "job": self.job,
            "schedules": self.schedules,
            "last_run_id": last.pk if last else None,
            "last_run_at": _iso(last.started_at) if last else None,
            "last_status": last.status if last else None,
            "runs_24h": self.runs_24h,
            "failures_24h": self.failures_24h,
            "next_run_at": _iso(self.next_run_at) if self.next_run_at else None,
        }


def _next_run(task: Any, now: datetime) -> datetime | None:
    """When beat should next dispatch `task` (in the past if it is overdue); None: never."""
    if task.one_off and task.total_run_count > 0:
        return None
    # The engine writes last_run_at after each tick; the newest scheduled run recorded may
    # still be fresher.
    known = [d for d in (task.last_run_at, task.last_dispatch) if d is not None]
    try:
        timing = replace(Timing.of(task), last_run_at=max(known) if known else None)
        occurrence = timing.after(timing.last_run_at)
    except Exception:  # one broken schedule must not hide every job's health
        logger.warning("cannot compute the next run of schedule %s", task.name, exc_info=True)
        return None
    return occurrence.due_at if occurrence else None


def _iso(moment: datetime) -> str:
    return timezone.localtime(moment, timezone.get_default_timezone()).isoformat()
