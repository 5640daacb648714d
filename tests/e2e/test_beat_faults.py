"""Fault drills for `celery -A config beat -S django` with a real worker: beat SIGKILLed for longer
than its slots' deadlines, Redis stopped for 30 s during a burst, beat started while its database
is down (and stopped while it waits), and a 10-second interval created at every phase of its
cycle. Each ends with the count a user makes: the slots owed, the rows written, none lost, none
run twice.

Redis and PostgreSQL are stopped only when they are the test's own (a redis-server, a
PostgreSQL cluster started here on free ports), never the suite's or the shared ones.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from devtools import redis_server
from scheduler.models import JobRun, SchedulePolicy
from scheduler.redis_client import client as redis_client
from tests.drills import PrivatePostgres, PrivateRedis, record_ledgers
from tests.processes import (
    Ledger,
    Process,
    child_env,
    ledger,
    manage,
    settled,
    start_beat,
    start_worker,
    wait_for,
    wait_until_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.drill]

S = JobRun.Status


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - timezone.now()).total_seconds()))


def interval_ledger(task: PeriodicTask, until: datetime) -> Ledger:
    """An interval counts from its phase: the moment it was created (date_changed)."""
    task.refresh_from_db()
    every = timedelta(**{task.interval.period: task.interval.every})
    return ledger(task.name, task.date_changed + every, every, until)


def minutely_ledger(task: PeriodicTask, until: datetime) -> Ledger:
    """`* * * * *`: every whole minute after it was created."""
    task.refresh_from_db()
    first = task.date_changed.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return ledger(task.name, first, timedelta(minutes=1), until)


def test_beat_killed_past_its_slots_deadlines_leaves_one_row_per_slot(
    processes: list[Process],
) -> None:
    env = child_env()
    worker = start_worker("killed-beat-worker", env, concurrency=2, app="tests.e2e_app")
    first = start_beat("killed-beat-1", env)
    processes.extend([worker, first])
    wait_until_ready(worker)
    # Schedules created once beat leads owe nothing before they exist: no slot can pass before
    # a slow start-up, and every missed slot belongs to the kill.
    wait_for(lambda: "beat leads from" in first.log(), 30, "the first beat to lead")
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    every_3s = IntervalSchedule.objects.create(every=3, period=IntervalSchedule.SECONDS)
    each_minute = CrontabSchedule.objects.create(
        minute="*", hour="*", day_of_month="*", month_of_year="*", day_of_week="*"
    )
    two = PeriodicTask.objects.create(name="every-2s", task="tests.noop", interval=every_2s)
    three = PeriodicTask.objects.create(
        name="every-3s", task="tests.count", interval=every_3s, kwargs='{"key": "every-3s"}'
    )
    minutely = PeriodicTask.objects.create(
        name="every-minute", task="tests.noop", crontab=each_minute
    )

    # The kill is timed so that a whole minute falls while beat is down: the crontab's slot is
    # then owed during the outage but still inside its deadline (the next minute) when the new
    # beat comes, so it must run late, once, where the intervals' slots are past theirs.
    created = timezone.now()
    minute = created.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if minute - created < timedelta(seconds=9):  # a few slots under the first beat
        minute += timedelta(minutes=1)
    kill_at = max(created + timedelta(seconds=8), minute - timedelta(seconds=10))
    sleep_until(kill_at)
    assert "Sending due task every-2s" in first.log(), "the first beat never dispatched"
    killed_at = timezone.now()
    first.kill()

    time.sleep(12)  # four to six of the intervals' deadlines
    second = start_beat("killed-beat-2", env)
    processes.append(second)
    wait_for(lambda: "beat leads from" in second.log(), 30, "the new beat to lead")
    resumed_at = timezone.now()
    assert minute < resumed_at, "the crontab's minute was not in the outage"
    time.sleep(7)  # a few slots under the new beat
    second.stop()
    until = timezone.now() - timedelta(seconds=1)

    def count() -> list[Ledger]:
        return [
            interval_ledger(two, until),
            interval_ledger(three, until),
            minutely_ledger(minutely, until),
        ]

    books = settled(count, 30)
    record_ledgers("beat SIGKILLed for 12 s, past its slots' deadlines", books)
    summary = "\n".join(book.summary() for book in books)
    for book in books:
        assert book.owed, summary
        assert not book.lost, f"slots with no row: {book.lost}\n{summary}"
        assert not book.twice, f"slots with two rows: {book.twice}\n{summary}"
        assert not book.strays, f"rows off the schedule's slots: {book.strays}\n{summary}"
        assert set(book.outcomes()) <= {S.SUCCEEDED, S.MISSED, S.EXPIRED}, summary

    # The intervals' slots in the outage were past their deadline (the next slot) when the new
    # beat came: recorded missed. One the new beat sent just inside its deadline may reach the
    # worker just after it: expired. Both with the reason; all other slots ran.
    for book, every in ((books[0], 2), (books[1], 3)):
        period = timedelta(seconds=every)
        not_run = 0
        for slot in book.owed:
            run = book.outcome(slot)
            assert run is not None
            if run.status != S.SUCCEEDED:
                not_run += 1
                assert killed_at - period <= slot <= resumed_at, f"{run} {slot}\n{summary}"
                assert "before its deadline" in run.error_message, run.error_message
        assert not_run >= 12 // every - 1, summary
    assert "beat recorded" in second.log()

    # The crontab's minute ran once, late, sent by the new beat.
    book = books[2]
    late = book.outcome(minute)
    assert late is not None and late.status == S.SUCCEEDED, summary
    assert late.started_at >= resumed_at - timedelta(seconds=1)

    # The job's own count of its executions agrees with its rows (a slot sent just before the
    # count included: its row may take a moment).
    def executions_and_rows() -> tuple[int, int]:
        executions = int(redis_client().get("tests:count:every-3s") or 0)
        return executions, JobRun.objects.filter(schedule="every-3s", status=S.SUCCEEDED).count()

    settle = time.monotonic() + 10
    while len(set(executions_and_rows())) > 1 and time.monotonic() < settle:
        time.sleep(0.25)
    executions, rows = executions_and_rows()
    assert executions == rows, f"{executions} executions, {rows} rows\n{summary}"


# Seconds after a whole 10-second boundary: its start, a quarter, half, three quarters, its end.
PHASES = (0.03, 2.5, 5.0, 7.5, 9.97)


def test_a_ten_second_interval_created_at_every_phase_of_its_cycle_runs_every_slot_once(
    processes: list[Process],
) -> None:
    env = child_env()
    worker = start_worker("phase-worker", env, concurrency=2, app="tests.e2e_app")
    beat = start_beat("phase-beat", env)
    processes.extend([worker, beat])
    wait_until_ready(worker)
    wait_for(lambda: "beat leads from" in beat.log(), 30, "beat to lead")

    # Each schedule is created while beat runs, at its phase: beat learns of it from the change
    # log and must count its slots from the moment it was created, wherever that falls.
    every_10s = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    now = time.time()
    boundary = (int(now) // 10 + 1) * 10
    tasks = []
    for phase in PHASES:
        time.sleep(max(0.0, boundary + phase - time.time()))
        tasks.append(
            PeriodicTask.objects.create(
                name=f"phase-{phase}", task="tests.noop", interval=every_10s
            )
        )
    # Three slots of the last one created, four of the others.
    time.sleep(max(0.0, boundary + 41 - time.time()))
    beat.stop()
    until = timezone.now() - timedelta(seconds=1)

    books = settled(lambda: [interval_ledger(task, until) for task in tasks], 30)
    record_ledgers("a 10-s interval created at five phases of its cycle", books)
    summary = "\n".join(book.summary() for book in books)
    for task, book in zip(tasks, books, strict=True):
        assert len(book.owed) >= 3, summary
        assert not book.lost, f"{task.name}: slots with no row: {book.lost}\n{summary}"
        assert not book.twice, f"{task.name}: slots with two rows: {book.twice}\n{summary}"
        # Every row's slot is the schedule's own: date_changed + k * 10 s (k >= 1).
        assert not book.strays, (
            f"{task.name} (created {task.date_changed.isoformat()}): rows off its phase: "
            f"{[(r.slot, r.status) for r in book.strays]}\n{summary}"
        )
        assert book.outcomes() == {S.SUCCEEDED: len(book.owed)}, summary


OUTAGE = 30  # seconds


def test_redis_stopped_for_30_s_during_a_burst_leaves_one_row_per_slot(
    private_redis: PrivateRedis, processes: list[Process]
) -> None:
    # Worker and beat use the private Redis as broker and for their leases; the worker writes
    # the rows to the test database, which stays up.
    env = child_env({"REDIS_URL": private_redis.url})
    worker = start_worker("outage-worker", env, concurrency=4, app="tests.e2e_app")
    processes.append(worker)
    beat = start_beat("outage-beat", env)
    processes.append(beat)
    wait_until_ready(worker, broker_url=private_redis.url)
    wait_for(lambda: "beat leads from" in beat.log(), 30, "beat to lead")
    intervals = {
        every: IntervalSchedule.objects.create(every=every, period=IntervalSchedule.SECONDS)
        for every in (2, 3, 4, 5)
    }
    burst = [
        PeriodicTask.objects.create(
            name=f"burst-{i}", task="tests.noop", interval=intervals[2 + i % 4]
        )
        for i in range(20)
    ]
    # Its slots may start up to 120 s late: those due during the outage must be sent once
    # Redis is back, and run. Overlap allowed: the late ones arrive together.
    with transaction.atomic():
        patient = PeriodicTask.objects.create(
            name="patient", task="tests.noop", interval=intervals[3]
        )
        SchedulePolicy.objects.create(periodic_task=patient, start_deadline=120, overlap="allow")
    wait_for(lambda: "Sending due task patient" in beat.log(), 30, "beat to dispatch")
    time.sleep(4)  # the burst under way

    down_at = timezone.now()
    private_redis.stop()
    time.sleep(OUTAGE)
    restart_at = timezone.now()
    private_redis.start()
    up_at = timezone.now()

    # Beat leads again and the worker is back (it reconnects on its own backoff, up to ten
    # seconds after Redis is) once a slot due after the outage has run.
    wait_for(
        lambda: JobRun.objects.filter(schedule="patient", slot__gt=up_at, status=S.SUCCEEDED),
        90,
        "a slot due after the outage to run",
    )
    back_at = timezone.now()
    time.sleep(3)  # the late slots' runs
    beat.stop()
    until = timezone.now() - timedelta(seconds=1)

    books = settled(lambda: [interval_ledger(t, until) for t in [*burst, patient]], 30)
    record_ledgers("Redis stopped for 30 s during a 21-schedule burst", books)
    summary = "\n".join(book.summary() for book in books)
    for book in books:
        assert not book.lost, f"{book.schedule}: slots with no row: {book.lost}\n{summary}"
        assert not book.twice, f"{book.schedule}: slots with two rows: {book.twice}\n{summary}"
        assert not book.strays, f"{book.schedule}: rows off its slots: {book.strays}\n{summary}"
        # A slot ran; or beat could not send it before its deadline (missed); or the worker,
        # back later than Redis, got it after its deadline (expired). Both with the reason.
        assert set(book.outcomes()) <= {S.SUCCEEDED, S.MISSED, S.EXPIRED}, summary
        for slot in book.owed:
            run = book.outcome(slot)
            assert run is not None
            if run.status != S.SUCCEEDED:
                assert down_at - timedelta(seconds=5) <= slot <= back_at, f"{run}\n{summary}"
                assert "deadline" in run.error_message, run.error_message
    # The burst's slots in the outage were past their deadlines (their next slot) by its end.
    missed = [
        run.error_message
        for book in books[:-1]
        for run in map(book.outcome, book.owed)
        if run is not None and run.status == S.MISSED
    ]
    assert len(missed) >= 20 * (OUTAGE // 5), summary
    # Those due while beat still held its lease were refused by the broker and retried; those
    # due after it had to give the lead up were never tried. Each row says which.
    assert any(m.startswith("the broker refused it") for m in missed), summary
    assert any(m.startswith("not sent before its deadline") for m in missed), summary

    # The patient schedule's slots in the outage were sent after it, and ran.
    book = books[-1]
    in_outage = [slot for slot in book.owed if down_at <= slot <= up_at]
    assert len(in_outage) >= OUTAGE // 3 - 1, summary
    assert book.outcomes() == {S.SUCCEEDED: len(book.owed)}, summary
    for slot in in_outage:
        run = book.outcome(slot)
        assert run is not None and run.started_at >= restart_at, summary


# What an operator does once the database is there: a schedule, as the admin would save it.
CREATE_SCHEDULE = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.create(name="after-the-outage", task="tests.noop", interval=every_2s)
"""


def test_beat_started_while_its_database_is_down_waits_for_it_then_dispatches(
    private_postgres: PrivatePostgres, processes: list[Process]
) -> None:
    env = child_env({"DATABASE_URL": private_postgres.url("nightshift")})
    beat = start_beat("no-database-beat", env)
    processes.append(beat)
    # Nothing listens on the database's port yet.
    failed = re.compile(
        r"beat cannot load the schedule: the database does not answer \(.+?\); retrying in \d+ s",
        re.DOTALL,  # the driver's message spans lines
    )
    wait_for(lambda: failed.search(beat.log()), 30, "beat to say it cannot load the schedule")
    time.sleep(1)
    assert beat.popen.poll() is None, "beat exited instead of waiting for its database"

    # The database comes: the server starts, then the database is created and migrated (beat
    # meanwhile finds no database, then missing tables: it keeps waiting).
    private_postgres.start()
    private_postgres.create_database("nightshift")
    manage(env, "migrate", "--no-input", "-v0")
    worker = start_worker("no-database-worker", env, concurrency=2, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    manage(env, "shell", "-c", CREATE_SCHEDULE)
    wait_for(lambda: "Nightshift engine loaded" in beat.log(), 60, "beat to load the schedule")

    def succeeded() -> int:
        with private_postgres.connect("nightshift") as conn:
            row = conn.execute(
                "SELECT count(*) FROM scheduler_jobrun WHERE schedule = %s AND status = %s",
                ["after-the-outage", S.SUCCEEDED],
            ).fetchone()
        return int(row[0]) if row else 0

    wait_for(lambda: succeeded() >= 3, 60, "three runs of the schedule")
    beat.stop()
    until = timezone.now() - timedelta(seconds=1)

    def count() -> list[Ledger]:
        with private_postgres.connect("nightshift") as conn:
            created = conn.execute(
                "SELECT date_changed FROM django_celery_beat_periodictask WHERE name = %s",
                ["after-the-outage"],
            ).fetchone()
            rows = conn.execute(
                "SELECT slot, status, error_message FROM scheduler_jobrun WHERE schedule = %s "
                "ORDER BY slot, id",
                ["after-the-outage"],
            ).fetchall()
        assert created is not None
        phase = created[0]
        assert isinstance(phase, datetime)
        runs = [
            JobRun(schedule="after-the-outage", slot=slot, status=status, error_message=error)
            for slot, status, error in rows
        ]
        every = timedelta(seconds=2)
        return [ledger("after-the-outage", phase + every, every, until, runs)]

    [book] = settled(count, 30)
    record_ledgers("beat started while its PostgreSQL is down", [book])
    summary = book.summary()
    assert not book.lost, f"slots with no row: {book.lost}\n{summary}"
    assert not book.twice, f"slots with two rows: {book.twice}\n{summary}"
    assert not book.strays, summary
    # Slots due before beat had loaded its schedule (if its backoff made it that late) are
    # recorded missed; one sent just inside its deadline may start after it (expired). Both
    # with the reason.
    assert set(book.outcomes()) <= {S.SUCCEEDED, S.MISSED, S.EXPIRED}, summary
    for run in map(book.outcome, book.owed):
        assert run is not None
        assert run.status == S.SUCCEEDED or "deadline" in run.error_message, summary
    assert book.outcomes()[S.SUCCEEDED] >= 2, summary


def test_beat_waiting_for_its_database_stops_at_sigterm(processes: list[Process]) -> None:
    # Nothing listens there: beat waits for its database, as at a boot where it comes first.
    url = f"postgres://postgres@127.0.0.1:{redis_server.free_port()}/nightshift"
    beat = start_beat("waiting-beat", child_env({"DATABASE_URL": url}))
    processes.append(beat)
    wait_for(lambda: "beat cannot load the schedule" in beat.log(), 30, "beat to wait")

    # What `systemctl stop`, `docker stop` or Ctrl-C sends: it must not wait for the database.
    beat.popen.send_signal(signal.SIGTERM)
    try:
        beat.popen.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("beat waiting for its database ignored SIGTERM")
