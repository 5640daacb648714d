"""Admission and the run's row: what JobTask calls before and after a job's code."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from redis.lock import Lock

from scheduler import reporting
from scheduler.models import JobRun
from scheduler.recording import leases, rows
from scheduler.recording.dispatch import Dispatch
from scheduler.recording.keeper import keeper

logger = logging.getLogger(__name__)

MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000
MAX_RESULT = 4000
# A run still going after this many seconds gets its `running` row before it ends.
RUNNING_ROW_AFTER = 1.0
ROW_RETRY_SECONDS = 5.0  # between tries at a running row while the database does not answer


def summarize_result(result: Any) -> Any:
    """The job's return value if it is small JSON, else a truncated text of it."""
    if result is None:
        return None
    try:
        text = json.dumps(result)
    except (TypeError, ValueError):
        return {"repr": repr(result)[:MAX_RESULT]}
    return result if len(text) <= MAX_RESULT else {"truncated": text[:MAX_RESULT]}


def error_name(exc: BaseException) -> str:
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


@dataclass(frozen=True)
class Skipped:
    """A dispatch that was not executed; its row is written and final."""

    run: JobRun

    @property
    def status(self) -> str:
        return self.run.status


def _skip(dispatch: Dispatch, status: str, message: str) -> Skipped:
    now = timezone.now()
    run = dispatch.new_run(status, started_at=now, finished_at=now, error_message=message)
    try:
        run.save(force_insert=True)
    except DatabaseError as exc:
        # The decision stands (a skip run again could run twice): its row waits in Redis.
        _database_refused(run, exc)
        rows.keep_now(rows.field_for(run), run)
    logger.info("%s %s [%s]: %s", dispatch.job, status, dispatch.task_id, message)
    reporting.close_checkin(dispatch.headers, status)
    return Skipped(run)


def _cancelled(dispatch: Dispatch, note: str) -> Skipped:
    """A delivery of a task id cancelled in the admin (its message came back): not run."""
    message = f"{note}; this delivery of its message does not run"
    return _skip(dispatch, JobRun.Status.SKIPPED_DUPLICATE, message)


def _database_refused(run: JobRun, exc: DatabaseError) -> None:
    logger.warning(
        "%s run %s attempt %d: the database did not take its %s row (%s); it is kept in Redis "
        "until the lost-run check writes it",
        run.job, run.task_id, run.attempt, run.status, error_name(exc),
    )  # fmt: skip


def admit(
    dispatch: Dispatch,
    *,
    overlap: str,
    start_deadline: float | None,
    retry_when_lost: bool = False,
) -> ActiveRun | Skipped:
    """Decide whether a dispatch runs, and start its run if it does.

    A first attempt past its deadline is `expired`;
    a delivery of a task id cancelled in the admin (a redelivery of its message) is
    `skipped_duplicate`;
    an occurrence (schedule, slot) already claimed by another message is `skipped_duplicate`;
    with overlap "skip", a run of the same job and schedule still holding the lock makes this
    one `skipped_overlap`. Redis errors propagate: nothing was started. A skip's row the
    database does not take waits in Redis.

    With `retry_when_lost`, the attempt takes its liveness lease at once and keeps its message
    for the lost-run check to send again (scheduler.recording.leases); a delivery of an
    attempt that was lost and already sent again is `skipped_duplicate`.
    """
    alive = None
    if retry_when_lost and not dispatch.eager:
        alive = leases.live_unless_superseded(
            dispatch.task_id, dispatch.attempt, dispatch.message()
        )
        if alive is None:
            return _skip(
                dispatch,
                JobRun.Status.SKIPPED_DUPLICATE,
                f"attempt {dispatch.attempt} was lost and has been sent again as attempt "
                f"{dispatch.attempt + 1}",
            )
    admitted = _admit(dispatch, overlap, start_deadline, alive)
    if alive is not None and isinstance(admitted, Skipped):
        with contextlib.suppress(redis.RedisError):  # else it lapses on its own
            leases.release([alive])
    return admitted


def _admit(
    dispatch: Dispatch, overlap: str, start_deadline: float | None, alive: Lock | None
) -> ActiveRun | Skipped:
    deadline = dispatch.deadline(start_deadline)
    if deadline is not None and timezone.now() > deadline:
        # A late copy of a run cancelled in the admin says so, and its Crons check-in (closed
        # `ok` by the cancel) gets no `error`. Without Redis, it is just expired.
        with contextlib.suppress(redis.RedisError):
            note = leases.cancelled_note(dispatch.task_id)
            if note:
                return _cancelled(dispatch, note)
        return _skip(
            dispatch,
            JobRun.Status.EXPIRED,
            f"not started before its deadline {deadline.isoformat()}",
        )
    occurrence = None
    if dispatch.schedule and dispatch.slot and dispatch.attempt == 1:
        ttl = int((deadline - timezone.now()).total_seconds()) + 86400 if deadline else 86400
        occurrence = (dispatch.schedule, dispatch.slot, ttl)
    lock_key = leases.lock_key(dispatch.job, dispatch.schedule) if overlap == "skip" else None
    verdict, lock = leases.admit(dispatch.task_id, occurrence, lock_key)
    if verdict == "duplicate":
        assert dispatch.slot is not None
        return _skip(
            dispatch,
            JobRun.Status.SKIPPED_DUPLICATE,
            f"occurrence {dispatch.slot.isoformat()} was already dispatched",
        )
    if verdict == "overlap":
        return _skip(dispatch, JobRun.Status.SKIPPED_OVERLAP, "a run of this job is still running")
    if verdict.startswith("cancelled: "):
        return _cancelled(dispatch, verdict.removeprefix("cancelled: "))
    active = ActiveRun(dispatch, lock, alive)
    if not dispatch.eager:  # an eager run (tests, shell) ends before any keeper could help
        keeper.watch(active.tick)
    return active


class ActiveRun:
    """A run in progress. Its row is written once, when it ends. A run still going after
    RUNNING_ROW_AFTER seconds gets its `running` row earlier, from the process's keeper thread,
    with a liveness lease, so that the admin shows it and `recover` finds it if its worker
    dies. A worker that dies before that leaves no row; its message was not acknowledged
    (acks_late), so Celery delivers it again and that delivery is recorded."""

    def __init__(self, dispatch: Dispatch, lock: Lock | None, alive: Lock | None = None) -> None:
        self.run = dispatch.new_run(JobRun.Status.RUNNING)
        self._headers = dispatch.headers  # the Crons check-in to close
        reporting.run_started(self.run)
        self._leases: list[Lock] = [lease for lease in (lock, alive) if lease is not None]
        self._mutex = threading.Lock()  # against the keeper thread
        self.eager = dispatch.eager
        self._saved = False
        self._ended = False
        self._alive = alive is not None  # holds its liveness lease
        self._retry = 0.0  # monotonic time of the next try at the running row
        self._extend_again = 0.0  # after a failed extension: monotonic time of the next try

    def tick(self, extend: bool) -> bool:
        """The keeper's call: write the `running` row once due, extend the leases when
        `extend`; False once the run has ended."""
        with self._mutex:
            if self._ended:
                return False
            if extend or (self._extend_again and time.monotonic() >= self._extend_again):
                self._extend()
            due = timezone.now() - timedelta(seconds=RUNNING_ROW_AFTER)
            if not self._saved and self.run.started_at <= due and time.monotonic() >= self._retry:
                try:
                    if not self._alive:
                        # The lease first: a running row without one would look lost.
                        key = leases.alive_key(self.run.task_id, self.run.attempt)
                        self._leases.append(leases.hold(key, self.run.task_id))
                        self._alive = True
                    close_old_connections()  # the keeper thread's own connection
                    self.run.save(force_insert=True)
                    self._saved = True
                except (DatabaseError, redis.RedisError) as exc:
                    self._retry = time.monotonic() + ROW_RETRY_SECONDS
                    logger.warning(
                        "%s: could not write its running row (%s); trying again in %g s",
                        self.run.job, exc, ROW_RETRY_SECONDS,
                    )  # fmt: skip
            return True

    def _extend(self) -> None:
        """Extend the leases (called with the mutex held). While Redis does not answer, try
        again every second rather than a third of a lease later: once it is back, a lease that
        lapsed meanwhile is taken back before the lost-run check or another run sees it gone."""
        try:
            held = [leases.extend(lease) for lease in self._leases]
        except redis.RedisError as exc:
            if not self._extend_again:
                logger.warning("%s: could not extend its leases (%s)", self.run.job, exc)
            self._extend_again = time.monotonic() + 1
            return
        if self._extend_again:
            logger.info("%s: its leases are extended again", self.run.job)
        self._extend_again = 0.0
        for lease, ours in zip(self._leases, held, strict=True):
            if not ours:
                logger.error(
                    "%s run %s: its lease %s lapsed and is someone else's now (the lost-run "
                    "check or another run took it)",
                    self.run.job, self.run.task_id, lease.name,
                )  # fmt: skip

    def release(self) -> None:
        """Give back the run's leases (once); `finish` does it, this is for when it could not."""
        with self._mutex:
            self._ended = True
            self._release()

    def _release(self, keep: str = "") -> bool:
        """Give back the leases still held (called with the mutex held); with `keep` (a
        field), keep the run's row in Redis in the same round trip. False: Redis did not
        answer (the leases then lapse on their own)."""
        held, self._leases = self._leases, []
        try:
            leases.release(held, (lambda pipe: rows.keep(pipe, keep, self.run)) if keep else None)
        except redis.RedisError:
            logger.warning(
                "%s: could not give back its leases in Redis; they lapse within %g s",
                self.run.job, leases.lease_seconds(), exc_info=True,
            )  # fmt: skip
            return False
        return True

    def finish(
        self,
        status: str,
        *,
        result: Any = None,
        exc: BaseException | None = None,
        report: bool = False,
    ) -> JobRun:
        """Close the run: its row, then its leases given back; failures that on-call must see
        go to Sentry first (`report`); then the outcome of its Crons check-in.

        The common run, short and successful, waits for no database: its row is kept in Redis
        in the round trip that gives back its leases, and the keeper thread inserts it (with
        the rows of other runs) while the worker already takes its next message."""
        with self._mutex:
            self._ended = True
            try:
                run = self._write_final(status, result, exc, report)
            finally:
                self._release()
        reporting.close_checkin(self._headers, status)
        return run

    def _write_final(
        self, status: str, result: Any, exc: BaseException | None, report: bool
    ) -> JobRun:
        run = self.run
        if report and not self._saved:
            # The event links to the run, so the row needs its id first; the final status
            # and the event id then arrive together. Without the database, it goes without.
            try:
                run.save(force_insert=True)
                self._saved = True
            except DatabaseError as error:
                logger.warning("%s: no run id for its event (%s)", run.job, error_name(error))
        run.status = status
        run.finished_at = timezone.now()
        run.duration_seconds = (run.finished_at - run.started_at).total_seconds()
        fields = ["status", "finished_at", "duration_seconds"]
        if result is not None:
            run.result = summarize_result(result)
            fields.append("result")
        if exc is not None:
            run.error_type = error_name(exc)
            run.error_message = str(exc)[:MAX_MESSAGE]
            run.traceback = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]
            fields += ["error_type", "error_message", "traceback"]
        if report:
            earlier: list[JobRun] = []
            # Without the database, the event goes without the earlier attempts' breadcrumbs.
            with contextlib.suppress(DatabaseError):
                if run.attempt > 1:
                    earlier = list(
                        JobRun.objects.filter(
                            task_id=run.task_id, attempt__lt=run.attempt
                        ).order_by("attempt")
                    )
            run.sentry_event_id = reporting.report_run(
                run, run.error_type or status, exc, run.error_message, earlier
            )
            if run.sentry_event_id:
                fields.append("sentry_event_id")
        if status == JobRun.Status.SUCCEEDED and not (self._saved or self.eager):
            field = rows.field_for(run)
            if self._release(keep=field):
                keeper.hand_over(field, run)
                self._saved = True
                return run
        try:
            if not self._saved:
                run.save(force_insert=True)
                self._saved = True
            else:
                JobRun.objects.filter(pk=run.pk).update(**{f: getattr(run, f) for f in fields})
        except DatabaseError as error:
            # Bookkeeping never costs the job its outcome (its retry, its failure): the row
            # waits in Redis, with the leases given back in the same round trip, and the
            # lost-run check inserts it (or updates the `running` row) once the database is
            # back.
            _database_refused(run, error)
            if not self._release(keep=rows.field_for(run)):
                logger.error(
                    "%s run %s attempt %d: neither the database nor Redis took its %s row",
                    run.job, run.task_id, run.attempt, status,
                )  # fmt: skip
        return run
