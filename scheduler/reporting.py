"""What on-call sees in Sentry: one event per final failure, timeout or lost run, and one
Crons check-in outcome per occurrence.

Events: `report_run` sends the one event of a run that ended badly, with the run's job,
schedule, task id, run id and admin link, whichever process reports it (the worker, or the
lost-run check). While a run is going (`run_started`), its isolation scope carries the run's
job and schedule; what else the run logs or raises is filtered by config.sentry.before_send.

Check-ins: beat opens one per dispatch (scheduler.engine), in_progress, and puts its id in the
message headers; `close_checkin` sends the occurrence's final outcome when its final row is
written: `ok` (succeeded, or skipped by policy: another message has the occurrence, or the
previous run still holds the overlap lock, or cancelled in the admin: an operator's decision,
not a failure, and never a Sentry event), `error` (failed, timed out, expired). A retried
attempt re-sends `in_progress` with the same id: the retry closes it. A lost run is closed by
its redelivery, or Sentry times it out at its max runtime; a missed slot was never sent, so
Sentry reports it missed on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, cast

import sentry_sdk
from django.conf import settings
from django.urls import reverse
from sentry_sdk.crons import MonitorStatus, capture_checkin

from config.sentry import mark_reported
from scheduler.models import JobRun

S = JobRun.Status
# The Crons outcome of an occurrence, by the status of its final row (see the module's doc).
CHECKIN_STATUS: dict[str, str] = {
    S.SUCCEEDED: MonitorStatus.OK,
    S.SKIPPED_DUPLICATE: MonitorStatus.OK,
    S.SKIPPED_OVERLAP: MonitorStatus.OK,
    S.CANCELLED: MonitorStatus.OK,
    S.FAILED: MonitorStatus.ERROR,
    S.TIMED_OUT: MonitorStatus.ERROR,
    S.EXPIRED: MonitorStatus.ERROR,
    S.RETRYING: MonitorStatus.IN_PROGRESS,
}


def run_admin_url(run_id: int) -> str:
    return f"{settings.SITE_URL}{reverse('admin:scheduler_jobrun_change', args=[run_id])}"


def sentry_event_url(event_id: str) -> str:
    """Link to an event in Sentry's UI, when SENTRY_EVENT_URL says how to build one."""
    template = settings.SENTRY_EVENT_URL
    return str(template.format(event_id=event_id)) if template and event_id else ""


def report_run(
    run: JobRun,
    error_type: str,
    exc: BaseException | None,
    message: str,
    earlier_attempts: Iterable[JobRun] = (),
) -> str:
    """Send one Sentry event for a run that ended badly; return its id ('' when not sent)."""
    if not sentry_sdk.get_client().is_active():
        return ""
    with sentry_sdk.new_scope() as scope:
        for earlier in earlier_attempts:
            scope.add_breadcrumb(
                category="nightshift.retry",
                level="warning",
                message=(
                    f"attempt {earlier.attempt} {earlier.status}: "
                    f"{earlier.error_type}: {earlier.error_message}"
                ),
                timestamp=earlier.finished_at or earlier.started_at,
            )
        scope.set_tag("job", run.job)
        scope.set_tag("schedule", run.schedule or "-")
        scope.set_tag("trigger", run.trigger)
        scope.set_tag("attempt", str(run.attempt))
        scope.set_tag("run_id", str(run.pk))
        scope.set_tag("run_status", run.status)
        scope.set_context(
            "nightshift_run",
            {
                "run_id": run.pk,
                "admin_url": run_admin_url(run.pk),
                "task_id": run.task_id,
                "job": run.job,
                "schedule": run.schedule,
                "trigger": run.trigger,
                "attempt": run.attempt,
                "status": run.status,
                "slot": run.slot.isoformat() if run.slot else None,
                "started_at": run.started_at.isoformat(),
                "worker": run.worker,
            },
        )
        # Group by job and exception type, never by message text (it carries ids and times);
        # config.sentry groups infrastructure errors (a database outage) across jobs instead.
        scope.fingerprint = ["nightshift", run.job, error_type]
        # Last, over what the Celery integration adds: the lost-run check reports other
        # tasks' runs, and the event must name the run's task, not the check's.
        scope.add_event_processor(_as_run_of(run))
        if exc is not None:
            event_id = sentry_sdk.capture_exception(exc)
            mark_reported(exc)  # the Celery integration's capture of it is a duplicate
        else:
            event_id = sentry_sdk.capture_message(message, level="error")
    return event_id or ""


def _as_run_of(run: JobRun) -> Any:
    def processor(event: dict[str, Any], hint: Any) -> dict[str, Any]:
        event.setdefault("tags", {})["celery_task_id"] = run.task_id
        event["transaction"] = run.job
        extra = event.setdefault("extra", {})
        if isinstance(extra.get("celery-job"), dict):
            extra["celery-job"] = {**extra["celery-job"], "task_name": run.job}
        return event

    return processor


def run_started(run: JobRun) -> None:
    """Mark the running task's scope as this run's: any event it sends names the job, the
    schedule and the attempt (the Celery integration gives each task its isolation scope)."""
    if not sentry_sdk.get_client().is_active():
        return
    scope = sentry_sdk.get_isolation_scope()
    scope.set_tag("job", run.job)
    scope.set_tag("schedule", run.schedule or "-")
    scope.set_tag("trigger", run.trigger)
    scope.set_tag("attempt", str(run.attempt))
    scope.set_context(
        "nightshift_run",
        {"job": run.job, "schedule": run.schedule, "task_id": run.task_id, "attempt": run.attempt},
    )


def add_retry_breadcrumb(job: str, attempt: int, exc: BaseException, countdown: float) -> None:
    sentry_sdk.add_breadcrumb(
        category="nightshift.retry",
        level="warning",
        message=f"{job} attempt {attempt} failed ({type(exc).__name__}); retry in {countdown:.0f}s",
    )


def close_checkin(headers: dict[str, Any], run_status: str) -> None:
    """Send the outcome of beat's Crons check-in for this dispatch (its id is in the message
    headers) once the run's row says it: `in_progress` again for a retried attempt."""
    slug = headers.get("sentry-monitor-slug")
    check_in_id = headers.get("sentry-monitor-check-in-id")
    status = CHECKIN_STATUS.get(run_status)
    if slug and check_in_id and status and sentry_sdk.get_client().is_active():
        capture_checkin(
            monitor_slug=slug,
            check_in_id=check_in_id,
            monitor_config=headers.get("sentry-monitor-config") or None,
            status=status,
        )


def monitor_config(
    celery_schedule: Any, hard_time_limit: float | None, slot_at: Any
) -> dict[str, Any]:
    """Sentry Crons monitor config for a schedule, or {} where Crons has no equivalent."""
    from celery.schedules import crontab, schedule, solar

    sched: Any = celery_schedule  # celery's schedule classes are untyped
    config: dict[str, Any] = {"checkin_margin": settings.SENTRY_CRONS_CHECKIN_MARGIN}
    if isinstance(sched, crontab):
        cron: Any = sched
        config["schedule"] = {
            "type": "crontab",
            "value": (
                f"{cron._orig_minute} {cron._orig_hour} "
                f"{cron._orig_day_of_month} {cron._orig_month_of_year} "
                f"{cron._orig_day_of_week}"
            ),
        }
        config["timezone"] = str(sched.tz or settings.CELERY_TIMEZONE)
    elif isinstance(sched, schedule):
        seconds = cast(Any, sched).run_every.total_seconds()
        if seconds <= 0:
            return {}
        # Crons counts in whole minutes: a 10 s job is monitored as "at least once a minute".
        for unit, size in (("day", 86400), ("hour", 3600)):
            if seconds % size == 0:
                config["schedule"] = {
                    "type": "interval",
                    "value": int(seconds // size),
                    "unit": unit,
                }
                break
        else:
            minutes = max(1, math.ceil(seconds / 60))
            config["schedule"] = {"type": "interval", "value": minutes, "unit": "minute"}
        config["timezone"] = settings.CELERY_TIMEZONE
    elif isinstance(sched, solar) and slot_at is not None:
        # A solar event moves by a few minutes a day: today's time as a daily crontab, with a
        # margin wide enough for tomorrow's drift. Each check-in updates it.
        config["schedule"] = {"type": "crontab", "value": f"{slot_at.minute} {slot_at.hour} * * *"}
        config["timezone"] = str(slot_at.tzinfo or "UTC")
        config["checkin_margin"] = max(config["checkin_margin"], 15)
    else:
        return {}
    if hard_time_limit:
        config["max_runtime"] = max(1, math.ceil(hard_time_limit / 60))
    return config
