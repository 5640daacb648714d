"""`celery -A tests.e2e_app worker`: the project's Celery app plus jobs that exist for tests.

The jobs use the project's task base (JobTask) like every real job; their behaviour is steered by
arguments and by counters in the suite's private Redis.
"""

from __future__ import annotations

import logging
import time

from django.db import connection

from config.celery import app
from scheduler.redis_client import client as redis_client

__all__ = ["app"]

logger = logging.getLogger(__name__)


@app.task(name="tests.sleep")
def sleep_job(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


@app.task(name="tests.sleep_allow_overlap", overlap="allow")
def sleep_allow_overlap_job(seconds: float) -> dict[str, float]:
    time.sleep(seconds)
    return {"slept": seconds}


@app.task(name="tests.fail")
def fail_job(message: str, db_password: str = "") -> None:
    raise ValueError(message)


@app.task(name="tests.flaky", max_retries=3, retry_backoff=1, retry_jitter=False)
def flaky_job(key: str, failures: int) -> dict[str, int]:
    """Fails with a transient error the first `failures` times it runs for `key`."""
    attempt = int(redis_client().incr(f"tests:flaky:{key}"))
    if attempt <= failures:
        raise ConnectionError(f"upstream unavailable (attempt {attempt})")
    return {"attempts": attempt}


@app.task(name="tests.log_and_fail")
def log_and_fail_job(message: str) -> None:
    """Logs its error, then raises it (as the backup job does when a copy fails verification)."""
    logger.error("giving up: %s", message)
    raise RuntimeError(message)


@app.task(name="tests.always_transient", max_retries=2, retry_backoff=1, retry_jitter=False)
def always_transient_job() -> None:
    raise TimeoutError("the upstream never answers")


@app.task(name="tests.slow", soft_time_limit=1, time_limit=5)
def slow_job(seconds: float) -> None:
    try:
        time.sleep(seconds)
    finally:
        # Clean-up runs when the soft limit interrupts the job.
        redis_client().set("tests:slow:cleaned", "yes")


@app.task(name="tests.noop")
def noop_job(n: int = 0) -> int:
    return n


@app.task(name="tests.count")
def count_job(key: str) -> dict[str, int]:
    """Counts its executions under `key` in the suite's Redis."""
    return {"executions": int(redis_client().incr(f"tests:count:{key}"))}


@app.task(
    name="tests.count_in_db", overlap="allow", max_retries=30, retry_backoff=1, retry_backoff_max=4
)
def count_in_db_job(key: str, seconds: float = 0.0) -> dict[str, int]:
    """Asks the database something (as most jobs do), runs `seconds` more, then counts its
    execution under `key`: the count is of executions that got past the database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    time.sleep(seconds)
    return {"executions": int(redis_client().incr(f"tests:count:{key}"))}


@app.task(name="tests.fail_first")
def fail_first_job(key: str) -> dict[str, int]:
    """Fails (not a transient error: no retry) the first time it runs for `key`, then succeeds."""
    calls = int(redis_client().incr(f"tests:calls:{key}"))
    if calls == 1:
        raise ValueError(f"the first call for {key} fails")
    return {"calls": calls}


@app.task(name="tests.count_then_sleep")
def count_then_sleep_job(key: str, seconds: float) -> dict[str, int]:
    """Counts its start under `key` in the suite's Redis, then sleeps `seconds`."""
    started = int(redis_client().incr(f"tests:started:{key}"))
    time.sleep(seconds)
    return {"started": started}
