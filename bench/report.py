"""The daily report over 1,000,000 run rows: how long `daily_report()` takes for the busiest day.

Fills a database with run rows spread over --days days and --jobs jobs (the busiest day gets
twice the others' share), then times the report of that day, best of --rounds, each emailed
(force=True) to Django's in-memory mail backend, so nothing leaves the machine. The baseline,
measured in the same run, is one pass over that day's runs (count and sum of durations): the
least any report must read.

    .venv/bin/python bench/report.py [--rows 1000000] [--days 7] [--jobs 20] [--rounds 3]
                                     [--database-url URL]

--days 1 puts every row in the reported day (the report then reads 1,000,000 runs).
--reuse with --database-url: the database holds the runs of an earlier run with the same
--rows and --days; they are kept (loading them again takes half a minute or more).

--database-url must name an empty database (default: a fresh SQLite file), e.g. for PostgreSQL:

    dropdb -h 127.0.0.1 -U postgres --if-exists nightshift_bench_report
    createdb -h 127.0.0.1 -U postgres nightshift_bench_report
    .venv/bin/python bench/report.py \
        --database-url postgres://postgres@127.0.0.1:5432/nightshift_bench_report

Target (issue: jobs.daily_report): under 2 s over 1,000,000 run rows.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_SECONDS = 2.0
BATCH = 50_000
# (status, share of runs, has a duration): roughly what a busy site records.
OUTCOMES = [
    ("succeeded", 0.900, True),
    ("failed", 0.030, True),
    ("timed_out", 0.010, True),
    ("lost", 0.005, False),
    ("skipped_overlap", 0.030, False),
    ("skipped_duplicate", 0.010, False),
    ("expired", 0.005, False),
    ("retrying", 0.008, True),
    ("running", 0.002, False),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="an empty database to use (default: temp SQLite)")
    parser.add_argument("--reuse", action="store_true", help="keep the runs an earlier run left")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nightshift-bench-report-"))
    os.environ.update(
        {
            "ENV_FILE": os.devnull,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
            "EMAIL_URL": "memorymail://",  # Django's locmem backend: no mail leaves the process
            "REPORT_RECIPIENTS": "bench@example.com",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    try:
        return run(args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core import mail
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count, Sum
    from django.utils import timezone

    from jobs.models import Report
    from jobs.reports import daily_report, report_window
    from scheduler.models import JobRun

    call_command("migrate", verbosity=0)
    reuse = args.reuse and JobRun.objects.count() == args.rows
    if JobRun.objects.exists() and not reuse:
        print("the database already holds runs: give --database-url an empty database")
        return 2

    # Days in the past (a report covers complete days only); the busiest is in the middle.
    first = date.today() - timedelta(days=args.days + 1)
    if reuse:
        oldest = JobRun.objects.order_by("started_at").values_list("started_at", flat=True)[0]
        first = timezone.localtime(oldest, timezone.get_default_timezone()).date()
    busiest = first + timedelta(days=args.days // 2)
    start = time.perf_counter()
    if reuse:
        print(f"reusing the {args.rows:,} runs in the database")
    else:
        insert_runs(connection, JobRun, rows(args, first, busiest, connection, JobRun))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # as autovacuum would after a bulk load
            cursor.execute(f"VACUUM ANALYZE {JobRun._meta.db_table}")
        else:  # as SQLite's automatic checkpoints would have done, a few pages at a time
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    inserted = time.perf_counter() - start

    window_start, window_end = report_window(busiest)
    day_runs = JobRun.objects.filter(started_at__gte=window_start, started_at__lt=window_end)

    def best(fn: Any) -> tuple[float, list[float]]:
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times), times

    day_count = day_runs.count()  # warm-up: the pages a report needs, the connection
    baseline, _ = best(lambda: day_runs.aggregate(Count("pk"), Sum("duration_seconds")))
    figure, rounds = best(lambda: daily_report(busiest, force=True))
    data = Report.objects.get(day=busiest).data
    engine = connection.vendor
    print(f"database: {engine}; {args.rows:,} runs over {args.days} days and {args.jobs} jobs")
    print(f"insert:   {inserted:6.1f} s (not part of the figure)")
    print(f"busiest day {busiest}: {day_count:,} runs")
    for i, seconds in enumerate(rounds, 1):
        print(f"round {i}:  daily report {seconds:6.3f} s")
    print(f"baseline (one pass over the day's runs): {baseline:6.3f} s")
    print(
        f"daily report, best of {args.rounds}: {figure:6.3f} s  "
        f"(target < {TARGET_SECONDS:.0f} s: {figure / TARGET_SECONDS:.2f} of it; "
        f"{figure / baseline:.1f} x baseline)"
    )
    print(
        f"report says: {data['totals']['runs']:,} runs, {data['failures']['total']:,} failures, "
        f"{len(data['jobs'])} jobs; emails sent: {len(getattr(mail, 'outbox', []))}"
    )
    ok = data["totals"]["runs"] == day_count and figure < TARGET_SECONDS
    return 0 if ok else 1


def rows(
    args: argparse.Namespace, first: date, busiest: date, connection: Any, model: Any
) -> Iterator[list[Any]]:
    """Row values in the order of `columns(model)`, as the database driver takes them."""
    from django.utils import timezone

    rng = random.Random(42)  # noqa: S311 (reproducible data, not secrets)
    tz = timezone.get_default_timezone()
    days = [first + timedelta(days=i) for i in range(args.days)]
    weights = [2 if day == busiest else 1 for day in days]
    midnights = [datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC) for d in days]
    # A few jobs run very often (heartbeat-like), most rarely: Zipf-like shares.
    jobs = [f"bench.job_{i:02d}" for i in range(args.jobs)]
    job_weights = [1 / (i + 1) for i in range(args.jobs)]
    statuses = [status for status, _, _ in OUTCOMES]
    timed = {status for status, _, has_duration in OUTCOMES if has_duration}
    shares = [share for _, share, _ in OUTCOMES]
    adapt = connection.ops.adapt_datetimefield_value
    fields = columns(model)
    constant = {
        f.attname: f.get_db_prep_save(f.get_default(), connection) for f in fields
    }  # every column a run row does not set itself
    # Rows arrive in time order, as a run history does: the table is clustered by started_at.
    starts = sorted(
        midnight + timedelta(seconds=rng.random() * 86400)
        for midnight in rng.choices(midnights, weights, k=args.rows)
    )
    picks_job = rng.choices(jobs, job_weights, k=args.rows)
    picks_status = rng.choices(statuses, shares, k=args.rows)
    for i in range(args.rows):
        started = starts[i]
        at = adapt(started)
        status = picks_status[i]
        duration = rng.lognormvariate(0.0, 1.5) if status in timed else None
        failed = status in ("failed", "timed_out", "lost")
        values = {
            **constant,
            "task_id": f"bench-{i}",
            "job": picks_job[i],
            "schedule": picks_job[i].replace("bench.", "bench-"),
            "trigger": "schedule",
            "slot": at,
            "started_at": at,
            "finished_at": adapt(started + timedelta(seconds=duration)) if duration else None,
            "duration_seconds": duration,
            "status": status,
            "worker": "celery@bench",
            "error_type": "bench.BenchError" if failed else "",
            "error_message": f"run {i} failed: the benchmark says so" if failed else "",
        }
        yield [values[f.attname] for f in fields]


def columns(model: Any) -> list[Any]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


def insert_runs(connection: Any, model: Any, values: Iterator[list[Any]]) -> None:
    """Bulk load: COPY on PostgreSQL, executemany in one transaction on SQLite."""
    from django.db import transaction

    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f.column) for f in columns(model))
    if connection.vendor == "postgresql":
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy,
        ):
            for row in values:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns(model))
    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        while batch := list(islice(values, BATCH)):
            raw.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", batch)  # noqa: S608


if __name__ == "__main__":
    raise SystemExit(main())
