"""The check that closes runs whose worker died (beat runs it every minute)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import redis
from celery import current_app
from django.conf import settings
from django.utils import timezone

from scheduler import reporting
from scheduler.models import JobRun
from scheduler.policy import hard_time_limit, overrides_for
from scheduler.recording import leases

logger = logging.getLogger(__name__)


def mark_lost_runs(now: datetime | None = None) -> list[JobRun]:
    """Close runs still `running` whose worker stopped extending their liveness lease.

    A run past its job's hard time limit was killed by the pool (`timed_out`); any other was
    lost with its worker (`lost`). A lost run of a job that declares `retry_when_lost` is sent
    again at once as its next attempt (same task id, trigger `retry`), and its row says so;
    any other gets one Sentry event.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=settings.NIGHTSHIFT_RUN_LEASE_SECONDS)
    candidates = list(
        JobRun.objects.filter(status=JobRun.Status.RUNNING, started_at__lt=now - grace).order_by(
            "started_at"
        )[:1000]
    )
    alive = leases.is_alive([leases.alive_key(run.task_id, run.attempt) for run in candidates])
    closed = []
    for run, is_alive in zip(candidates, alive, strict=True):
        if is_alive:
            continue
        # The schedule's override, as beat sent it (an edit since then is a rare, harmless miss).
        override = overrides_for(run.schedule).get("time_limit") if run.schedule else None
        limit = float(override) if override else hard_time_limit(run.job)
        killed = limit is not None and run.started_at + timedelta(seconds=limit) <= now
        if killed:
            status, kind = JobRun.Status.TIMED_OUT, "TimeLimitExceeded"
            message = f"killed at its hard time limit of {limit:g} s (worker {run.worker})"
        else:
            status, kind = JobRun.Status.LOST, "RunLost"
            message = f"worker {run.worker} stopped during the run (no lease renewal)"
        # Only if still running: a late finish by a slow worker wins.
        updated = JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).update(
            status=status, finished_at=now, error_type=kind, error_message=message
        )
        if not updated:
            continue
        run.status, run.finished_at, run.error_type, run.error_message = status, now, kind, message
        if status == JobRun.Status.LOST and _send_again(run):
            # Not a final failure: the next attempt's outcome is (as for any retry).
            run.error_message = f"{message}; sent again as attempt {run.attempt + 1}"
            JobRun.objects.filter(pk=run.pk).update(error_message=run.error_message)
            logger.warning("run %s of %s lost: %s", run.pk, run.job, run.error_message)
            closed.append(run)
            continue
        run.sentry_event_id = reporting.report_run(
            run, kind, None, f"{run.job}: run {run.pk} {status}: {message}"
        )
        if run.sentry_event_id:
            JobRun.objects.filter(pk=run.pk).update(sentry_event_id=run.sentry_event_id)
        # A warning, not an error: the Sentry event above is the one on-call gets.
        logger.warning("run %s of %s %s: %s", run.pk, run.job, status, message)
        closed.append(run)
    return closed


def _send_again(run: JobRun) -> bool:
    """Send a lost attempt's kept message again as the next attempt; False when none is kept
    (the job does not declare retry_when_lost, or it has no retries left) or when the message
    already came back by itself (a pool process was killed and its worker requeued it)."""
    came_back = JobRun.objects.filter(
        task_id=run.task_id, attempt__gte=run.attempt, pk__gt=run.pk
    ).exists()
    try:
        [kept] = leases.kept_messages([(run.task_id, run.attempt)])
        if kept is None or came_back or not leases.supersede(run.task_id, run.attempt):
            return False
    except redis.RedisError:
        logger.warning("cannot tell whether to send run %s again", run.pk, exc_info=True)
        return False
    try:
        message = json.loads(kept)
        current_app.send_task(
            run.job,
            args=message.pop("args"),
            kwargs=message.pop("kwargs"),
            headers=message.pop("headers"),
            task_id=run.task_id,
            retries=run.attempt,  # the next attempt: trigger `retry`, no start deadline
            **message,
        )
    except Exception:
        leases.unsupersede(run.task_id, run.attempt)  # its late delivery will run it instead
        logger.warning("could not send run %s of %s again", run.pk, run.job, exc_info=True)
        return False
    return True
