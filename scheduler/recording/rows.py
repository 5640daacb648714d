"""Rows of finished runs kept in Redis until the database has them (the write-behind's safety).

A short successful run's row is put in the hash UNWRITTEN_ROWS_KEY in the same round trip that
releases its leases; the keeper thread inserts it and then forgets it there. Whatever is still
in the hash a lease period later (its process died, or the database refused to answer) is
inserted by `write_unwritten` (the lost-run check), never twice. A row the database did not
take when its run ended or was skipped (an outage) is kept there too, by the run's process: the
lost-run check inserts it, or, when the run's `running` row is there, updates that row.

A kept row is known by its run's task id, attempt and start time: the database's row with the
same three is the same row.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from scheduler.models import JobRun
from scheduler.redis_client import client

logger = logging.getLogger(__name__)

UNWRITTEN_ROWS_KEY = "nightshift:unwritten-runs"

# The row as Redis keeps it: every column but the id, datetimes in full ISO 8601 (the JSON
# encoder of Django would cut them to milliseconds).
_ROW_FIELDS = [field for field in JobRun._meta.concrete_fields if not field.primary_key]


def to_json(run: JobRun) -> str:
    values = {field.attname: getattr(run, field.attname) for field in _ROW_FIELDS}
    return json.dumps(values, default=datetime.isoformat)


def from_json(text: str) -> JobRun:
    values = json.loads(text)
    return JobRun(
        **{f.attname: f.to_python(values[f.attname]) for f in _ROW_FIELDS if f.attname in values}
    )


def field_for(run: JobRun) -> str:
    """A new field to keep `run` under (its kept rows are told apart by what they hold)."""
    return f"{run.task_id}:{run.attempt}:{secrets.token_hex(4)}"


def keep(pipe: Any, field: str, run: JobRun) -> None:
    """Queue, on a pipeline, the keeping of `run` under `field`."""
    pipe.hset(UNWRITTEN_ROWS_KEY, field, to_json(run))


def keep_now(field: str, run: JobRun) -> None:
    client().hset(UNWRITTEN_ROWS_KEY, field, to_json(run))


def forget(fields: list[str]) -> None:
    if fields:
        client().hdel(UNWRITTEN_ROWS_KEY, *fields)


def insert(rows: list[tuple[str, JobRun]]) -> tuple[list[str], list[str]]:
    """Insert kept rows (field, row): in one statement, else one by one to find the rows the
    database refuses. Returns the fields (inserted, refused for good); a refused row is logged
    as an error, which Sentry receives. A row in neither list (the database could not be
    reached) stays kept for the next attempt."""
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


def _kept(chunk: int) -> Iterator[list[tuple[str, str]]]:
    rows = []
    for field, row in client().hscan_iter(UNWRITTEN_ROWS_KEY, count=chunk):
        rows.append((_text(field), _text(row)))
        if len(rows) >= chunk:
            yield rows
            rows = []
    if rows:
        yield rows


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def write_unwritten(older_than: float | None = None, chunk: int = 500) -> int:
    """Insert the kept rows of runs that finished more than `older_than` seconds ago (default:
    a lease period), and close the `running` rows whose final row is kept. A row already in
    the database is not inserted again. Returns how many rows it wrote."""
    if older_than is None:
        older_than = settings.NIGHTSHIFT_RUN_LEASE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than)
    written = 0
    for kept in _kept(chunk):
        readable: list[tuple[str, JobRun]] = []
        unreadable: list[str] = []
        for field, text in kept:
            try:
                readable.append((field, from_json(text)))
            except (ValueError, TypeError, ValidationError):
                logger.exception("dropping an unreadable kept run row %s: %.200s", field, text)
                unreadable.append(field)
        present = {
            (task_id, attempt, started_at): (pk, status)
            for task_id, attempt, started_at, pk, status in JobRun.objects.filter(
                task_id__in={row.task_id for _, row in readable}
            ).values_list("task_id", "attempt", "started_at", "pk", "status")
        }
        in_database: list[str] = []  # or refused for good
        missing: list[tuple[str, JobRun]] = []
        for field, row in readable:
            found = present.get((row.task_id, row.attempt, row.started_at))
            if found is None:
                # Not before a lease period: the keeper of a live worker may be inserting it.
                if row.finished_at is None or row.finished_at < cutoff:
                    missing.append((field, row))
            elif found[1] == JobRun.Status.RUNNING:
                # Its run's `running` row, which only the kept row's process would close.
                closed = _close(found[0], row)
                if closed is not None:
                    in_database.append(field)
                    written += closed
            else:
                in_database.append(field)
        inserted, refused = insert(missing) if missing else ([], [])
        forget([*unreadable, *in_database, *inserted, *refused])
        for field, row in missing:
            if field in inserted:
                logger.warning("wrote the row of %s run %s from Redis", row.job, row.task_id)
        written += len(inserted)
    return written


def _close(pk: int, row: JobRun) -> bool | None:
    """Give the `running` row `pk` the final values of its kept row: True when written, False
    when refused for good (logged as an error), None when the database could not be reached
    (the row stays kept)."""
    values = {field.attname: getattr(row, field.attname) for field in _ROW_FIELDS}
    try:
        with transaction.atomic():
            JobRun.objects.filter(pk=pk, status=JobRun.Status.RUNNING).update(**values)
    except (OperationalError, InterfaceError):
        logger.warning("the database took no row of %s run %s", row.job, row.task_id)
        return None
    except DatabaseError:
        logger.exception(
            "the database refuses the %s row of %s run %s; it is dropped",
            row.status, row.job, row.task_id,
        )  # fmt: skip
        return False
    logger.warning("wrote the %s row of %s run %s from Redis", row.status, row.job, row.task_id)
    return True
