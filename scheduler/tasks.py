"""JobTask, the base of every Nightshift task: records, guards and reports each run.

A job declares its run policy as task options, with these defaults:

    @app.task(name="jobs.backup_database", overlap="skip", soft_time_limit=1800,
              time_limit=1900, max_retries=3, retry_backoff=30, start_deadline=None)

- overlap: "skip" (a run of the same job and schedule still running makes this one
  `skipped_overlap`) or "allow".
- soft_time_limit / time_limit: Celery's; the soft limit records `timed_out`.
- max_retries, retry_backoff, retry_backoff_max, retry_jitter: transient errors
  (`transient_errors`) retry with exponential backoff; other errors fail at once.
- start_deadline: seconds after its slot after which a run that has not started is `expired`;
  None means "until the next slot of its schedule".
"""

from __future__ import annotations

import logging
import random
from typing import Any, ClassVar

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from config.celery import app
from scheduler import leases, reporting, runs
from scheduler.models import JobRun

logger = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,  # database connection lost, SQLite busy
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,  # includes socket.timeout: timeouts of external calls
)


class JobTask(Task):  # type: ignore[type-arg]
    """Celery task base that records every run as a JobRun and applies the job's run policy."""

    overlap: ClassVar[str] = "skip"
    max_retries = 3
    retry_backoff: ClassVar[float] = 10.0
    retry_backoff_max: ClassVar[float] = 600.0
    retry_jitter: ClassVar[bool] = True
    start_deadline: ClassVar[float | None] = None
    transient_errors: ClassVar[tuple[type[Exception], ...]] = TRANSIENT_ERRORS

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            # A plain function call (tests, shell): no worker, nothing to record.
            return super().__call__(*args, **kwargs)
        return self._run_recorded(runs.Dispatch.from_request(self.name, self.request), args, kwargs)

    def retry_countdown(self, attempt: int) -> float:
        """Exponential backoff for the retry after `attempt`, capped, with full jitter."""
        delay = min(self.retry_backoff * 2 ** (attempt - 1), self.retry_backoff_max)
        return random.uniform(delay / 2, delay) if self.retry_jitter else delay  # noqa: S311

    def _run_recorded(self, dispatch: runs.Dispatch, args: Any, kwargs: Any) -> Any:
        try:
            admitted, lock = self._admit(dispatch)
        except self.transient_errors as exc:
            # Redis or the database is down before the job started: nothing ran, try later.
            max_retries = dispatch.policy("max_retries", self.max_retries)
            if max_retries is not None and dispatch.attempt > max_retries:
                raise
            countdown = self.retry_countdown(dispatch.attempt)
            logger.warning(
                "%s could not start (%s: %s); retrying in %.0f s",
                dispatch.job, runs.error_name(exc), exc, countdown,
            )  # fmt: skip
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc
        if not admitted:
            return None
        active = runs.start_run(dispatch, lock, eager=bool(self.request.is_eager))
        try:
            return self._execute(active, dispatch, args, kwargs)
        finally:
            active.release()  # normally done by finish(), overlapped with the row's write

    def _admit(self, dispatch: runs.Dispatch) -> tuple[bool, str | None]:
        """Decide whether this dispatch runs: (False, None) when it was recorded as skipped;
        else (True, the overlap lock it now holds)."""
        deadline = dispatch.deadline(dispatch.policy("start_deadline", self.start_deadline))
        if deadline is not None and timezone.now() > deadline:
            runs.record_skip(
                dispatch,
                JobRun.Status.EXPIRED,
                f"not started before its deadline {deadline.isoformat()}",
            )
            reporting.close_checkin_as_error(dispatch.headers)
            raise Ignore()
        occurrence = None
        if dispatch.schedule and dispatch.slot and dispatch.attempt == 1:
            ttl = int((deadline - timezone.now()).total_seconds()) + 86400 if deadline else 86400
            occurrence = (leases.occurrence_key(dispatch.schedule, dispatch.slot), ttl)
        lock = None
        if dispatch.policy("overlap", self.overlap) == "skip":
            lock = leases.lock_key(dispatch.job, dispatch.schedule)
        verdict = leases.admit(dispatch.task_id, occurrence, lock)
        if verdict == "duplicate":
            assert dispatch.slot is not None
            runs.record_skip(
                dispatch,
                JobRun.Status.SKIPPED_DUPLICATE,
                f"occurrence {dispatch.slot.isoformat()} was already dispatched",
            )
            return False, None
        if verdict == "overlap":
            runs.record_skip(
                dispatch, JobRun.Status.SKIPPED_OVERLAP, "a run of this job is still running"
            )
            return False, None
        return True, lock

    def _execute(self, run: runs.ActiveRun, dispatch: runs.Dispatch, args: Any, kwargs: Any) -> Any:
        try:
            result = self.run(*args, **kwargs)
        except Retry:
            run.finish(JobRun.Status.RETRYING)
            raise
        except SoftTimeLimitExceeded as exc:
            run.finish(JobRun.Status.TIMED_OUT, exc=exc, report=True)
            raise
        except self.transient_errors as exc:
            max_retries = dispatch.policy("max_retries", self.max_retries)
            if max_retries is None or dispatch.attempt <= max_retries:
                countdown = self.retry_countdown(dispatch.attempt)
                run.finish(JobRun.Status.RETRYING, exc=exc)
                reporting.add_retry_breadcrumb(dispatch.job, dispatch.attempt, exc, countdown)
                logger.warning(
                    "%s attempt %d failed (%s); retrying in %.0f s",
                    dispatch.job,
                    dispatch.attempt,
                    runs.error_name(exc),
                    countdown,
                )
                raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc
            run.finish(JobRun.Status.FAILED, exc=exc, report=True)
            raise
        except Exception as exc:
            run.finish(JobRun.Status.FAILED, exc=exc, report=True)
            raise
        run.finish(JobRun.Status.SUCCEEDED, result=result)
        return result


@app.task(name="scheduler.mark_lost_runs", soft_time_limit=50, time_limit=60)
def mark_lost_runs_task() -> dict[str, object]:
    """Close runs whose worker died mid-run (lost) or was killed at its hard time limit, and
    write the rows of finished runs that their worker kept in Redis but never inserted."""
    written = runs.write_unwritten_rows()
    closed = runs.mark_lost_runs()
    return {"closed": len(closed), "runs": [run.pk for run in closed], "rows_written": written}
