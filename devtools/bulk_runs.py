"""Fill the run history with many rows fast, in SQL (bulk_create of a million takes minutes)."""

from __future__ import annotations

from django.db import connection

_COLUMNS = (
    "task_id, job, schedule, trigger, started_at, finished_at, duration_seconds, status, "
    "attempt, worker, requested_by, error_type, error_message, traceback, sentry_event_id, "
    "cancelled_by"
)
_STATUSES = ["succeeded", "succeeded", "succeeded", "failed", "skipped_overlap"]


def insert_runs(
    count: int, jobs: int = 20, schedules: int = 2000, spacing_seconds: int = 2
) -> None:
    """`count` runs, one every `spacing_seconds` back from now, over `jobs` jobs and `schedules`."""
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in _STATUSES) + "]"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO scheduler_jobrun ({_COLUMNS}) "  # noqa: S608 (constants only)
                "SELECT 't' || g, 'jobs.job' || (g %% %s), 's' || lpad((g %% %s)::text, 4, '0'), "
                "'schedule', now() - g * make_interval(secs => %s), "
                "now() - g * make_interval(secs => %s) + interval '1 second', 1.0 + g %% 7, "
                f"({statuses})[1 + g %% {len(_STATUSES)}], 1, 'celery@bench', '', '', '', '', '', "
                "'' FROM generate_series(1, %s) AS g",
                [jobs, schedules, spacing_seconds, spacing_seconds, count],
            )
        else:
            cases = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(_STATUSES))
            stamp = "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (n * %s{}) || ' seconds')"
            cursor.execute(
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "  # noqa: S608
                f"INSERT INTO scheduler_jobrun ({_COLUMNS}) "
                "SELECT 't' || n, 'jobs.job' || (n %% %s), 's' || substr('000' || (n %% %s), -4), "
                f"'schedule', {stamp.format('')}, {stamp.format(' - 1')}, "
                f"1.0 + n %% 7, CASE n %% {len(_STATUSES)} {cases} END, "
                "1, 'celery@bench', '', '', '', '', '', '' FROM g",
                [count, jobs, schedules, spacing_seconds, spacing_seconds],
            )
