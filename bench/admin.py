"""Server time of the admin's schedule list and run list on PostgreSQL, against stock pages.

Fills an empty database with 2,000 schedules and 100,000 runs, times the schedule list, then
adds runs up to 1,000,000 and times the run list. Each page is requested in process through
Django's test client (server time: URL routing, queries, rendering; no network), best and
median of --rounds after a warm-up. The baselines, measured in the same run on the same data:
django-celery-beat's stock PeriodicTask list, a stock ModelAdmin of the runs (Django's
date hierarchy and field filters), and for the run search, the run list searching as it did
before issue 14 (Django's icontains over every run's job, schedule and error).

    createdb -h 127.0.0.1 -U postgres nightshift_bench_admin
    .venv/bin/python bench/admin.py \\
        --database-url postgres://postgres@127.0.0.1:5432/nightshift_bench_admin [--rounds 10]

--reuse: the database already holds this bench's 2,000 schedules and 1,000,000 runs (from an
earlier run): skip the filling (and the schedule list at 100,000 runs) and time the rest.

Target (issues: the admin, 14): each list and the run search under 300 ms.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.admin_setup import fill_schedules_and_runs, setup_admin_bench  # noqa: E402  (needs ROOT on the path)

SCHEDULES = 2_000
FEW_RUNS = 100_000
MANY_RUNS = 1_000_000
TARGET_MS = 300.0


def timed(client: Any, url: str, rounds: int) -> tuple[float, float]:
    """(best, median) server time of GET url in milliseconds."""
    response = client.get(url)  # warm-up: imports, template compilation, plans
    if response.status_code != 200:
        raise SystemExit(f"GET {url} answered {response.status_code}")
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return min(times), statistics.median(times)


def report(
    label: str, ours: tuple[float, float], stock: tuple[float, float], baseline: str = "stock"
) -> None:
    verdict = "met" if ours[1] < TARGET_MS else "MISSED"
    print(f"{label}")
    print(f"  Nightshift: best {ours[0]:7.1f} ms, median {ours[1]:7.1f} ms  (< 300 ms: {verdict})")
    print(f"  {baseline + ':':11} best {stock[0]:7.1f} ms, median {stock[1]:7.1f} ms")
    print(f"  ratio (Nightshift / {baseline}, medians): {ours[1] / stock[1]:.2f}")


def timed_call(fn: Any, rounds: int) -> tuple[float, float]:
    """(best, median) wall time of fn() in milliseconds, after a warm-up."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


# What the run search is asked: (what it finds, the search term).
SEARCHES = [
    ("a job", "jobs.job3"),
    ("part of a schedule's name", "s004"),
    ("a task id", "t123456"),
    ("words of many errors", "No space left"),
    ("one error message", '"run 123458 failed"'),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="keep the runs an earlier run left")
    args = parser.parse_args()
    setup_admin_bench(args.database_url, "bench.admin_urls")
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django_celery_beat.models import PeriodicTask

    from scheduler.models import JobRun
    from scheduler.timing import next_run
    from scheduler.upcoming import soonest_runs

    user = User.objects.filter(username="bench").first()
    filled = PeriodicTask.objects.filter(name__startswith="s").count() == SCHEDULES
    if args.reuse and filled and JobRun.objects.count() == MANY_RUNS and user is not None:
        print(f"reusing: {SCHEDULES} schedules, {MANY_RUNS} runs", flush=True)
        call_command("dbshell", "--", "-c", "ANALYZE")
        client = Client()
        client.force_login(user)
    else:
        if PeriodicTask.objects.exists() or JobRun.objects.exists():
            raise SystemExit("the database is not empty: give --database-url an empty database")
        client = fill_and_time_the_schedule_list(args.rounds)
    print(f"\nrun list, {JobRun.objects.count()} runs")
    report(
        "  /admin/scheduler/jobrun/ vs a stock ModelAdmin of the runs",
        timed(client, "/admin/scheduler/jobrun/", args.rounds),
        timed(client, "/stock-admin/scheduler/jobrun/", args.rounds),
    )
    report(
        "  the same, filtered to failures of one job",
        timed(client, "/admin/scheduler/jobrun/?status=failed&job=jobs.job3", args.rounds),
        timed(
            client, "/stock-admin/scheduler/jobrun/?status__exact=failed&job=jobs.job3", args.rounds
        ),
    )
    print(f"\nrun search, {JobRun.objects.count()} runs")
    for what, term in SEARCHES:
        query = urlencode({"q": term})
        report(
            f"  ?{query} ({what}) vs the search before issue 14",
            timed(client, f"/admin/scheduler/jobrun/?{query}", args.rounds),
            timed(client, f"/before-admin/scheduler/jobrun/?{query}", args.rounds),
            baseline="before",
        )

    def every_next_run() -> None:
        tasks = PeriodicTask.objects.filter(enabled=True)
        for task in tasks.select_related("crontab", "interval", "solar", "clocked"):
            next_run(task)

    print(f"\nthe health page's next runs, {SCHEDULES} enabled schedules")
    report(
        "  scheduler.upcoming.soonest_runs(10) vs timing.next_run of each schedule",
        timed_call(lambda: soonest_runs(10), args.rounds),
        timed_call(every_next_run, args.rounds),
        baseline="each",
    )

    print(f"\nschedule list again, {SCHEDULES} schedules, {JobRun.objects.count()} runs")
    report(
        "  /admin/scheduler/schedule/",
        timed(client, "/admin/scheduler/schedule/", args.rounds),
        timed(client, "/stock-admin/django_celery_beat/periodictask/", args.rounds),
    )
    return 0


def fill_and_time_the_schedule_list(rounds: int) -> Any:
    """Fill the empty database, timing the schedule list at FEW_RUNS; a logged-in client."""
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from devtools.bulk_runs import insert_runs
    from scheduler.models import JobRun

    fill_schedules_and_runs(SCHEDULES, FEW_RUNS)

    user = User.objects.create_superuser("bench", "bench@example.com", secrets.token_urlsafe())
    client = Client()
    client.force_login(user)

    print(f"\nschedule list, {SCHEDULES} schedules, {JobRun.objects.count()} runs")
    report(
        "  /admin/scheduler/schedule/ vs django-celery-beat's periodic task list",
        timed(client, "/admin/scheduler/schedule/", rounds),
        timed(client, "/stock-admin/django_celery_beat/periodictask/", rounds),
    )

    print(f"\nfilling up to {MANY_RUNS} runs ...", flush=True)
    insert_runs(MANY_RUNS - FEW_RUNS, schedules=SCHEDULES, spacing_seconds=90)
    call_command("dbshell", "--", "-c", "VACUUM ANALYZE")
    return client


if __name__ == "__main__":
    sys.exit(main())
