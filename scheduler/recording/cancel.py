"""Cancelling a running run from the admin: its row, the mark that keeps its message from
running again, and the clean-up once a worker has killed it.

The admin (scheduler.services.cancel_run) calls `cancel`, which marks the task id, has the
workers revoke the task and terminate the process running it, then closes the row. Celery
acknowledges a terminated task's message at once, so it does not come back; but a worker that
was unreachable (dead, or restarted before the revoke) leaves it unacknowledged, and the broker
hands it out again later, to a worker that never heard of the revoke. Admission refuses every
delivery of a cancelled task id for as long as its message could come back
(scheduler.recording.leases.cancel_key).

The killed process writes nothing: the row was closed by `cancel`, and the worker's main
process, told by Celery (`task_revoked`), calls `terminated` to give back the dead run's leases
at once (else the next run of its schedule would be skipped for overlap until they lapse) and
to close its Sentry Crons check-in as `ok`: a cancel is an operator's decision, not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from scheduler import reporting
from scheduler.models import JobRun
from scheduler.recording import leases
from scheduler.recording.dispatch import SCHEDULE_HEADER

logger = logging.getLogger(__name__)


def cancel(run: JobRun, by: str, stop: Callable[[], object]) -> bool:
    """Cancel the `running` run for `by`: mark its task id, so that no later delivery of its
    message runs, call `stop()` (which has the workers terminate it), then close its row as
    `cancelled` by `by`. False when the run had already ended: its row is left as it is (`run`
    is refreshed to say how) and the mark is taken back. An error of Redis, or of `stop`,
    propagates with nothing changed."""
    note = f"run #{run.pk} was cancelled by {by}"
    fresh = leases.mark_cancelled(run.task_id, note)
    try:
        stop()
    except Exception:
        if fresh:
            leases.unmark_cancelled(run.task_id)
        raise
    now = timezone.now()
    # Only if still running: a run that ended before the kill keeps its own outcome.
    updated = JobRun.objects.filter(pk=run.pk, status=JobRun.Status.RUNNING).update(
        status=JobRun.Status.CANCELLED,
        finished_at=now,
        duration_seconds=(now - run.started_at).total_seconds(),
        cancelled_by=by,
    )
    if not updated and fresh:
        leases.unmark_cancelled(run.task_id)  # its message may still come back: let it run
    run.refresh_from_db()
    if updated:
        logger.info("%s run %s (task %s) cancelled by %s", run.job, run.pk, run.task_id, by)
    return bool(updated)


def terminated(request: Any) -> None:
    """A worker killed the process running `request` (a Celery task request): give back the
    leases the dead run held, and close its Crons check-in if it was cancelled in the admin."""
    headers = {**vars(request), **(getattr(request, "headers", None) or {})}
    task_id = str(headers.get("id") or "")
    job = str(headers.get("task") or "")
    if not task_id or not job:
        return
    attempt = int(headers.get("retries") or 0) + 1
    schedule = str(headers.get(SCHEDULE_HEADER) or "")
    leases.release_for(
        task_id, [leases.alive_key(task_id, attempt), leases.lock_key(job, schedule)]
    )
    if leases.is_alive([leases.cancel_key(task_id)])[0]:
        reporting.close_checkin(headers, JobRun.Status.CANCELLED)
