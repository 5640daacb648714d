"""Which schedules changed: a change log the database itself fills, and the feed beat reads.

Triggers on django-celery-beat's tables (and on SchedulePolicy) append the id of every
PeriodicTask whose row, timing row or policy is inserted, updated or deleted to
`scheduler_schedulechange`, whatever wrote it: the admin, the ORM, `queryset.update()`,
`bulk_create()`, raw SQL. Beat's own write-back of `last_run_at` / `total_run_count` is left out
(the update trigger names every other column), so dispatching never looks like an edit.

Beat polls the log for ids above its watermark and reloads only those rows. On PostgreSQL ids
are allotted before commit, so a transaction can commit a lower id after a higher one is read:
the feed keeps a gap open for GAP_WAIT seconds before it gives up on it (a rolled-back id).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import NotSupportedError, ProgrammingError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_celery_beat.models import PeriodicTask

from scheduler.models import ScheduleChange

logger = logging.getLogger(__name__)

LOG_TABLE = "scheduler_schedulechange"
GAP_WAIT = 10.0
KEEP = timedelta(hours=1)
_TIMING_TABLES = {
    "crontab_id": "django_celery_beat_crontabschedule",
    "interval_id": "django_celery_beat_intervalschedule",
    "solar_id": "django_celery_beat_solarschedule",
    "clocked_id": "django_celery_beat_clockedschedule",
}
# Written by beat on every dispatch: not an edit.
_BEAT_COLUMNS = {"last_run_at", "total_run_count"}


def _triggers(conn: BaseDatabaseWrapper) -> list[tuple[str, str, str, str]]:
    """(name, table, event, `SELECT <task id>, {now} [FROM ...]`) for every trigger."""
    tasks = PeriodicTask._meta.db_table
    q = conn.ops.quote_name
    columns = sorted(
        q(f.column) for f in PeriodicTask._meta.concrete_fields if f.column not in _BEAT_COLUMNS
    )
    update_of = "UPDATE OF " + ", ".join(columns)
    policy = "scheduler_schedulepolicy"
    triggers = [
        ("nightshift_task_ins", tasks, "INSERT", "SELECT NEW.id, {now}"),
        ("nightshift_task_upd", tasks, update_of, "SELECT NEW.id, {now}"),
        ("nightshift_task_del", tasks, "DELETE", "SELECT OLD.id, {now}"),
        ("nightshift_policy_ins", policy, "INSERT", "SELECT NEW.periodic_task_id, {now}"),
        ("nightshift_policy_upd", policy, "UPDATE", "SELECT NEW.periodic_task_id, {now}"),
        ("nightshift_policy_del", policy, "DELETE", "SELECT OLD.periodic_task_id, {now}"),
    ]
    for column, table in _TIMING_TABLES.items():
        name = f"nightshift_{column.removesuffix('_id')}_upd"
        select = f"SELECT id, {{now}} FROM {tasks} WHERE {column} = NEW.id"  # noqa: S608
        triggers.append((name, table, "UPDATE", select))
    return triggers


def install(conn: BaseDatabaseWrapper | None = None) -> None:
    """Create (or re-create) the triggers; idempotent. Called by a migration, after every
    migrate (a SQLite table rebuild drops its triggers) and when beat starts."""
    conn = conn or connection
    insert = f"INSERT INTO {LOG_TABLE} (task_id, changed_at) "
    with conn.cursor() as cursor:
        for name, table, event, select in _triggers(conn):
            if conn.vendor == "postgresql":
                body = insert + select.format(now="clock_timestamp()")
                cursor.execute(
                    f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ "
                    f"BEGIN {body}; RETURN NULL; END $$ LANGUAGE plpgsql"
                )
                cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                cursor.execute(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            elif conn.vendor == "sqlite":
                body = insert + select.format(now="strftime('%Y-%m-%d %H:%M:%f', 'now')")
                cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
                cursor.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {body}; END")
            else:
                raise NotImplementedError(f"schedule change triggers for {conn.vendor}")


def missing(conn: BaseDatabaseWrapper | None = None) -> list[str]:
    """The names of the triggers the database lacks."""
    conn = conn or connection
    with conn.cursor() as cursor:
        if conn.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        present = {row[0] for row in cursor.fetchall()}
    return [name for name, *_ in _triggers(conn) if name not in present]


def ensure() -> None:
    """At beat start: put missing triggers back (a restored dump, a table rebuilt by hand).
    A database user that may not create them gets a log line naming the fix."""
    lacking = missing()
    if not lacking:
        return
    try:
        with transaction.atomic():
            install()
    except (ProgrammingError, NotSupportedError) as exc:
        logger.error(
            "the schedule change triggers %s are missing and beat may not create them (%s): "
            "edits reach beat only when it restarts; run `python manage.py migrate` as the "
            "schema owner to put them back",
            ", ".join(lacking), exc,
        )  # fmt: skip
    else:
        logger.warning("schedule change triggers %s were missing: installed", ", ".join(lacking))


@dataclass(frozen=True)
class Change:
    task_ids: set[int]
    # The newest change time per task: slots before it were not owed by a schedule enabled then.
    changed_at: dict[int, datetime]


class Feed:
    """The ids of schedules changed since the last poll, each change read once."""

    def __init__(self) -> None:
        newest = ScheduleChange.objects.order_by("-id").values_list("id", flat=True).first()
        self.floor = newest or 0
        self._seen: set[int] = set()
        self._gaps: dict[int, float] = {}
        table = connection.ops.quote_name(ScheduleChange._meta.db_table)
        self._sql = f"SELECT id, task_id, changed_at FROM {table} WHERE id > %s ORDER BY id"  # noqa: S608

    def poll(self) -> Change:
        # Plain SQL: four times a second, the ORM's building of this query was most of beat's
        # idle CPU.
        with connection.cursor() as cursor:
            cursor.execute(self._sql, [self.floor])
            rows = cursor.fetchall()
        change = Change(set(), {})
        for pk, task_id, stored_at in rows:
            if pk in self._seen:
                continue
            changed_at = _aware(stored_at)
            self._seen.add(pk)
            change.task_ids.add(task_id)
            if changed_at is not None:
                known = change.changed_at.get(task_id)
                change.changed_at[task_id] = max(known, changed_at) if known else changed_at
        self._advance()
        return change

    def _advance(self) -> None:
        now = time.monotonic()
        top = max(self._seen, default=self.floor)
        while self.floor < top:
            expected = self.floor + 1
            if expected in self._seen:
                self._seen.discard(expected)
            elif now - self._gaps.setdefault(expected, now) < GAP_WAIT:
                return  # maybe a transaction that has not committed yet
            else:
                self._gaps.pop(expected, None)
            self.floor = expected


def _aware(value: datetime | str | None) -> datetime | None:
    """A changed_at as the plain cursor returns it: aware (PostgreSQL), or UTC without a zone,
    as a datetime or a text (SQLite)."""
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


def trim(now: datetime | None = None) -> int:
    """Forget changes older than KEEP (beat has long read them); returns how many."""
    cutoff = (now or timezone.now()) - KEEP
    deleted, _ = ScheduleChange.objects.filter(changed_at__lt=cutoff).delete()
    return deleted
