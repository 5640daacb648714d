"""A tick that outlasts the leader lease: beat renews the lease as it sends and as it reloads,
so a burst larger than a lease period of sending goes out once, and a bulk edit of every row is
reloaded, without the leader losing its lead."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.models import JobRun
from tests import broker
from tests.processes import Process, child_env, start_beat, wait_for

pytestmark = pytest.mark.e2e

# Several 1-s lease periods of sending: about 3-6 s here on Redis (pipelined), 6-10 s on
# RabbitMQ (a confirmed round trip per message).
BURST = 5_000 if broker.rabbitmq() else 20_000


def test_a_burst_longer_than_the_lease_is_sent_once_by_one_steady_leader(
    processes: list[Process],
) -> None:
    hourly = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    due = timezone.now() - timedelta(seconds=3600 - 2)  # every row due 2 s from now
    PeriodicTask.objects.bulk_create(
        PeriodicTask(
            name=f"burst-{i:05d}",
            task="tests.noop",
            interval=hourly,
            queue="burst",
            last_run_at=due,
        )
        for i in range(BURST)
    )
    beat = start_beat("burst-beat", child_env({"NIGHTSHIFT_BEAT_LEASE_SECONDS": "1"}))
    processes.append(beat)

    wait_for(lambda: broker.waiting("burst") >= BURST, 120, f"{BURST} messages in the queue")
    wait_for(
        lambda: (
            PeriodicTask.objects.filter(name__startswith="burst-").aggregate(
                n=Sum("total_run_count")
            )["n"]
            == BURST
        ),
        30,
        "beat to write back what it sent",
    )
    # An edit of every row at once (a bulk update): its reload outlasts the lease too.
    PeriodicTask.objects.filter(name__startswith="burst-").update(description="edited")
    wait_for(lambda: f"reloaded {BURST} changed schedules" in beat.log(), 60, "the reload")
    beat.stop()

    assert broker.waiting("burst") == BURST, "a slot was sent twice"
    log = beat.log()
    assert "lost the leadership" not in log
    assert "could not send" not in log
    assert not JobRun.objects.filter(status=JobRun.Status.MISSED).exists()
