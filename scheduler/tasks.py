"""JobTask, the base of every Nightshift task: records, guards and reports each run.

A job declares its run policy as task options, e.g.

    @app.task(name="jobs.backup_database", base=JobTask, overlap="skip", soft_time_limit=1800,
              time_limit=1900, max_retries=3, start_deadline=None)

The knobs a schedule may override, with their meaning, are scheduler.policy.KNOBS. Besides them,
retry_backoff, retry_backoff_max and retry_jitter shape the retries of transient errors
(`transient_errors`), with Celery's exponential backoff; other errors fail at once.

`retry_when_lost = True` is the job's own declaration (no schedule can make a job safe to
repeat): a run lost with its worker is sent again at once by the lost-run check, as the next
attempt (within max_retries), instead of hours later when Redis hands its message out again.

Recording itself (rows, leases, the lost-run check) is scheduler.recording's.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import redis
from celery import Task
from celery.exceptions import Ignore, Retry, SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError

from config.celery import app
from scheduler import recording, reporting
from scheduler.models import JobRun
from scheduler.policy import KNOB

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

    overlap: ClassVar[str] = KNOB["overlap"].task_default
    max_retries = 3
    retry_backoff: ClassVar[int] = 10
    retry_backoff_max: ClassVar[int] = 600
    retry_jitter: ClassVar[bool] = True
    start_deadline: ClassVar[float | None] = KNOB["start_deadline"].task_default
    transient_errors: ClassVar[tuple[type[Exception], ...]] = TRANSIENT_ERRORS
    retry_when_lost: ClassVar[bool] = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            # A plain function call (tests, shell): no worker, nothing to record.
            return super().__call__(*args, **kwargs)
        dispatch = recording.Dispatch.from_request(self.name, self.request)
        max_retries = dispatch.policy("max_retries", self.max_retries)
        try:
            admitted = recording.admit(
                dispatch,
                overlap=dispatch.policy("overlap", self.overlap),
                start_deadline=dispatch.policy("start_deadline", self.start_deadline),
                retry_when_lost=self.retry_when_lost
                and (max_retries is None or dispatch.attempt <= max_retries),
            )
        except self.transient_errors as exc:
            # Redis is down before the job started: nothing ran, so try later, whatever
            # attempt this is (the message must not be lost). A database that does not answer
            # never gets here: rows it does not take wait in Redis.
            countdown = self.retry_countdown(dispatch.attempt)
            logger.warning(
                "%s could not start (%s: %s); retrying in %.0f s",
                dispatch.job, recording.error_name(exc), exc, countdown,
            )  # fmt: skip
            raise self.retry(exc=exc, countdown=countdown, max_retries=None) from exc
        if isinstance(admitted, recording.Skipped):
            if admitted.status == JobRun.Status.EXPIRED:
                raise Ignore()
            return None
        try:
            return self._execute(admitted, dispatch, args, kwargs)
        finally:
            admitted.release()  # normally done by finish()

    def retry_countdown(self, attempt: int) -> float:
        """Celery's exponential backoff for the retry after `attempt`: capped, full jitter."""
        return float(
            get_exponential_backoff_interval(
                factor=int(self.retry_backoff),
                retries=attempt - 1,
                maximum=int(self.retry_backoff_max),
                full_jitter=self.retry_jitter,
            )
        )

    def _execute(
        self, run: recording.ActiveRun, dispatch: recording.Dispatch, args: Any, kwargs: Any
    ) -> Any:
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
                    recording.error_name(exc),
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
    recovered = recording.recover()
    return {
        "closed": len(recovered.closed),
        "runs": [run.pk for run in recovered.closed],
        "rows_written": recovered.rows_written,
    }
