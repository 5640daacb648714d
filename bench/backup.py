"""Wall time and worker memory of the backup job versus a bare `pg_dump -Fc` of the same database.

Creates, once, the PostgreSQL database `nightshift_bench_backup` (migrated, plus a table of
generated run-log rows: hex ids, numbers, text, JSON; compressible like real data, not zeros)
of at least --size-mb MB. Then rounds alternate a bare `pg_dump -Fc -f FILE` and the backup job
(jobs.backups.backup_database + apply_retention, as the task runs them) in a child Python
process; the best round of each is compared. The job's figure is its own wall time inside the
child (a worker has Django loaded already); the child's total is printed too. Memory is the
child Python process's peak RSS (VmHWM); pg_dump/pg_restore's peak is printed separately.

    .venv/bin/python bench/backup.py [--rounds 3] [--size-mb 500]
                                     [--server postgres://postgres@127.0.0.1:5432]

Targets (issue: database backups): job wall time <= 1.15 x bare pg_dump; worker peak RSS
< 150 MB, independent of database size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "nightshift_bench_backup"
BATCH_ROWS = 500_000


def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def child(target_dir: str) -> int:
    """Run the backup job once, as a worker would, and report its time and memory as JSON."""
    import django

    django.setup()
    from jobs.backups import apply_retention, backup_database

    rss_before = _vm_kb("VmRSS")
    start = time.perf_counter()
    result = backup_database(Path(target_dir))
    apply_retention()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "size_bytes": result.size_bytes,
                "rss_before_kb": rss_before,
                "peak_rss_kb": _vm_kb("VmHWM"),
                "tools_peak_rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                "backup_id": result.backup_id,
                "path": str(result.path),
            }
        )
    )
    return 0


def ensure_database(server: str, size_mb: int, env: dict[str, str]) -> int:
    """Create and fill the bench database unless it is already big enough; return its size."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            print(f"creating database {DB_NAME}", flush=True)
            admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    with psycopg.connect(f"{server}/{DB_NAME}", autocommit=True) as db:
        db.execute(
            """CREATE TABLE IF NOT EXISTS bench_run_log (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL,
                worker text NOT NULL,
                level text NOT NULL,
                message text NOT NULL,
                duration_ms double precision NOT NULL,
                attrs jsonb NOT NULL)"""
        )
        size_sql = "SELECT pg_database_size(current_database())"

        def size() -> int:
            row = db.execute(size_sql).fetchone()
            assert row is not None
            return int(row[0])

        while size() < size_mb * 1024 * 1024:
            row = db.execute("SELECT coalesce(max(id), 0) FROM bench_run_log").fetchone()
            first = int(row[0]) + 1 if row else 1
            print(f"  filling: {size() / 2**20:.0f} MB so far", flush=True)
            db.execute(
                """INSERT INTO bench_run_log (at, worker, level, message, duration_ms, attrs)
                SELECT now() - make_interval(secs => g),
                       'celery@worker-' || (g %% 37),
                       (ARRAY['debug', 'info', 'info', 'warning', 'error'])[1 + g %% 5],
                       'job ' || md5(g::text) || ' finished in ' || (random() * 900)::int
                           || ' ms; result ' || md5(random()::text)
                           || CASE WHEN g %% 5 = 0 THEN ' Traceback: ' || repeat(md5(g::text), 3)
                              ELSE '' END,
                       random() * 1000,
                       jsonb_build_object('run', g, 'attempt', 1 + g %% 3,
                                          'token', md5((g * 7)::text), 'ok', g %% 5 <> 0)
                FROM generate_series(%s::bigint, %s::bigint) AS g""",
                [first, first + BATCH_ROWS - 1],
            )
        db.execute("VACUUM ANALYZE bench_run_log")
        return size()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=500, help="minimum database size")
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--child", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)

    env = {
        **{k: v for k, v in os.environ.items() if k != "SENTRY_DSN"},
        "ENV_FILE": os.devnull,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"{args.server}/{DB_NAME}",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    db_size = ensure_database(args.server, args.size_mb, env)

    import django

    django.setup()
    from django.db import connection

    from jobs.backups import pg_binary, pg_env

    pg_dump = pg_binary("pg_dump")
    pg_environment = pg_env(connection.settings_dict)
    connection.close()

    tmp = Path(tempfile.mkdtemp(prefix="nightshift-bench-backup-"))
    bare_times: list[float] = []
    job_times: list[float] = []
    reports: list[dict[str, Any]] = []
    try:
        for i in range(args.rounds):
            out = tmp / "bare.dump"
            start = time.perf_counter()
            subprocess.run([pg_dump, "-Fc", "-f", str(out)], env=pg_environment, check=True)
            bare_times.append(time.perf_counter() - start)
            bare_size = out.stat().st_size
            out.unlink()
            print(f"round {i + 1}: bare pg_dump -Fc   {bare_times[-1]:7.2f} s", flush=True)

            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(tmp / "backups")],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            total = time.perf_counter() - start
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            report["child_total"] = total
            reports.append(report)
            job_times.append(report["seconds"])
            print(
                f"round {i + 1}: backup job         {report['seconds']:7.2f} s "
                f"(child process {total:.2f} s)",
                flush=True,
            )
            Path(report["path"]).unlink()
            from jobs.models import Backup

            Backup.objects.filter(pk=report["backup_id"]).delete()
            connection.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bare, job = min(bare_times), min(job_times)
    peak = max(r["peak_rss_kb"] for r in reports) / 1024
    before = max(r["rss_before_kb"] for r in reports) / 1024
    tools = max(r["tools_peak_rss_kb"] for r in reports) / 1024
    print(f"database: {DB_NAME}, {db_size / 2**20:.0f} MB; {os.cpu_count()} CPUs")
    print(
        f"dump size:         bare {bare_size / 2**20:7.1f} MB, "
        f"job {reports[-1]['size_bytes'] / 2**20:7.1f} MB"
    )
    print(f"bare pg_dump -Fc:  {bare:7.2f} s (best of {args.rounds})")
    print(f"backup job:        {job:7.2f} s (best of {args.rounds}; dump, SHA-256, fsync, verify)")
    print(f"ratio:             {job / bare:7.3f}  (target <= 1.15)")
    print(f"worker peak RSS:   {peak:7.1f} MB  (target < 150; {before:.1f} MB with Django loaded)")
    print(f"pg_dump/pg_restore peak RSS: {tools:.1f} MB (child processes, not the worker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
