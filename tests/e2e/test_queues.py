"""Queues per job family with real processes: a 60-s job of the heavy family on its own worker
while beat sends a heartbeat every 3 s to another; and the old way (one worker of concurrency 1
consuming everything), where the same heartbeats wait behind the long job."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from scheduler.models import JobRun
from tests.processes import (
    Process,
    child_env,
    final_run,
    start_beat,
    start_worker,
    started_run,
    wait_for,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e

S = JobRun.Status
EVERY = timedelta(seconds=3)
# A heartbeat that starts within this of being sent did not wait behind anything (a worker picks a
# message up in a fraction of a second; the next slot comes 3 s later).
ON_TIME = timedelta(seconds=2)


def waited(run: JobRun) -> timedelta:
    """How long the run's message waited in its queue: from beat's send to the run's start."""
    assert run.enqueued_at is not None, run
    return run.started_at - run.enqueued_at


def heavy_queue() -> str:
    """The queue of the backup's family, as Celery routes jobs.backup_database."""
    return str(app.amqp.router.route({}, "jobs.backup_database")["queue"].name)


def heartbeat_every_3s() -> PeriodicTask:
    every = IntervalSchedule.objects.create(every=3, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name="e2e-heartbeat", task="jobs.heartbeat", interval=every)


def heartbeats_between(start: datetime, end: datetime) -> list[JobRun]:
    """The heartbeat rows of the slots from `start` to `end`, by slot."""
    return list(
        JobRun.objects.filter(schedule="e2e-heartbeat", slot__gte=start, slot__lte=end).order_by(
            "slot"
        )
    )


def long_job(seconds: float) -> tuple[JobRun, JobRun]:
    """Send a job of `seconds` to the heavy family's queue: its row once started, then ended."""
    task_id = app.send_task("tests.sleep", args=[seconds], queue=heavy_queue()).id
    started = started_run(task_id, timeout=60)
    return started, final_run(task_id, timeout=seconds + 60)


def test_a_long_heavy_job_never_delays_the_heartbeats(processes: list[Process]) -> None:
    assert heavy_queue() == "heavy"
    heartbeat_every_3s()
    env = child_env()
    heavy = start_worker("heavy-worker", env, concurrency=1, app="tests.e2e_app",
                         options=["-Q", "heavy"])  # fmt: skip
    quick = start_worker("quick-worker", env, concurrency=1, app="tests.e2e_app",
                         options=["-Q", "maintenance"])  # fmt: skip
    processes.extend([heavy, quick])
    wait_until_ready(heavy)
    wait_until_ready(quick)
    processes.append(start_beat("queues-beat", env))
    wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-heartbeat", status=S.SUCCEEDED).exists(),
        60,
        "the first heartbeat",
    )

    started, ended = long_job(60)

    assert ended.status == S.SUCCEEDED and ended.worker.startswith("heavy-worker@")
    assert ended.duration_seconds is not None and ended.duration_seconds >= 60
    assert ended.finished_at is not None
    during = heartbeats_between(started.started_at, ended.finished_at - EVERY)
    # Every slot of the minute has its heartbeat, run by the other worker as soon as beat sent
    # it (a slot beat itself could not send in time is recorded `missed`, with beat's reason:
    # not a wait in a queue).
    slots = [r.slot for r in during if r.slot is not None]
    assert len(slots) == len(during)
    assert all(b - a == EVERY for a, b in itertools.pairwise(slots)), slots
    ran = [r for r in during if r.status != S.MISSED]
    assert len(ran) >= 60 // 3 - 3, [(r.slot, r.status) for r in during]
    late = [
        (r.slot, r.status, r.worker, waited(r))
        for r in ran
        if r.status != S.SUCCEEDED
        or not r.worker.startswith("quick-worker@")
        or waited(r) > ON_TIME
    ]
    assert late == [], late
    lags = sorted((r.started_at - slot).total_seconds() for r in ran if (slot := r.slot))
    print(f"heartbeats during the 60-s job: {len(ran)} run, slot to start median "
          f"{lags[len(lags) // 2]:.3f} s, max {lags[-1]:.3f} s")  # fmt: skip


def test_with_one_worker_for_everything_the_heartbeats_wait(processes: list[Process]) -> None:
    """The old way, for contrast: the Procfile's worker at concurrency 1, alone."""
    heartbeat_every_3s()
    env = child_env()
    worker = start_worker("only-worker", env, concurrency=1, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    processes.append(start_beat("one-worker-beat", env))
    wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-heartbeat", status=S.SUCCEEDED).exists(),
        60,
        "the first heartbeat",
    )

    started, ended = long_job(15)

    assert ended.finished_at is not None
    end = ended.finished_at - EVERY

    def recorded() -> list[JobRun] | None:
        found = heartbeats_between(started.started_at, end)
        return found if len(found) >= 15 // 3 - 1 else None

    during = wait_for(recorded, 30, "the heartbeats of the slots during the long job")
    # None started on time: each waited behind the long job, and most expired unrun.
    prompt = [r.slot for r in during if r.status == S.SUCCEEDED and waited(r) <= ON_TIME]
    assert prompt == [], prompt
    assert sum(r.status == S.EXPIRED for r in during) >= 2, [(r.slot, r.status) for r in during]
    waits = sorted(waited(r).total_seconds() for r in during)
    print(f"heartbeats during the 15-s job, one worker: {dict(Counter(r.status for r in during))}, "
          f"waited {waits[0]:.1f} to {waits[-1]:.1f} s in the queue")  # fmt: skip
