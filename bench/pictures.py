"""What the pictures cost, on PostgreSQL: the schedule list with its run strips (last 20 runs of
each of 100 schedules) against the same list without them, and the health page's runs-per-hour
count against the job-health summary computed by the same cache refresh.

Fills an empty database with 2,000 schedules and 100,000 runs, then up to 1,000,000 (43,200 of
them in the last 24 hours). Pages are requested in process through Django's test client (server
time, no network), the two variants in turn in each round so that drift in this machine's speed
hits both; best and median of --rounds. Also prints PostgreSQL's plan of the strips' query.

    createdb -h 127.0.0.1 -U postgres nightshift_bench_pictures
    .venv/bin/python bench/pictures.py \\
        --database-url postgres://postgres@127.0.0.1:5432/nightshift_bench_pictures [--rounds 15]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.admin_setup import fill_schedules_and_runs, setup_admin_bench  # noqa: E402  (needs ROOT on the path)

SCHEDULES = 2_000
FEW_RUNS = 100_000
MANY_RUNS = 1_000_000


def interleaved(
    a: Callable[[], Any], b: Callable[[], Any], rounds: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of a() and b(), called in turn, after one warm-up call of each."""
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for call, into in ((a, times[0]), (b, times[1])):
            start = time.perf_counter()
            call()
            into.append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, ours: list[float], base: list[float], base_label: str) -> None:
    print(label)
    print(f"  with:    best {min(ours):7.1f} ms, median {statistics.median(ours):7.1f} ms")
    print(f"  {base_label}: best {min(base):7.1f} ms, median {statistics.median(base):7.1f} ms")
    extra = statistics.median(ours) - statistics.median(base)
    ratio = statistics.median(ours) / statistics.median(base)
    print(f"  ratio of medians: {ratio:.2f} (+{extra:.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    setup_admin_bench(args.database_url, "bench.pictures_urls")
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_celery_beat.models import PeriodicTask

    from devtools.bulk_runs import insert_runs
    from jobs.health import job_health
    from jobs.pictures import run_hours
    from scheduler.models import JobRun

    if PeriodicTask.objects.exists() or JobRun.objects.exists():
        raise SystemExit("the database is not empty: give --database-url an empty database")

    fill_schedules_and_runs(SCHEDULES, FEW_RUNS)

    user = User.objects.create_superuser("bench", "bench@example.com", secrets.token_urlsafe())
    client = Client()
    client.force_login(user)

    def page(url: str) -> Callable[[], Any]:
        def get() -> Any:
            response = client.get(url)
            assert response.status_code == 200, url
            return response

        return get

    def lists(runs: int) -> None:
        ours, base = interleaved(
            page("/admin/scheduler/schedule/"),
            page("/plain-admin/scheduler/schedule/"),
            args.rounds,
        )
        report(
            f"\nschedule list, {SCHEDULES} schedules, {runs} runs (100 a page)",
            ours,
            base,
            "without",
        )
        with CaptureQueriesContext(connection) as captured:
            page("/admin/scheduler/schedule/")()
        (strips,) = [
            q["sql"] for q in captured if q["sql"].startswith('SELECT "scheduler_jobrun".')
        ]
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + strips)
            plan = [row[0] for row in cursor.fetchall()]
        scans = sum("jobrun_schedule_newest" in line for line in plan)
        print("  the strips' query (EXPLAIN ANALYZE, without its conditions and index scans):")
        for line in plan:
            if not any(word in line for word in ("Cond:", "Buffers:", "jobrun_schedule_newest")):
                print(f"    {line}")
        print(f"    ({scans} index scans on jobrun_schedule_newest, one per schedule shown)")

    def hours(runs: int, last_day: int) -> None:
        ours, base = interleaved(run_hours, job_health, args.rounds)
        report(
            f"\nhealth: runs per hour over 24 h, {runs} runs ({last_day} in the last 24 h)",
            ours,
            base,
            "job-health summary (same refresh)",
        )

    lists(FEW_RUNS)
    print(f"\nfilling up to {MANY_RUNS} runs ...", flush=True)
    insert_runs(MANY_RUNS - FEW_RUNS, schedules=SCHEDULES, spacing_seconds=2)
    call_command("dbshell", "--", "-c", "VACUUM ANALYZE")
    lists(JobRun.objects.count())
    day = JobRun.objects.filter(started_at__gte=run_hours()["first_hour"]).count()
    hours(JobRun.objects.count(), day)
    return 0


if __name__ == "__main__":
    sys.exit(main())
