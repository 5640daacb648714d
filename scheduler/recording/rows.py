"""Rows of finished runs kept in Redis until the database has them (the write-behind's safety).

A short successful run's row is put in the hash UNWRITTEN_ROWS_KEY in the same round trip that
releases its leases; the keeper thread inserts it and then forgets it there. Whatever is still
in the hash a lease period later (its process died, or the database refused to answer) is
inserted by `write_unwritten` (the lost-run check), never twice.
"""

from __future__ import annotations

import json
import logging
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


def keep(pipe: Any, field: str, run: JobRun) -> None:
    """Queue, on a pipeline, the keeping of `run` under `field`."""
    pipe.hset(UNWRITTEN_ROWS_KEY, field, to_json(run))


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
    a lease period). A row already in the database is not inserted again. Returns how many
    rows it inserted."""
    if older_than is None:
        older_than = settings.NIGHTSHIFT_RUN_LEASE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than)
    written = 0
    for kept in _kept(chunk):
        stale: list[tuple[str, JobRun]] = []
        unreadable: list[str] = []
        for field, text in kept:
            try:
                row = from_json(text)
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
        inserted, refused = insert(missing) if missing else ([], [])
        forget([*unreadable, *(f for f, _ in in_database), *inserted, *refused])
        for field, row in missing:
            if field in inserted:
                logger.warning("wrote the row of %s run %s from Redis", row.job, row.task_id)
        written += len(inserted)
    return written
