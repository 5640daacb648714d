"""Run history: what the task base records, and the check that finds runs whose worker died."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduler import leases, reporting
from scheduler.models import JobRun
from scheduler.policy import POLICY_HEADER, overrides_for

logger = logging.getLogger(__name__)

MAX_MESSAGE = 2000
MAX_TRACEBACK = 8000
MAX_RESULT = 4000
# A run still going after this many seconds gets its `running` row before it ends.
RUNNING_ROW_AFTER = 1.0

# Message headers Nightshift adds when a job is published (see scheduler.signals / .beat).
SLOT_HEADER = "nightshift_slot"
NEXT_SLOT_HEADER = "nightshift_next_slot"
ENQUEUED_HEADER = "nightshift_enqueued_at"
SCHEDULE_HEADER = "periodic_task_name"  # django-celery-beat's
# A run started by hand (admin "run now"): who asked. Marks the run `manual` even though it
# carries its schedule's name (so it shares the schedule's overlap lock).
REQUESTED_BY_HEADER = "nightshift_requested_by"


def _header_time(headers: dict[str, Any], name: str) -> datetime | None:
    value = headers.get(name)
    return parse_datetime(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Dispatch:
    """Where a run came from, read from the Celery request of the executing task."""

    task_id: str
    job: str
    schedule: str
    slot: datetime | None
    next_slot: datetime | None
    enqueued_at: datetime | None
    attempt: int
    worker: str
    headers: dict[str, Any]

    @classmethod
    def from_request(cls, job: str, request: Any) -> Dispatch:
        headers = dict(request.headers or {})
        return cls(
            task_id=request.id or "",
            job=job,
            schedule=str(headers.get(SCHEDULE_HEADER) or ""),
            slot=_header_time(headers, SLOT_HEADER),
            next_slot=_header_time(headers, NEXT_SLOT_HEADER),
            enqueued_at=_header_time(headers, ENQUEUED_HEADER),
            attempt=(request.retries or 0) + 1,
            worker=request.hostname or "",
            headers=headers,
        )

    @property
    def trigger(self) -> str:
        if self.attempt > 1:
            return JobRun.Trigger.RETRY
        if self.schedule and REQUESTED_BY_HEADER not in self.headers:
            return JobRun.Trigger.SCHEDULE
        return JobRun.Trigger.MANUAL

    def policy(self, name: str, default: Any) -> Any:
        """The job's policy value `name`, unless the dispatch carries its schedule's override."""
        overrides = self.headers.get(POLICY_HEADER)
        if isinstance(overrides, dict) and overrides.get(name) is not None:
            return overrides[name]
        return default

    def deadline(self, start_deadline: float | None) -> datetime | None:
        """When a first attempt that has not started becomes stale (None: never)."""
        if self.attempt > 1:
            return None  # retries are late on purpose
        base = self.slot or self.enqueued_at
        if start_deadline is not None and base is not None:
            return base + timedelta(seconds=start_deadline)
        return self.next_slot

    def new_run(self, status: str, **fields: Any) -> JobRun:
        return JobRun(
            task_id=self.task_id,
            job=self.job,
            schedule=self.schedule,
            trigger=self.trigger,
            slot=self.slot,
            enqueued_at=self.enqueued_at,
            started_at=fields.pop("started_at", None) or timezone.now(),
            status=status,
            attempt=self.attempt,
            worker=self.worker,
            requested_by=str(self.headers.get(REQUESTED_BY_HEADER) or "")[:150],
            **fields,
        )


def record_skip(dispatch: Dispatch, status: str, message: str) -> JobRun:
    """A dispatch that was not executed: one row, final at once."""
    now = timezone.now()
    run = dispatch.new_run(status, started_at=now, finished_at=now, error_message=message)
    run.save(force_insert=True)
    logger.info("%s %s [%s]: %s", dispatch.job, status, dispatch.task_id, message)
    return run


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


class ActiveRun:
    """A run in progress. Its row is written once, when it ends; a run still going after
    RUNNING_ROW_AFTER seconds gets its `running` row earlier, from a background thread, so that
    the admin shows it and the lost-run check finds it if its worker dies.

    A worker that dies before that leaves no row, but its message was not acknowledged
    (acks_late): Celery delivers it again and that delivery is recorded. A `running` row comes
    with a liveness lease in Redis (`alive_key`), renewed while the run lasts.
    """

    def __init__(self, dispatch: Dispatch, lock_key: str | None = None) -> None:
        self.run = dispatch.new_run(JobRun.Status.RUNNING)
        self.lock_key = lock_key  # the overlap lock this run holds, if any
        self.alive_key: str | None = None
        self._lock = threading.Lock()
        self._saved = False
        self._closed = False
        self._released = False

    def _begin_release(self) -> Callable[[], None]:
        """Start giving back this run's leases (once); returns the wait for Redis's answer."""
        keys = [key for key in (self.lock_key, self.alive_key) if key]
        if self._released or not keys:
            return _nothing
        self._released = True
        return leases.release_begin(self.run.task_id, *keys)

    def release(self) -> None:
        """Give back this run's leases if `finish` did not (it failed, or never ran)."""
        with self._lock:
            self._closed = True
            self._begin_release()()

    @property
    def needs_row(self) -> bool:
        due = timezone.now() - timedelta(seconds=RUNNING_ROW_AFTER)
        return not (self._closed or self._saved) and self.run.started_at <= due

    def write_running_row(self) -> None:
        with self._lock:
            if not (self._closed or self._saved):
                # The lease first: a running row without one would look lost.
                key = leases.alive_key(self.run.task_id, self.run.attempt)
                leases.hold(key, self.run.task_id)
                self.alive_key = key
                self.run.save(force_insert=True)
                self._saved = True

    def finish(
        self,
        status: str,
        *,
        result: Any = None,
        exc: BaseException | None = None,
        report: bool = False,
    ) -> JobRun:
        """Close the run with one write; failures that on-call must see go to Sentry first."""
        with self._lock:
            self._closed = True
            run = self.run
            if report and not self._saved:
                # The event links to the run, so the row needs its id first; the final status
                # and the event id then arrive together.
                run.save(force_insert=True)
                self._saved = True
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
                earlier = (
                    JobRun.objects.filter(task_id=run.task_id, attempt__lt=run.attempt).order_by(
                        "attempt"
                    )
                    if run.attempt > 1
                    else []
                )
                run.sentry_event_id = reporting.report_run(
                    run, run.error_type or status, exc, run.error_message, earlier
                )
                if run.sentry_event_id:
                    fields.append("sentry_event_id")
            wait_for_release = self._begin_release()
            try:
                if not self._saved:
                    run.save(force_insert=True)
                    self._saved = True
                elif fields:
                    JobRun.objects.filter(pk=run.pk).update(**{f: getattr(run, f) for f in fields})
            finally:
                wait_for_release()
            return run


def _nothing() -> None:
    return None


def start_run(dispatch: Dispatch, lock_key: str | None = None, eager: bool = False) -> ActiveRun:
    active = ActiveRun(dispatch, lock_key)
    if not eager:  # an eager run (tests, shell) has no worker to keep it
        _row_writer.watch(active)
    return active


class _RowWriter:
    """Writes the `running` row of runs that last longer than RUNNING_ROW_AFTER seconds."""

    def __init__(self) -> None:
        self._active: list[ActiveRun] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def watch(self, active: ActiveRun) -> None:
        with self._lock:
            self._active.append(active)
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # After a fork the parent's thread does not exist in the child.
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._loop, name="nightshift-run-rows", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                self._active = [a for a in self._active if not a._closed]
                ready = [a for a in self._active if a.needs_row]
            for active in ready:
                try:
                    close_old_connections()  # this thread's own connection
                    active.write_running_row()
                except Exception:
                    logger.exception("could not write the running row of %s", active.run.job)


_row_writer = _RowWriter()


def hard_time_limit(app: Any, job: str) -> float | None:
    """A job's hard time limit in seconds: its own, else the project default."""
    task = app.tasks.get(job)
    limit = getattr(task, "time_limit", None) or app.conf.task_time_limit
    return float(limit) if limit else None


def mark_lost_runs(now: datetime | None = None) -> list[JobRun]:
    """Close runs still `running` whose worker stopped renewing their lease.

    A run past its job's hard time limit was killed by the pool (`timed_out`); any other was
    lost with its worker (`lost`). Each gets one Sentry event.
    """
    from config.celery import app

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
        limit = float(override) if override else hard_time_limit(app, run.job)
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
        run.sentry_event_id = reporting.report_run(
            run, kind, None, f"{run.job}: run {run.pk} {status}: {message}"
        )
        if run.sentry_event_id:
            JobRun.objects.filter(pk=run.pk).update(sentry_event_id=run.sentry_event_id)
        # A warning, not an error: the Sentry event above is the one on-call gets.
        logger.warning("run %s of %s %s: %s", run.pk, run.job, status, message)
        closed.append(run)
    return closed
