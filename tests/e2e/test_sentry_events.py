"""One occurrence, one Crons outcome; one final failure, one event, about its own run.

Real beat and worker processes send to a local Sentry endpoint (tests.sentry_server)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from devtools.redis_server import free_port
from scheduler.models import JobRun
from scheduler.sync import get_crontab
from tests.drills import PrivatePostgres, record
from tests.processes import (
    Process,
    final_run,
    manage,
    start_beat,
    start_worker,
    started_run,
    wait_for,
    wait_until_ready,
)
from tests.sentry_server import SentryServer

from .test_sentry import sentry_env

pytestmark = pytest.mark.e2e

S = JobRun.Status


def due_every_minute(name: str, job: str, kwargs: str = "{}") -> PeriodicTask:
    """An every-minute schedule last run five minutes ago: beat sends it as soon as it starts."""
    return PeriodicTask.objects.create(
        name=name,
        task=job,
        kwargs=kwargs,
        crontab=get_crontab("* * * * *"),
        last_run_at=timezone.now() - timedelta(minutes=5),
    )


def first_occurrence(server: SentryServer, slug: str) -> list[str]:
    """The statuses sent for the first check-in beat opened for `slug`, in order."""
    checkins = [c for c in server.of_type("check_in") if c.get("monitor_slug") == slug]
    if not checkins:
        return []
    first = checkins[0]["check_in_id"]
    return [c["status"] for c in checkins if c["check_in_id"] == first]


def events_about(server: SentryServer, task_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("tags", {}).get("celery_task_id") == task_id]


def assert_about_run(event: dict[str, Any], run: JobRun) -> None:
    tags = event["tags"]
    assert (tags["job"], tags["schedule"], tags["run_id"]) == (
        run.job,
        run.schedule or "-",
        str(run.pk),
    )
    assert tags["celery_task_id"] == run.task_id
    assert event["transaction"] == run.job
    context = event["contexts"]["nightshift_run"]
    assert context["admin_url"] == f"http://127.0.0.1:8000/admin/scheduler/jobrun/{run.pk}/change/"
    assert (context["run_id"], context["task_id"]) == (run.pk, run.task_id)


def test_a_retry_that_then_succeeds_closes_its_checkin_ok_without_an_error(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    due_every_minute("e2e-flaky", "tests.flaky", '{"key": "once", "failures": 1}')
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-flaky-worker", env, app="tests.e2e_app"))
    processes.append(start_beat("e2e-flaky-beat", env))

    wait_for(
        lambda: "ok" in first_occurrence(sentry_server, "e2e-flaky"),
        90,
        "the first occurrence's check-in to close",
    )
    # Attempt 1 failed and was retried: the check-in stayed open, the retry closed it.
    assert first_occurrence(sentry_server, "e2e-flaky") == ["in_progress", "in_progress", "ok"]
    # (Beat also records the slots of the five minutes before it started as `missed`.)
    runs = JobRun.objects.filter(schedule="e2e-flaky").exclude(status=S.MISSED)
    runs = runs.order_by("started_at")
    # A short success's row reaches the database just after (the keeper thread writes it).
    wait_for(lambda: runs.filter(status=S.SUCCEEDED).exists(), 20, "the retry's row")
    assert [(r.attempt, r.status) for r in runs[:2]] == [(1, S.RETRYING), (2, S.SUCCEEDED)]
    assert sentry_server.events() == []


def test_a_job_that_exhausts_its_retries_sends_one_error_checkin_and_one_event(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    due_every_minute("e2e-doomed", "tests.always_transient")  # 2 retries
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-doomed-worker", env, app="tests.e2e_app"))
    processes.append(start_beat("e2e-doomed-beat", env))

    wait_for(
        lambda: "error" in first_occurrence(sentry_server, "e2e-doomed"),
        90,
        "the first occurrence's check-in to close",
    )
    assert first_occurrence(sentry_server, "e2e-doomed") == ["in_progress"] * 3 + ["error"]
    final = wait_for(
        lambda: (
            JobRun.objects.filter(schedule="e2e-doomed", status=S.FAILED, attempt=3)
            .order_by("started_at")
            .first()
        ),
        20,
        "the final attempt's row",
    )
    event = wait_for(lambda: events_about(sentry_server, final.task_id), 20, "its event")
    assert len(event) == 1, event
    assert_about_run(event[0], final)
    assert event[0]["tags"]["trigger"] == "retry"
    assert final.sentry_event_id == event[0]["event_id"]


def test_a_job_that_logs_its_error_and_raises_sends_one_event(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    processes.append(
        start_worker("e2e-logfail-worker", sentry_env(sentry_server), app="tests.e2e_app")
    )
    task_id = app.send_task("tests.log_and_fail", kwargs={"message": "copy is damaged"}).id
    run = final_run(task_id, timeout=60)
    assert run.status == S.FAILED
    event = wait_for(sentry_server.events, 20, "its event")
    assert len(event) == 1, [e.get("message") or e.get("logentry") for e in event]
    assert_about_run(event[0], run)
    # The line it logged is a breadcrumb of that event.
    crumbs = [b.get("message") for b in event[0]["breadcrumbs"]["values"]]
    assert "giving up: %s" in crumbs or "giving up: copy is damaged" in crumbs


def pool_children(worker: Process) -> list[int]:
    """The pids of a worker's pool processes (children of its main process)."""
    pid = worker.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@pytest.mark.drill
def test_a_worker_child_killed_mid_run_sends_one_event_about_the_lost_run(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    env = sentry_env(sentry_server, NIGHTSHIFT_RUN_LEASE_SECONDS="2")
    worker = start_worker("e2e-child-killed", env, concurrency=1, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    task_id = app.send_task("tests.sleep", kwargs={"seconds": 4}).id
    lost = started_run(task_id, timeout=60)
    (child,) = pool_children(worker)
    os.kill(child, signal.SIGKILL)

    # Celery delivers the message again (acks_late): the job runs to its end.
    def redone() -> JobRun | None:
        return JobRun.objects.filter(task_id=task_id, status=S.SUCCEEDED).first()

    wait_for(redone, 90, "the redelivered run to succeed")

    # The check beat runs every minute, sent here until the first run is found lost.
    def check_and_find() -> JobRun | None:
        app.send_task("scheduler.mark_lost_runs")
        return JobRun.objects.filter(pk=lost.pk, status=S.LOST).first()

    lost = wait_for(check_and_find, 60, "the killed run marked lost", interval=1)
    events = wait_for(sentry_server.events, 20, "the lost run's event")
    # Whatever else was going to arrive (the pool's own error lines) has arrived by now: the
    # lost-run check ran after them.
    wait_for(
        lambda: JobRun.objects.filter(pk=lost.pk).exclude(sentry_event_id="").first(),
        20,
        "the event id on the run",
    )
    events = sentry_server.events()
    final_failures = JobRun.objects.filter(status__in=[S.LOST, S.FAILED, S.TIMED_OUT]).count()
    record(
        "worker child SIGKILLed mid-run: Sentry events",
        owed=1,
        rows=JobRun.objects.filter(task_id=task_id).count(),
        events_per_failure=len(events) / max(final_failures, 1),
        note=f"{len(events)} event(s) for {final_failures} final failure(s) (the lost run)",
    )
    assert final_failures == 1
    assert len(events) == 1, [e.get("logentry") or e.get("exception") for e in events]
    assert_about_run(events[0], lost)
    assert events[0]["tags"]["run_status"] == "lost"
    lost.refresh_from_db()
    assert lost.sentry_event_id == events[0]["event_id"]


def test_an_outage_is_one_issue_per_error_class_and_one_event_per_process(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    """A worker whose Redis is down and a beat whose database is down retry and log an error
    each time; Sentry gets one event per process, grouped by the error's class."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    dead_database = f"postgres://postgres@127.0.0.1:{free_port()}/nightshift"
    # Its broker is that Redis too, whatever broker the suite runs with.
    no_redis = sentry_env(sentry_server, REDIS_URL=dead_redis, BROKER_URL=dead_redis)
    worker = start_worker("e2e-no-redis", no_redis, app="tests.e2e_app")
    beat = start_beat("e2e-no-database", sentry_env(sentry_server, DATABASE_URL=dead_database))
    processes.extend([worker, beat])

    wait_for(lambda: worker.log().count("Cannot connect to") >= 3, 90, "3 broker retries")
    wait_for(lambda: beat.log().count("cannot load the schedule") >= 3, 90, "3 database retries")
    by_issue: dict[tuple[str, ...], int] = {}
    for event in wait_for(sentry_server.events, 20, "an event"):
        key = tuple(event.get("fingerprint") or ["(default)", str(event.get("logentry"))])
        by_issue[key] = by_issue.get(key, 0) + 1
    assert by_issue == {
        ("infrastructure", "redis.exceptions.ConnectionError"): 1,
        ("infrastructure", "django.db.utils.OperationalError"): 1,
    }


def test_each_occurrence_closes_its_checkin_with_its_rows_outcome(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    """A 5-second job every 2 seconds: some occurrences run, some are skipped for overlap (the
    previous run holds the lock), some expire in the queue. Skipped by policy is `ok` (a run
    that overruns is flagged by its own check-in's max runtime); expired is `error`."""
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="e2e-overlap", task="tests.sleep", kwargs='{"seconds": 5}', interval=every_2s
    )
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-overlap-worker", env, app="tests.e2e_app"))
    beat = start_beat("e2e-overlap-beat", env)
    processes.append(beat)
    runs = JobRun.objects.filter(schedule="e2e-overlap").exclude(status=S.MISSED)
    wait_for(
        lambda: (
            runs.filter(status=S.SKIPPED_OVERLAP).exists()
            and runs.filter(status=S.SUCCEEDED).exists()
        ),
        90,
        "an occurrence skipped for overlap and one that ran",
    )
    beat.stop()

    def settled() -> dict[str, str] | None:
        checkins = [
            c for c in sentry_server.of_type("check_in") if c["monitor_slug"] == "e2e-overlap"
        ]
        opened = {c["check_in_id"] for c in checkins}
        closed = {c["check_in_id"]: c["status"] for c in checkins if c["status"] != "in_progress"}
        finished = runs.exclude(status=S.RUNNING).count()
        return closed if len(closed) == len(opened) == finished else None

    outcomes = Counter(wait_for(settled, 60, "every occurrence's outcome").values())
    rows = Counter(runs.values_list("status", flat=True))
    assert rows[S.SKIPPED_OVERLAP] >= 1
    assert outcomes == Counter(
        ok=rows[S.SUCCEEDED] + rows[S.SKIPPED_OVERLAP], error=rows[S.EXPIRED]
    )
    assert sentry_server.events() == []


def test_a_backup_failing_verification_sends_one_event(
    processes: list[Process], sentry_server: SentryServer, tmp_path: Path
) -> None:
    """The backup job logs the failed verification and raises it: one event, not two."""
    extra = {"BACKUP_DIR": str(tmp_path / "backups")}
    if connection.vendor == "postgresql":
        # A pg_dump that "succeeds" but writes no archive: pg_restore --list rejects it.
        bin_dir = tmp_path / "fakebin"
        bin_dir.mkdir()
        (bin_dir / "pg_dump").write_text("#!/bin/sh\nprintf 'not a dump at all'\nexit 0\n")
        (bin_dir / "pg_dump").chmod(0o755)
        (bin_dir / "pg_restore").symlink_to(shutil.which("pg_restore") or "pg_restore")
        extra["PG_BIN_DIR"] = str(bin_dir)
    else:
        # A row breaking its table's CHECK constraint: the copy's integrity_check reports it.
        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE sentry_test_bad (x integer CHECK (x > 0))")
            cursor.execute("PRAGMA ignore_check_constraints = ON")
            cursor.execute("INSERT INTO sentry_test_bad VALUES (-1)")
            cursor.execute("PRAGMA ignore_check_constraints = OFF")
    try:
        processes.append(start_worker("e2e-backup-worker", sentry_env(sentry_server, **extra)))
        run = final_run(app.send_task("jobs.backup_database").id, timeout=180)
    finally:
        if connection.vendor != "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE sentry_test_bad")
    assert (run.status, run.error_type) == (S.FAILED, "jobs.backups.BackupVerificationError")
    events = wait_for(sentry_server.events, 20, "its event")
    assert len(events) == 1, [e.get("logentry") or e.get("exception") for e in events]
    assert_about_run(events[0], run)


# Jobs that keep the worker busy through the outage: short ones, and one long enough to have
# its `running` row written.
OUTAGE_SCHEDULES = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name="outage-noop", task="tests.noop", interval=every_2s)
PeriodicTask.objects.create(
    name="outage-sleep", task="tests.sleep", kwargs='{"seconds": 3}', interval=every_5s
)
"""


@pytest.mark.drill
def test_a_database_outage_is_one_issue_and_few_events(
    private_postgres: PrivatePostgres, processes: list[Process], sentry_server: SentryServer
) -> None:
    """PostgreSQL (the test's own) stopped for 20 s under a worker and beat running jobs:
    whatever fails reaches Sentry grouped as infrastructure, at most one event per process and
    error class (the issue counted 25 events, in several issues, for a 62 s outage)."""
    env = sentry_env(sentry_server, DATABASE_URL=private_postgres.url("nightshift"))
    private_postgres.start()
    private_postgres.create_database("nightshift")
    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "shell", "-c", OUTAGE_SCHEDULES)
    worker = start_worker("e2e-outage-worker", env, concurrency=2, app="tests.e2e_app")
    beat = start_beat("e2e-outage-beat", env)
    processes.extend([worker, beat])

    def succeeded() -> int:
        with private_postgres.connect("nightshift") as conn:
            row = conn.execute(
                "SELECT count(*) FROM scheduler_jobrun WHERE status = %s", [S.SUCCEEDED]
            ).fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: succeeded() >= 3, 90, "runs before the outage")
    private_postgres.stop()
    time.sleep(20)
    private_postgres.start()
    before = succeeded()
    wait_for(lambda: succeeded() >= before + 3, 90, "runs after the outage")
    beat.stop()
    worker.stop()  # its processes flush what they have to send as they exit

    events = sentry_server.events()
    by_issue = Counter(tuple(e.get("fingerprint") or ["(default)"]) for e in events)
    run_reports = [e for e in events if "run_id" in e.get("tags", {})]
    record(
        "PostgreSQL stopped 20 s under jobs: Sentry events",
        note=f"{len(events)} event(s) in {len(by_issue)} issue(s): {dict(by_issue)}; "
        f"{len(run_reports)} run report(s)",
    )
    assert all(key[0] == "infrastructure" for key in by_issue), by_issue
    # Beat, the worker's main process and its two pool processes: one each at most, per
    # error class, beyond the runs that failed for good (each its own event).
    assert all(n <= 4 + len(run_reports) for n in by_issue.values()), by_issue
