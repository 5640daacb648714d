"""Run history: what the task base records, and the check that finds runs whose worker died."""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    transaction,
)
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

    The common run, short and successful, waits for nothing at its end: one Redis command, whose
    reply the next admission reads, releases the run's leases and keeps its row in Redis, and
    the process's row writer thread inserts it (in batches) while the worker already takes the
    next message. A row whose writer died first is written from Redis by `write_unwritten_rows`.
    """

    def __init__(
        self, dispatch: Dispatch, lock_key: str | None = None, eager: bool = False
    ) -> None:
        self.run = dispatch.new_run(JobRun.Status.RUNNING)
        self.lock_key = lock_key  # the overlap lock this run holds, if any
        self.alive_key: str | None = None
        self.eager = eager  # run in the calling process (tests, shell): no row writer
        self._lock = threading.Lock()
        self._saved = False
        self._closed = False
        self._released = False

    def _release(self, stash: tuple[str, str] | None = None) -> bool:
        """Give back this run's leases (once), with its row to keep in Redis if `stash`;
        False when Redis could not be reached (the leases then lapse on their own)."""
        if self._released:
            return True
        self._released = True
        keys = [key for key in (self.lock_key, self.alive_key) if key]
        try:
            leases.release(self.run.task_id, keys, stash)
        except redis.RedisError:
            logger.warning(
                "%s: could not give back its leases in Redis; they lapse within %g s",
                self.run.job, settings.NIGHTSHIFT_RUN_LEASE_SECONDS, exc_info=True,
            )  # fmt: skip
            return False
        return True

    def release(self) -> None:
        """Give back this run's leases if `finish` did not (it failed, or never ran)."""
        with self._lock:
            self._closed = True
            self._release()

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
            if status == JobRun.Status.SUCCEEDED and not (self._saved or self.eager):
                # The common case: the row is kept in Redis with the release, and the row
                # writer inserts it while this process takes its next message.
                field = f"{run.task_id}:{run.attempt}:{secrets.token_hex(4)}"
                if self._release(stash=(field, row_to_json(run))):
                    _row_writer.write_finished(run, field)
                    self._saved = True
                    return run
            self._release()
            if not self._saved:
                run.save(force_insert=True)
                self._saved = True
            elif fields:
                JobRun.objects.filter(pk=run.pk).update(**{f: getattr(run, f) for f in fields})
            return run


# The row as Redis keeps it until the database has it: every column but the id, datetimes in
# full ISO 8601 (the JSON encoder of Django would cut them to milliseconds).
_ROW_FIELDS = [field for field in JobRun._meta.concrete_fields if not field.primary_key]


def row_to_json(run: JobRun) -> str:
    values = {field.attname: getattr(run, field.attname) for field in _ROW_FIELDS}
    return json.dumps(values, default=datetime.isoformat)


def row_from_json(text: str) -> JobRun:
    values = json.loads(text)
    return JobRun(
        **{f.attname: f.to_python(values[f.attname]) for f in _ROW_FIELDS if f.attname in values}
    )


def start_run(dispatch: Dispatch, lock_key: str | None = None, eager: bool = False) -> ActiveRun:
    active = ActiveRun(dispatch, lock_key, eager)
    if not eager:  # an eager run (tests, shell) has no worker to keep it
        _row_writer.watch(active)
    return active


class _Flushed(threading.Event):
    """Put in the writer's queue: set once everything queued before it is written."""

    def __init__(self, stop: bool = False) -> None:
        super().__init__()
        self.stop = stop  # then the thread closes its database connection and ends


class _RowWriter:
    """The worker process's writer of run rows, in one background thread: the `running` rows of
    runs that last longer than RUNNING_ROW_AFTER seconds, and the final rows that `finish`
    hands over, inserted in batches. Each handed-over row is also kept in Redis (sent with the
    release of its leases) until it is inserted, so neither a dead process nor a failed insert
    loses it: `write_unwritten_rows` writes what is left there."""

    BATCH = 500
    # Rows wait this long for others to share their INSERT: on a busy worker one statement
    # then carries dozens of rows, and the thread takes far less of the process's time.
    LINGER = 0.1

    def __init__(self) -> None:
        self._active: list[ActiveRun] = []
        self._finished: queue.SimpleQueue[tuple[JobRun, str] | _Flushed] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._hurry = threading.Event()  # a flush waits: no lingering
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def _ensure_thread(self) -> None:
        # Called with self._lock held.
        if self._pid != os.getpid():
            # A forked child has none of its parent's threads, nor its parent's runs.
            self._pid, self._thread = os.getpid(), None
            self._active, self._finished = [], queue.SimpleQueue()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="nightshift-run-rows", daemon=True
            )
            self._thread.start()

    def watch(self, active: ActiveRun) -> None:
        with self._lock:
            self._ensure_thread()
            self._active.append(active)

    def write_finished(self, run: JobRun, stashed_as: str) -> None:
        with self._lock:
            self._ensure_thread()
            self._finished.put((run, stashed_as))

    def flush(self, timeout: float, stop: bool = False) -> bool:
        """Wait until the rows handed over so far are written (False: not within `timeout`);
        with `stop`, the thread then closes its database connection and ends (the next row
        handed over starts another)."""
        with self._lock:
            if self._pid != os.getpid() or self._thread is None:
                return True  # nothing was handed over in this process
            self._ensure_thread()  # a thread that died leaves its queue to a new one
            flushed = _Flushed(stop)
            self._finished.put(flushed)
            self._hurry.set()
        return flushed.wait(timeout)

    def _loop(self) -> None:
        next_check = time.monotonic()
        while True:
            batch = self._take(timeout=max(0.0, next_check - time.monotonic()))
            if batch:
                self._insert(batch)
                if isinstance(batch[-1], _Flushed) and batch[-1].stop:
                    ended = self._end()
                    batch[-1].set()
                    if ended:
                        return
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 0.2
                self._write_running_rows()
                leases.drain()  # replies no later admission has read

    def _take(self, timeout: float) -> list[tuple[JobRun, str] | _Flushed]:
        """The next batch: what arrives within LINGER seconds of its first row."""
        try:
            batch = [self._finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        if not isinstance(batch[0], _Flushed):
            # Sleep rather than wait on the queue: a thread woken by every row handed over
            # would take the interpreter lock from the runs, once per run.
            self._hurry.wait(self.LINGER)
        while len(batch) < self.BATCH and not isinstance(batch[-1], _Flushed):
            try:
                batch.append(self._finished.get_nowait())
            except queue.Empty:
                break
        if isinstance(batch[-1], _Flushed):
            self._hurry.clear()  # a later flush sets it again
        return batch

    def _insert(self, batch: list[tuple[JobRun, str] | _Flushed]) -> None:
        try:
            finished = [(item[1], item[0]) for item in batch if not isinstance(item, _Flushed)]
            if finished:
                close_old_connections()  # this thread's own connection
                inserted, refused = insert_rows(finished)
                leases.unstash(inserted + refused)
                if len(inserted) + len(refused) < len(finished):
                    logger.warning(
                        "%d finished runs stay in Redis until mark_lost_runs writes them",
                        len(finished) - len(inserted) - len(refused),
                    )
        except Exception:
            logger.exception("could not write the rows of %d finished runs", len(batch))
        finally:
            for item in batch:
                if isinstance(item, _Flushed) and not item.stop:
                    item.set()

    def _end(self) -> bool:
        """End this thread, unless it has work again (then go on)."""
        connections.close_all()  # this thread's connection: it would outlive the process
        with self._lock:
            if not self._finished.empty() or any(not a._closed for a in self._active):
                return False
            self._thread = None
            return True

    def _write_running_rows(self) -> None:
        with self._lock:
            self._active = [a for a in self._active if not a._closed]
            ready = [a for a in self._active if a.needs_row]
        for active in ready:
            try:
                close_old_connections()
                active.write_running_row()
            except Exception:
                logger.exception("could not write the running row of %s", active.run.job)


_row_writer = _RowWriter()


def flush_rows(timeout: float = 10.0) -> bool:
    """Write the rows this process has handed over and close the writer's database connection
    (a worker process calls it as it exits)."""
    written = _row_writer.flush(timeout, stop=True)
    leases.drain()
    return written


def insert_rows(rows: list[tuple[str, JobRun]]) -> tuple[list[str], list[str]]:
    """Insert kept rows (field, row): in one statement, else one by one to find the rows the
    database refuses. Returns the fields (inserted, refused for good); a refused row is logged
    as an error, which Sentry receives. A row missing from both because the database could not
    be reached stays in Redis for the next attempt."""
    # Each attempt in its own transaction (a savepoint inside one): a refused statement must
    # not break the transaction around it.
    try:
        with transaction.atomic():
            JobRun.objects.bulk_create([row for _, row in rows])
        return [field for field, _ in rows], []
    except (OperationalError, InterfaceError):
        logger.warning("the database took none of %d run rows", len(rows), exc_info=True)
        return [], []
    except DatabaseError:
        pass  # the database refuses one of them
    inserted, refused = [], []
    for field, row in rows:
        try:
            with transaction.atomic():
                row.save(force_insert=True)
        except (OperationalError, InterfaceError):
            logger.warning("the database took no row of %s run %s", row.job, row.task_id)
        except DatabaseError:
            logger.exception(
                "the database refuses the row of %s run %s (%s, started %s); it is dropped",
                row.job, row.task_id, row.status, row.started_at,
            )  # fmt: skip
            refused.append(field)
        else:
            inserted.append(field)
    return inserted, refused


def write_unwritten_rows(older_than: float | None = None) -> int:
    """Insert the rows kept in Redis of runs that finished more than `older_than` seconds ago
    (default: a lease period): their process died, or the database was unreachable, before
    their insert. A row already in the database is not inserted again. Returns how many rows
    it inserted."""
    if older_than is None:
        older_than = settings.NIGHTSHIFT_RUN_LEASE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than)
    written = 0
    for kept in leases.stashed_rows():
        stale: list[tuple[str, JobRun]] = []
        unreadable: list[str] = []
        for field, text in kept:
            try:
                row = row_from_json(text)
            except (ValueError, TypeError, ValidationError):
                logger.exception("dropping an unreadable kept run row %s: %.200s", field, text)
                unreadable.append(field)
                continue
            if row.finished_at is None or row.finished_at < cutoff:
                stale.append((field, row))
        present = set(
            JobRun.objects.filter(task_id__in={row.task_id for _, row in stale}).values_list(
                "task_id", "attempt", "started_at"
            )
        )
        in_database: list[tuple[str, JobRun]] = []
        missing: list[tuple[str, JobRun]] = []
        for field, row in stale:
            known = (row.task_id, row.attempt, row.started_at) in present
            (in_database if known else missing).append((field, row))
        inserted, refused = insert_rows(missing) if missing else ([], [])
        leases.delete_stashed([*unreadable, *(f for f, _ in in_database), *inserted, *refused])
        written_now = set(inserted)
        for field, row in missing:
            if field in written_now:
                logger.warning("wrote the row of %s run %s from Redis", row.job, row.task_id)
        written += len(inserted)
    return written


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
