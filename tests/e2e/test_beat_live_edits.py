"""Edits reach a running beat within a second, whatever path wrote them: a model save (what the
admin does), the ORM followed by update_changed(), a bare queryset.update(), a delete."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from scheduler.models import JobRun
from scheduler.timing import next_run
from tests import broker
from tests.processes import Process, child_env, start_beat, wait_for

pytestmark = pytest.mark.e2e

LIVE_WITHIN = 1.0  # seconds (the contract)


def waiting(queue: str) -> int:
    return broker.waiting(queue)


def seconds_until(probe: Callable[[], bool], timeout: float = 10) -> float:
    """Seconds from now until `probe` holds (fails past `timeout`)."""
    start = time.monotonic()
    wait_for(probe, timeout, "the edit to reach beat", interval=0.01)
    return time.monotonic() - start


def due_now(name: str, queue: str, **fields: object) -> PeriodicTask:
    """An unsaved one-off schedule that is due the moment beat sees it."""
    clocked = ClockedSchedule.objects.create(clocked_time=timezone.now() - timedelta(seconds=1))
    return PeriodicTask(
        name=name, task="tests.noop", clocked=clocked, one_off=True, queue=queue, **fields
    )


def test_creates_enables_disables_and_deletes_are_live_within_a_second(
    processes: list[Process],
) -> None:
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    ticking = PeriodicTask.objects.create(
        name="ticking", task="tests.noop", interval=every_second, queue="ticking"
    )
    beat = start_beat("live-beat", child_env())
    processes.append(beat)
    wait_for(lambda: waiting("ticking") >= 2, 30, "beat to dispatch")

    latencies = {}
    # A save, as the admin's form does (model signals fire).
    task = due_now("saved", "saved")
    task.save()
    latencies["save"] = seconds_until(lambda: waiting("saved") == 1)

    # The ORM, then update_changed(), as CONVENTIONS ask of every bulk write.
    task = due_now("orm", "orm", enabled=False)
    task.save()
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=True)
    PeriodicTasks.update_changed()
    latencies["update + update_changed"] = seconds_until(lambda: waiting("orm") == 1)

    # A bare queryset.update() that tells no one: the database's own triggers do.
    task = due_now("bare", "bare", enabled=False)
    task.save()
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=True)
    latencies["bare update"] = seconds_until(lambda: waiting("bare") == 1)

    # Disable the ticking schedule with a bare update: nothing more after a second.
    PeriodicTask.objects.filter(pk=ticking.pk).update(enabled=False)
    time.sleep(LIVE_WITHIN)
    settled = waiting("ticking")
    time.sleep(3)
    assert waiting("ticking") == settled, "beat still dispatched a disabled schedule"

    # Enable it again, then delete it.
    PeriodicTask.objects.filter(pk=ticking.pk).update(enabled=True)
    latencies["enable"] = seconds_until(lambda: waiting("ticking") > settled)
    PeriodicTask.objects.filter(pk=ticking.pk).delete()
    time.sleep(LIVE_WITHIN)
    settled = waiting("ticking")
    time.sleep(3)
    assert waiting("ticking") == settled, "beat still dispatched a deleted schedule"

    slow = {path: f"{s:.2f} s" for path, s in latencies.items() if s > LIVE_WITHIN}
    assert not slow, f"edits slower than {LIVE_WITHIN} s to reach beat: {slow}"
    # Beat read only the rows that changed, never the whole table.
    assert "beat reloaded 1 changed schedules" in beat.log()


def test_a_schedule_enabled_again_does_not_run_what_it_owed_while_disabled(
    processes: list[Process],
) -> None:
    """A daily job disabled over its slot, then enabled through the ORM 71 minutes later: its
    missed occurrence is not owed (it was disabled then); the next one is tomorrow's."""
    slot = timezone.localtime().replace(second=0, microsecond=0) - timedelta(minutes=71)
    daily = CrontabSchedule.objects.create(
        minute=str(slot.minute), hour=str(slot.hour), timezone="Asia/Shanghai"
    )
    task = PeriodicTask.objects.create(
        name="daily",
        task="tests.noop",
        crontab=daily,
        queue="daily",
        enabled=False,
        last_run_at=slot - timedelta(days=1),
    )
    beat = start_beat("enable-beat", child_env())
    processes.append(beat)
    wait_for(lambda: "Nightshift engine loaded" in beat.log(), 30, "the engine to load")
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=True)
    wait_for(lambda: "beat reloaded 1 changed schedules" in beat.log(), 5, "beat to see it")
    time.sleep(2)
    assert waiting("daily") == 0, "beat sent an occurrence that passed while it was disabled"
    assert not JobRun.objects.filter(schedule="daily").exists()
    task.refresh_from_db()
    assert next_run(task) == slot + timedelta(days=1)
