"""The daily report: yesterday's runs, failures, backups and database size, stored and emailed.

Percentiles use the nearest-rank method on both engines: of a job's n runs with a duration,
sorted ascending, pX is the value at rank ceil(X/100 * n). PostgreSQL's percentile_disc is
exactly that; SQLite finds the same rank in SQL too (see _sqlite_percentiles).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Aggregate, Count, FloatField, Q, QuerySet
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.timesince import timesince

from jobs.models import Backup, Report
from scheduler.models import JobRun
from scheduler.presentation import human_duration
from scheduler.reporting import run_admin_url

logger = logging.getLogger(__name__)

PERCENTILES = {"p50": 0.5, "p95": 0.95}
SUCCEEDED = (JobRun.Status.SUCCEEDED,)
FAILED = JobRun.FINAL_ERRORS
SKIPPED = (JobRun.Status.SKIPPED_OVERLAP, JobRun.Status.SKIPPED_DUPLICATE, JobRun.Status.EXPIRED)
RETRIED = (JobRun.Status.RETRYING,)
RUNNING = (JobRun.Status.RUNNING,)
CANCELLED = (JobRun.Status.CANCELLED,)  # stopped in the admin: neither a failure nor a skip
COUNTS = ("runs", "succeeded", "failed", "skipped", "retried", "running", "cancelled")

# The email lists the newest failures only: a job failing every minute must not bury the rest.
MAX_FAILURES = 50
MAX_ERROR_MESSAGE = 300
TOP_TABLES = 10
# An exact count(*) of a huge table can take minutes; past this, PostgreSQL's estimate is used.
COUNT_TIMEOUT_MS = 5000
# Backups run daily: one missed night is tolerated, two are shown as a problem.
BACKUP_STALE_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class DailyReportResult:
    report_id: int
    day: date
    emailed_to: list[str]
    # Why emailed_to is empty: "" (it was sent), "already emailed" or "no recipients".
    not_emailed_because: str = ""


def report_window(day: date) -> tuple[datetime, datetime]:
    """[00:00, 24:00) of `day` in the project's time zone (Asia/Shanghai)."""
    tz = timezone.get_default_timezone()
    return (
        datetime.combine(day, time.min, tzinfo=tz),
        datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz),
    )


def default_day() -> date:
    """Yesterday in the project's time zone."""
    return timezone.localdate(timezone=timezone.get_default_timezone()) - timedelta(days=1)


def report_recipients() -> list[str]:
    """REPORT_RECIPIENTS, or the ADMINS addresses when that is empty."""
    if settings.REPORT_RECIPIENTS:
        return [str(address) for address in settings.REPORT_RECIPIENTS]
    # ADMINS holds (name, address) pairs; Django 6 also allows plain addresses.
    return [a if isinstance(a, str) else str(a[1]) for a in settings.ADMINS]


def daily_report(day: date | None = None, force: bool = False) -> DailyReportResult:
    """Build and store the report of `day` (default: yesterday in Asia/Shanghai); email it once."""
    day = day or default_day()
    today = timezone.localdate(timezone=timezone.get_default_timezone())
    if day >= today:
        raise ValueError(
            f"cannot report on {day.isoformat()}: the report covers a complete day, "
            f"so the day must be before today ({today.isoformat()}, {settings.TIME_ZONE})"
        )
    now = timezone.now()
    data = build_report_data(day, now)
    html, text = render_report(data)
    report, _ = Report.objects.update_or_create(
        day=day, defaults={"created_at": now, "data": data, "html": html, "text": text}
    )
    logger.info("daily report %s stored (%d runs, %d failures)", day, *_totals(data))

    recipients = report_recipients()
    if not recipients:
        logger.warning("daily report %s not emailed: REPORT_RECIPIENTS and ADMINS are empty", day)
        return DailyReportResult(report.pk, day, [], "no recipients")
    if report.emailed_at is not None and not force:
        logger.info("daily report %s was already emailed at %s", day, report.emailed_at)
        return DailyReportResult(report.pk, day, [], "already emailed")

    message = EmailMultiAlternatives(
        subject=report_subject(data),
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(html, "text/html")
    # A failure propagates: the stored report keeps emailed_at empty, so a retry sends it.
    message.send()
    Report.objects.filter(pk=report.pk).update(
        emailed_at=timezone.now(), recipients=", ".join(recipients)
    )
    logger.info("daily report %s emailed to %d recipients", day, len(recipients))
    return DailyReportResult(report.pk, day, recipients)


def _totals(data: dict[str, Any]) -> tuple[int, int]:
    return int(data["totals"]["runs"]), int(data["failures"]["total"])


def report_subject(data: dict[str, Any]) -> str:
    failures = int(data["failures"]["total"])
    what = {0: "no failures", 1: "1 failure"}.get(failures, f"{failures:,} failures")
    return f"Nightshift daily report {data['day']}: {what}"


# --- Figures --------------------------------------------------------------------------------


def build_report_data(day: date, now: datetime) -> dict[str, Any]:
    """The report's figures as JSON-ready data; every aggregate is computed in the database."""
    start, end = report_window(day)
    runs = JobRun.objects.filter(started_at__gte=start, started_at__lt=end)
    jobs = job_figures(runs, start, end)
    totals = {key: sum(job[key] for job in jobs) for key in COUNTS}
    previous = (
        Report.objects.filter(day__lt=day).order_by("-day").values_list("data", flat=True).first()
    )
    return {
        "day": day.isoformat(),
        "time_zone": settings.TIME_ZONE,
        "window": [start.isoformat(), end.isoformat()],
        "generated_at": timezone.localtime(now).isoformat(),
        "totals": totals,
        "jobs": jobs,
        "failures": failure_list(runs),
        "backup": backup_status(now),
        "database": database_figures(previous),
    }


class _PercentileDisc(Aggregate):
    """PostgreSQL's percentile_disc: the nearest-rank percentile, NULLs ignored."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def job_figures(runs: QuerySet[JobRun], start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Per job: counts by outcome and duration percentiles (one query; on SQLite, two)."""

    def count(statuses: Sequence[str]) -> Count:
        return Count("pk", filter=Q(status__in=statuses))

    query = (
        runs.order_by()
        .values("job")
        .annotate(
            runs=Count("pk"),
            succeeded=count(SUCCEEDED),
            failed=count(FAILED),
            skipped=count(SKIPPED),
            retried=count(RETRIED),
            running=count(RUNNING),
            cancelled=count(CANCELLED),
        )
    )
    postgres = connection.vendor == "postgresql"
    if postgres:
        query = query.annotate(
            **{name: _PercentileDisc("duration_seconds", p) for name, p in PERCENTILES.items()}
        )
    jobs = [dict(row) for row in query.order_by("job")]
    if not postgres:
        percentiles = _sqlite_percentiles(start, end)
        for job in jobs:
            job.update(percentiles.get(job["job"], dict.fromkeys(PERCENTILES)))
    return jobs


def _sqlite_percentiles(start: datetime, end: datetime) -> dict[str, dict[str, float | None]]:
    """Nearest-rank percentiles per job on SQLite, which has no percentile function.

    The day's durations are sorted once into a temporary table, so that its rowids are the
    ranks: a job's value at rank ceil(p * n) is one lookup away. Over 250,000 runs this takes
    half the time of ROW_NUMBER() OVER (PARTITION BY job ...), SQLite's window functions being
    slow; the ranks are the ones PostgreSQL's percentile_disc uses.
    """
    temp = "nightshift_report_durations"

    def rank(fraction: float) -> str:  # ceil(fraction * n) for n > 0, without ceil()
        x = f"({fraction!r} * g.n)"
        return f"(CAST({x} AS INTEGER) + ({x} > CAST({x} AS INTEGER)))"

    picks = ", ".join(
        f"(SELECT v FROM temp.{temp} WHERE rowid = g.first - 1 + {rank(fraction)}) AS {name}"  # noqa: S608
        for name, fraction in PERCENTILES.items()
    )
    table = connection.ops.quote_name(JobRun._meta.db_table)
    params = [connection.ops.adapt_datetimefield_value(value) for value in (start, end)]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS temp.{temp}")
        # Rows go in in ORDER BY order into an empty table: rowids 1..N follow it.
        cursor.execute(
            f"""
            CREATE TEMP TABLE {temp} AS
            SELECT job, duration_seconds AS v FROM {table}
            WHERE started_at >= %s AND started_at < %s AND duration_seconds IS NOT NULL
            ORDER BY job, duration_seconds
            """,  # noqa: S608 (names are constants, values are parameters)
            params,
        )
        try:
            cursor.execute(
                f"""
                SELECT g.job, {picks}
                FROM (SELECT job, MIN(rowid) AS first, COUNT(*) AS n
                      FROM temp.{temp} GROUP BY job) AS g
                """  # noqa: S608
            )
            return {
                row[0]: dict(zip(PERCENTILES, row[1:], strict=True)) for row in cursor.fetchall()
            }
        finally:
            cursor.execute(f"DROP TABLE temp.{temp}")


def failure_list(runs: QuerySet[JobRun]) -> dict[str, Any]:
    """The day's final failures, newest first, at most MAX_FAILURES of them."""
    failures = runs.filter(status__in=FAILED).order_by("-started_at", "-id")
    shown = [
        {
            "run_id": run.pk,
            "job": run.job,
            "schedule": run.schedule,
            "status": run.status,
            "started_at": timezone.localtime(run.started_at).isoformat(),
            "error_type": run.error_type,
            "error_message": _truncate(run.error_message, MAX_ERROR_MESSAGE),
            "url": run_admin_url(run.pk),
        }
        for run in failures.only(
            "pk", "job", "schedule", "status", "started_at", "error_type", "error_message"
        )[:MAX_FAILURES]
    ]
    total = len(shown) if len(shown) < MAX_FAILURES else failures.count()
    return {"total": total, "shown": shown, "more": total - len(shown)}


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def backup_status(now: datetime) -> dict[str, Any]:
    """The newest verified backup, and the newest backup if it is newer and unverified."""
    verified = Backup.objects.filter(verified=True).order_by("-created_at", "-id").first()
    newest = Backup.objects.order_by("-created_at", "-id").first()
    unverified = newest if newest is not None and not newest.verified else None
    return {
        "latest_verified": _backup(verified, now) if verified else None,
        "newer_unverified": (
            {**_backup(unverified, now), "verification": unverified.verification}
            if unverified is not None
            else None
        ),
    }


def _backup(backup: Backup, now: datetime) -> dict[str, Any]:
    return {
        "id": backup.pk,
        "name": str(backup),
        "path": backup.path,
        "created_at": timezone.localtime(backup.created_at).isoformat(),
        "age_seconds": (now - backup.created_at).total_seconds(),
        "size_bytes": backup.size_bytes,
    }


def database_figures(previous: dict[str, Any] | None) -> dict[str, Any]:
    """Total size and the largest tables with their row counts, compared with `previous`."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            size, tables = _postgres_tables(cursor)
        elif connection.vendor == "sqlite":
            size, tables = _sqlite_tables(cursor)
        else:
            size, tables = None, []
    before = {
        t["name"]: t["rows"]
        for t in ((previous or {}).get("database") or {}).get("tables", [])
        if t.get("rows") is not None
    }
    for table in tables:
        earlier = before.get(table["name"])
        rows = table["rows"]
        table["rows_change"] = rows - earlier if rows is not None and earlier is not None else None
    return {"engine": connection.vendor, "size_bytes": size, "tables": tables}


def _postgres_tables(cursor: CursorWrapper) -> tuple[int, list[dict[str, Any]]]:
    cursor.execute("SELECT pg_database_size(current_database())")
    size = int(cursor.fetchone()[0])
    cursor.execute(
        """
        SELECT n.nspname, c.relname, pg_total_relation_size(c.oid) AS size, c.reltuples
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = ANY (current_schemas(false))
        ORDER BY size DESC, c.relname
        LIMIT %s
        """,
        [TOP_TABLES],
    )
    largest = cursor.fetchall()
    cursor.execute("SELECT current_schema(), current_setting('statement_timeout')")
    schema, timeout = cursor.fetchone()
    tables = []
    # Exact counts: a day's change is small next to the total, and the planner's estimate
    # (reltuples) moves by more than that. A count that takes too long falls back to it.
    with transaction.atomic():
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(COUNT_TIMEOUT_MS)])
        for namespace, name, table_size, estimate in largest:
            qualified = f"{connection.ops.quote_name(namespace)}.{connection.ops.quote_name(name)}"
            try:
                with transaction.atomic():  # a cancelled count must not abort the others
                    cursor.execute(f"SELECT count(*) FROM {qualified}")  # noqa: S608
                    rows: int | None = int(cursor.fetchone()[0])
                exact = True
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) != "57014":  # query_canceled
                    raise
                logger.warning(
                    "counting %s took over %d ms: using its estimate", name, COUNT_TIMEOUT_MS
                )
                rows, exact = (int(estimate) if estimate >= 0 else None), False
            tables.append(
                {
                    "name": name if namespace == schema else f"{namespace}.{name}",
                    "size_bytes": int(table_size),
                    "rows": rows,
                    "rows_exact": exact,
                }
            )
        # SET LOCAL lasts until the outermost transaction ends, which may be the caller's.
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [timeout])
    return size, tables


def _sqlite_tables(cursor: CursorWrapper) -> tuple[int, list[dict[str, Any]]]:
    cursor.execute("PRAGMA page_count")
    pages = int(cursor.fetchone()[0])
    cursor.execute("PRAGMA page_size")
    size = pages * int(cursor.fetchone()[0])
    try:
        # dbstat (one row per b-tree with aggregate = 1) exists only when SQLite was built
        # with SQLITE_ENABLE_DBSTAT_VTAB; indexes count towards their table.
        cursor.execute(
            """
            SELECT m.tbl_name, SUM(s.pgsize) AS size
            FROM dbstat AS s JOIN sqlite_master AS m ON m.name = s.name
            WHERE s.aggregate = 1 AND substr(m.tbl_name, 1, 7) <> 'sqlite_'
            GROUP BY m.tbl_name
            ORDER BY size DESC, m.tbl_name
            LIMIT %s
            """,
            [TOP_TABLES],
        )
        largest: list[tuple[str, int | None]] = [(name, int(n)) for name, n in cursor.fetchall()]
    except OperationalError:
        cursor.execute(
            "SELECT name FROM sqlite_master "
            "WHERE type = 'table' AND substr(name, 1, 7) <> 'sqlite_'"
        )
        largest = [(name, None) for (name,) in cursor.fetchall()]
    tables: list[dict[str, Any]] = []
    for name, table_size in largest:
        # No estimates in SQLite, and count(*) walks the smallest b-tree of the table.
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(name)}")  # noqa: S608
        rows = int(cursor.fetchone()[0])
        tables.append({"name": name, "size_bytes": table_size, "rows": rows, "rows_exact": True})
    if any(table_size is None for _, table_size in largest):  # no sizes: the most rows instead
        tables = sorted(tables, key=lambda t: (-t["rows"], t["name"]))[:TOP_TABLES]
    return size, tables


# --- Rendering ------------------------------------------------------------------------------


def render_report(data: dict[str, Any]) -> tuple[str, str]:
    """The report as HTML (for the email and the admin) and as plain text."""
    context = _context(data)
    # Times render in the project's zone even where a request activated another one.
    with timezone.override(timezone.get_default_timezone()):
        return (
            render_to_string("jobs/daily_report.html", context),
            render_to_string("jobs/daily_report.txt", context),
        )


def _context(data: dict[str, Any]) -> dict[str, Any]:
    generated_at = datetime.fromisoformat(data["generated_at"])
    jobs = [
        {**job, **{name: human_duration(job[name]) for name in PERCENTILES}} for job in data["jobs"]
    ]
    failures = data["failures"]
    backup = data["backup"]
    database = data["database"]
    return {
        "subject": report_subject(data),
        "day": date.fromisoformat(data["day"]),
        "time_zone": data["time_zone"],
        "generated_at": generated_at,
        "totals": data["totals"],
        "jobs": jobs,
        "failures": [
            {
                **failure,
                "started_at": datetime.fromisoformat(failure["started_at"]),
                "status": JobRun.Status(failure["status"]).label,
            }
            for failure in failures["shown"]
        ],
        "failures_total": failures["total"],
        "failures_more": failures["more"],
        "backup": _backup_context(backup["latest_verified"], generated_at),
        "unverified": _backup_context(backup["newer_unverified"], generated_at),
        "database": {
            "engine": database["engine"],
            "size": _size(database["size_bytes"]),
            "tables": [
                {
                    "name": t["name"],
                    "size": _size(t["size_bytes"]),
                    "rows": "—" if t["rows"] is None else f"{t['rows']:,}",
                    "estimate": not t["rows_exact"],
                    "change": "—" if t["rows_change"] is None else f"{t['rows_change']:+,}",
                }
                for t in database["tables"]
            ],
        },
    }


def _backup_context(backup: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if backup is None:
        return None
    created_at = datetime.fromisoformat(backup["created_at"])
    return {
        **backup,
        "created_at": created_at,
        "age": timesince(created_at, now).replace("\xa0", " "),
        "stale": backup["age_seconds"] > BACKUP_STALE_AFTER.total_seconds(),
        "size": _size(backup["size_bytes"]),
    }


def _size(size_bytes: int | None) -> str:
    # filesizeformat joins number and unit with a no-break space; plain text wants a space.
    return "—" if size_bytes is None else str(filesizeformat(size_bytes)).replace("\xa0", " ")
