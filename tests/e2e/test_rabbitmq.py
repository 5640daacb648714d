"""RabbitMQ as the broker (TEST_BROKER_URL=amqp://…, `.ci/run`'s third pass): durable quorum
queues, publisher confirms, retries with a countdown, and a message whose worker was SIGKILLed
mid-job delivered again, as on Redis (acks_late), but at once instead of after a visibility
timeout."""

from __future__ import annotations

import time

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from tests import broker
from tests.processes import (
    Process,
    child_env,
    final_runs,
    start_beat,
    start_worker,
    started_run,
    wait_for,
    wait_until_ready,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

S = JobRun.Status


def counted(key: str) -> int:
    return int(redis_client().get(f"tests:count:{key}") or 0)


def test_beat_publishes_with_confirms_to_durable_quorum_queues_and_the_jobs_run(
    processes: list[Process],
) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(
        name="default-queue", task="tests.count", interval=every_2s, kwargs='{"key": "default"}'
    )
    # A queue only a schedule names: declared on first use, the same way as the default one.
    PeriodicTask.objects.create(
        name="named-queue",
        task="tests.count",
        interval=every_2s,
        kwargs='{"key": "named"}',
        queue="family",
    )
    env = child_env()
    processes.append(
        start_worker("rmq-worker", env, app="tests.e2e_app", options=["-Q", "celery,family"])
    )
    beat = start_beat("rmq-beat", env)
    processes.append(beat)

    wait_for(lambda: counted("default") >= 3 and counted("named") >= 3, 60, "both schedules run")
    # Beat publishes on channels in confirm mode: a publish returns once RabbitMQ has it.
    beat_channels = broker.channels_of(beat.popen.pid)
    assert beat_channels and all(c["confirm"] == "true" for c in beat_channels), beat_channels
    beat.stop()

    queues = broker.queue_types()
    assert queues["celery"] == ("quorum", "true")
    assert queues["family"] == ("quorum", "true")
    # Every slot sent ran (a slot due before beat led is recorded missed, as on any broker).
    runs = JobRun.objects.filter(schedule__in=["default-queue", "named-queue"]).exclude(
        status=S.MISSED
    )
    assert {r.status for r in runs} == {S.SUCCEEDED}
    assert runs.filter(schedule="named-queue").count() == counted("named")


def test_a_job_retried_with_a_countdown_runs_again_after_it(processes: list[Process]) -> None:
    worker = start_worker("rmq-retry-worker", child_env(), app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    # Fails twice with a transient error: retried after 1 s, then 2 s (retry_backoff=1).
    task_id = app.send_task("tests.flaky", kwargs={"key": "rmq", "failures": 2}).id

    attempts = final_runs(task_id, timeout=60)
    assert [(r.attempt, r.status) for r in attempts] == [
        (1, S.RETRYING),
        (2, S.RETRYING),
        (3, S.SUCCEEDED),
    ]
    for earlier, later, backoff in zip(attempts, attempts[1:], (1, 2), strict=False):
        assert earlier.finished_at is not None
        waited = (later.started_at - earlier.finished_at).total_seconds()
        assert waited >= backoff - 0.1, f"attempt {later.attempt} came {waited:.2f} s after"
    # Through RabbitMQ's delayed delivery, not held in the worker's memory.
    assert "Direct exchanges are not supported" not in worker.log()
    assert broker.waiting("celery") == 0


def test_a_job_whose_worker_is_killed_mid_run_is_delivered_again_at_once(
    processes: list[Process],
) -> None:
    env = child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": "2"})
    doomed = start_worker("rmq-doomed", env, concurrency=1, app="tests.e2e_app")
    processes.append(doomed)
    task_id = app.send_task("tests.sleep", kwargs={"seconds": 3}).id
    first = started_run(task_id)
    assert first.worker.startswith("rmq-doomed@")

    doomed.kill()  # the whole worker, SIGKILL: its connection closes, the message unacked
    killed_at = time.monotonic()
    survivor = start_worker("rmq-survivor", env, concurrency=1, app="tests.e2e_app")
    processes.append(survivor)

    succeeded = wait_for(
        lambda: JobRun.objects.filter(task_id=task_id, status=S.SUCCEEDED).first(),
        60,
        "the run delivered again to succeed",
    )
    took = time.monotonic() - killed_at
    assert succeeded.worker.startswith("rmq-survivor@")
    # Redis would keep the message for its visibility timeout (hours in production).
    assert took < 45, f"delivered again after {took:.0f} s"
    assert broker.waiting("celery") == 0
    # The killed delivery's row is closed as lost by the check beat runs every minute.
    app.send_task("scheduler.mark_lost_runs")
    wait_for(lambda: JobRun.objects.filter(pk=first.pk, status=S.LOST).exists(), 30, "lost row")
    assert JobRun.objects.filter(task_id=task_id, status=S.SUCCEEDED).count() == 1
