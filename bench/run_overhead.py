"""Throughput of no-op jobs through Nightshift's recording path versus bare Celery tasks.

One private redis-server, one database (a fresh SQLite file, or --database-url), one
`celery -A bench.app worker` (one process unless --concurrency), and a local Sentry endpoint
so the SDK is live for both. Each job is sent as beat sends it: its own schedule name and a
slot, so every recorded run claims its occurrence and takes the overlap lock. A recorded round
ends when the last run's row is in the database, not when the last job returned.

Rounds alternate bare / recorded. This machine's speed drifts by a factor of two within
minutes, so the script prints both the ratio of the best rounds and the median ratio of each
recorded round to the bare round just before it.

    .venv/bin/python bench/run_overhead.py [--jobs 1000] [--rounds 8] [--concurrency 1]
                                           [--database-url postgres://...]

Target (issue #3): recorded throughput >= 0.7 x bare, and <= 3 database queries per run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import redis_server  # noqa: E402  (needs ROOT on the path)


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--database-url", help="an empty database to use (default: temp SQLite)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="worker processes (default 1: no overlap)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="nightshift-bench-"))
    redis_port = redis_server.free_port()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "ENV_FILE": os.devnull,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "DATABASE_URL": args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}",
        "SENTRY_DSN": f"http://key@127.0.0.1:{sink.server_address[1]}/1",
        "LOG_LEVEL": "WARNING",
        "NO_PROXY": "127.0.0.1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(env)
    redis = redis_server.start(shutil.which("redis-server") or "redis-server", redis_port, tmp)
    worker = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        import django

        django.setup()
        from bench.app import app
        from scheduler.models import JobRun
        from scheduler.redis_client import client

        r = client()
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "bench.app",
                "worker",
                "--concurrency",
                str(args.concurrency),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "WARNING",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None:
                raise SystemExit(f"the benchmark worker exited at start ({worker.returncode})")
            time.sleep(0.2)

        recorded_rows = 0

        def round_(name: str, n: int) -> float:
            nonlocal recorded_rows
            r.set("bench:done", 0)
            slot = datetime.now(UTC).replace(microsecond=0)
            headers = {
                "nightshift_slot": slot.isoformat(),
                "nightshift_next_slot": (slot + timedelta(hours=1)).isoformat(),
            }
            start = time.perf_counter()
            with app.producer_or_acquire() as producer:
                for i in range(n):
                    # As if from many schedules: with several worker processes, runs of one
                    # schedule would skip each other (overlap), not take the recording path.
                    app.send_task(
                        name,
                        producer=producer,
                        headers={**headers, "periodic_task_name": f"bench-{i}"},
                    )
            # Poll gently: the benchmark must not compete with the worker for Redis.
            while int(r.get("bench:done") or 0) < n:
                time.sleep(0.05)
            if name == "bench.recorded_noop":
                recorded_rows += n
                while JobRun.objects.filter(job=name).count() < recorded_rows:
                    time.sleep(0.05)
            return n / (time.perf_counter() - start)

        round_("bench.bare_noop", 200)  # warm-up: imports, connections
        round_("bench.recorded_noop", 200)
        rates: dict[str, list[float]] = {"bench.bare_noop": [], "bench.recorded_noop": []}
        for i in range(args.rounds):
            for name, done in rates.items():
                done.append(round_(name, args.jobs))
                print(f"round {i + 1}: {name:22s} {done[-1]:8.1f} jobs/s", flush=True)
        recorded_runs = JobRun.objects.filter(job="bench.recorded_noop").count()
        succeeded = JobRun.objects.filter(job="bench.recorded_noop", status="succeeded").count()
    finally:
        if worker is not None:
            worker.terminate()  # its processes add their last query tallies as they exit
            worker.wait(timeout=30)
            queries = int(r.get("bench:queries") or 0)
            query_runs = int(r.get("bench:query_runs") or 0)
        redis.terminate()
        redis.wait(timeout=10)
        sink.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    bare, recorded = rates["bench.bare_noop"], rates["bench.recorded_noop"]
    paired = statistics.median(rec / base for base, rec in zip(bare, recorded, strict=True))
    engine = "sqlite" if not args.database_url else args.database_url.split(":", 1)[0]
    print(
        f"database: {engine}; worker processes: {args.concurrency}; "
        f"{args.rounds} rounds of {args.jobs} jobs each"
    )
    for label, done in (("bare Celery:      ", bare), ("Nightshift (rec.):", recorded)):
        print(
            f"{label}  {max(done):8.1f} jobs/s  (best round; median {statistics.median(done):.1f})"
        )
    print(f"ratio of the best:  {max(recorded) / max(bare):8.2f}  (target >= 0.70)")
    print(f"median paired ratio:{paired:8.2f}  (each recorded round / the bare round before it)")
    print(
        f"queries per run:    {queries / max(query_runs, 1):8.2f}  (target <= 3; counted "
        f"over {query_runs} runs; {recorded_runs} recorded, {succeeded} succeeded)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
