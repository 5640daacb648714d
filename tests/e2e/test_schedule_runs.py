"""Real `celery -A config worker` and `celery -A config beat -S django` on the test database."""

from __future__ import annotations

import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from jobs.models import WorkerHeartbeat
from tests.processes import Process, child_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.e2e


def heartbeat_runs(hostname_prefix: str) -> int:
    row = WorkerHeartbeat.objects.filter(hostname__startswith=hostname_prefix).first()
    return row.runs if row else 0


def test_beat_runs_a_schedule_created_in_the_database_and_stops_when_it_is_disabled(
    processes: list[Process],
) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="e2e-heartbeat", task="jobs.heartbeat", interval=every_2s
    )
    env = child_env()
    processes.append(start_worker("e2e-worker", env))
    processes.append(start_beat("e2e-beat", env))

    # Several runs prove beat keeps dispatching, not just once at start-up.
    wait_for(lambda: heartbeat_runs("e2e-worker@") >= 3, 60, "three heartbeats from the worker")
    row = WorkerHeartbeat.objects.get(hostname__startswith="e2e-worker@")
    assert row.last_seen_at is not None

    # The admin's edit: disable it. Beat notices without a restart (it polls every <= 5 s).
    task.refresh_from_db()
    task.enabled = False
    task.save()
    time.sleep(8)  # beat's poll interval plus a run already in flight
    settled = heartbeat_runs("e2e-worker@")
    time.sleep(10)  # five more slots of the 2-second schedule
    assert heartbeat_runs("e2e-worker@") == settled, "runs went on after the schedule was disabled"
    assert all(p.popen.poll() is None for p in processes), "beat or worker died"
    # Jobs keep no Celery results, so beat must not add Celery's result clean-up schedule.
    assert set(PeriodicTask.objects.values_list("name", flat=True)) == {"e2e-heartbeat"}
