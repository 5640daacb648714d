"""Fault drills for `celery -A config beat -S django` with a real worker: beat SIGKILLed for longer
than its slots' deadlines, and a 10-second interval created at every phase of its cycle.
Each ends with the count a user makes: the slots owed, the rows written, none lost, none twice.

The drills that stop Redis or the database are in test_beat_outages.py.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler import leases
from scheduler.models import JobRun
from tests.processes import (
    Ledger,
    Process,
    child_env,
    ledger,
    settled,
    start_beat,
    start_worker,
    wait_for,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e

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
    processes.append(worker)
    wait_until_ready(worker)
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
    if minute - created < timedelta(seconds=9):
        minute += timedelta(minutes=1)
    kill_at = max(created + timedelta(seconds=8), minute - timedelta(seconds=10))
    first = start_beat("killed-beat-1", env)
    processes.append(first)
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
    summary = "\n".join(book.summary() for book in books)
    for book in books:
        assert book.owed, summary
        assert not book.lost, f"slots with no row: {book.lost}\n{summary}"
        assert not book.twice, f"slots with two rows: {book.twice}\n{summary}"
        assert not book.strays, f"rows off the schedule's slots: {book.strays}\n{summary}"
        assert set(book.outcomes()) <= {S.SUCCEEDED, S.MISSED}, summary

    # The intervals' slots in the outage were past their deadline (the next slot) when the new
    # beat came: recorded missed, with the reason. All others ran.
    for book, every in ((books[0], 2), (books[1], 3)):
        period = timedelta(seconds=every)
        for slot in book.owed:
            run = book.outcome(slot)
            assert run is not None
            if run.status == S.MISSED:
                assert killed_at - period <= slot <= resumed_at, f"missed {slot}\n{summary}"
                assert "before its deadline" in run.error_message
        assert book.outcomes()[S.MISSED] >= 12 // every - 1, summary
    assert "beat recorded" in second.log()

    # The crontab's minute ran once, late, sent by the new beat.
    book = books[2]
    late = book.outcome(minute)
    assert late is not None and late.status == S.SUCCEEDED, summary
    assert late.started_at >= resumed_at - timedelta(seconds=1)

    # The job's own count of its executions agrees with the rows.
    executions = int(leases.client().get("tests:count:every-3s") or 0)
    assert executions == books[1].outcomes()[S.SUCCEEDED], summary


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
