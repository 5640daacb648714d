"""A worker SIGKILLed mid-run: the run is marked lost, never stuck, and its lock frees itself.
SIGKILLed after a run, before its row was inserted: the row is written from Redis."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from config.celery import app
from scheduler.models import JobRun
from scheduler.recording import leases, rows
from scheduler.redis_client import client as redis_client
from tests.drills import record
from tests.processes import (
    Process,
    child_env,
    start_worker,
    started_run,
    wait_for,
    wait_until_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.drill]

S = JobRun.Status
LEASE = "2"  # seconds; production default is 60


def test_killed_worker_leaves_a_lost_run_and_no_stuck_lock(processes: list[Process]) -> None:
    env = child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": LEASE})
    doomed = start_worker("doomed-worker", env, app="tests.e2e_app")
    processes.append(doomed)
    task_id = app.send_task("tests.sleep", kwargs={"seconds": 60}).id
    run = started_run(task_id)
    assert redis_client().exists(leases.lock_key("tests.sleep", ""))

    doomed.kill()
    time.sleep(float(LEASE) * 2)  # past the lease: nobody renews it any more
    assert not redis_client().exists(leases.lock_key("tests.sleep", "")), "lock outlived worker"

    # The check that beat runs every minute, run here by a fresh worker.
    survivor = start_worker("survivor-worker", env, app="tests.e2e_app")
    processes.append(survivor)
    app.send_task("scheduler.mark_lost_runs")
    lost = wait_for(
        lambda: JobRun.objects.filter(pk=run.pk, status=S.LOST).first(), 30, "the run marked lost"
    )
    written = JobRun.objects.filter(task_id=task_id).count()
    record(
        "whole worker SIGKILLed mid-run",
        owed=1,
        rows=written,
        lost=1 - min(written, 1),
        twice=JobRun.objects.filter(task_id=task_id, status=S.SUCCEEDED).count(),
        note="its row says lost, with the worker's name; the lock frees itself",
    )
    assert lost.error_type == "RunLost"
    assert "doomed-worker@" in lost.error_message
    assert lost.finished_at is not None

    # The job is not blocked: the next run takes the lock and succeeds.
    next_id = app.send_task("tests.sleep", kwargs={"seconds": 0}).id
    done = wait_for(
        lambda: JobRun.objects.filter(task_id=next_id, status=S.SUCCEEDED).first(),
        30,
        "the next run to succeed",
    )
    assert done.worker.startswith("survivor-worker@")


def test_a_worker_killed_before_inserting_a_finished_runs_row_loses_no_row(
    processes: list[Process],
) -> None:
    env = child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": LEASE})
    doomed = start_worker("doomed-writer", env, concurrency=1, app="tests.e2e_app")
    processes.append(doomed)
    wait_until_ready(doomed)
    r = redis_client()
    with transaction.atomic():
        # The database takes no run row until this transaction ends (SQLite: this transaction
        # holds the write lock; PostgreSQL: the table lock below).
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {JobRun._meta.db_table} IN SHARE MODE")
        task_id = app.send_task(
            "tests.count", kwargs={"key": "once"}, headers={"periodic_task_name": "every-minute"}
        ).id
        wait_for(lambda: r.get("tests:count:once"), 30, "the job to run")
        wait_for(lambda: r.hlen(rows.UNWRITTEN_ROWS_KEY), 30, "its row kept in Redis")
        wait_for(lambda: r.hlen("unacked") == 0, 30, "its message to be acknowledged")
        doomed.kill()  # the row writer is still waiting for the database
    assert not JobRun.objects.filter(task_id=task_id).exists()
    assert not r.exists(leases.lock_key("tests.count", "every-minute")), "released at the end"

    time.sleep(float(LEASE))  # the check writes kept rows older than a lease period
    survivor = start_worker("survivor-worker", env, app="tests.e2e_app")
    processes.append(survivor)
    app.send_task("scheduler.mark_lost_runs")
    run = wait_for(
        lambda: JobRun.objects.filter(task_id=task_id).first(), 30, "the row written from Redis"
    )
    executions = int(r.get("tests:count:once") or 0)
    written = JobRun.objects.filter(task_id=task_id).count()
    record(
        "worker SIGKILLed before inserting a finished run's row",
        owed=1,
        rows=written,
        lost=1 - min(written, 1),
        twice=max(executions - 1, 0),
    )
    assert (run.status, run.result, run.schedule) == (
        S.SUCCEEDED,
        {"executions": 1},
        "every-minute",
    )
    assert run.worker.startswith("doomed-writer@")
    assert run.finished_at is not None and run.duration_seconds is not None
    assert r.get("tests:count:once") == b"1", "acknowledged, so not run again"
    assert JobRun.objects.filter(task_id=task_id).count() == 1
    wait_for(lambda: not r.exists(rows.UNWRITTEN_ROWS_KEY), 10, "Redis to forget the row")


def test_a_hung_database_does_not_let_a_running_jobs_leases_lapse(
    processes: list[Process],
) -> None:
    """The keeper thread extends leases and writes rows: a database that does not answer for
    several lease periods must not stop the extensions (the lock would free a second run, and
    the lost-run check would close a live one)."""
    env = child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": LEASE})
    worker = start_worker("hung-db-worker", env, concurrency=1, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    r = redis_client()
    lock = leases.lock_key("tests.sleep", "")
    with transaction.atomic():
        # No run row can be written until this transaction ends (as in the test above).
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {JobRun._meta.db_table} IN SHARE MODE")
        else:
            JobRun.objects.filter(pk=0).update(job="")  # SQLite: take the write lock
        task_id = app.send_task("tests.sleep", kwargs={"seconds": 8}).id
        wait_for(lambda: r.exists(lock), 30, "the run to take its lock")
        held_from = time.monotonic()
        while time.monotonic() - held_from < 3 * float(LEASE):
            assert r.exists(lock), "the lock lapsed while the database hung"
            time.sleep(0.2)
    run = wait_for(
        lambda: JobRun.objects.filter(task_id=task_id, status=S.SUCCEEDED).first(),
        30,
        "the run to finish",
    )
    assert JobRun.objects.filter(task_id=task_id).count() == 1
    assert run.duration_seconds is not None and run.duration_seconds >= 8
    assert not r.exists(lock), "released at the end"
