"""Beat and workers announce themselves in Redis, which the health page reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler import presence
from tests.processes import Process, child_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.e2e


def test_beat_ticks_and_workers_come_and_go(processes: list[Process]) -> None:
    assert presence.beat_last_tick() is None
    assert presence.workers() == []
    env = child_env()
    worker = start_worker("presence-worker", env, concurrency=1)
    processes.append(worker)
    processes.append(start_beat("presence-beat", env))

    [online] = wait_for(presence.workers, 30, "the worker to announce itself")
    assert online.hostname.startswith("presence-worker@") and online.online
    first_tick = wait_for(presence.beat_last_tick, 30, "beat's first tick")

    # Beat keeps ticking: the stamp moves on (DatabaseScheduler wakes at least every 5 s).
    def later_tick() -> datetime | None:
        tick = presence.beat_last_tick()
        return tick if tick is not None and tick > first_tick else None

    later = wait_for(later_tick, 15, "a later tick")
    assert datetime.now(UTC) - later < timedelta(seconds=10)

    worker.stop()
    assert presence.workers() == [], "a worker that stops cleanly leaves the list"


def test_a_silent_worker_is_shown_offline_then_forgotten(processes: list[Process]) -> None:
    presence.stamp_worker("gone@host")
    now = datetime.now(UTC)
    [seen] = presence.workers(now + presence.ONLINE_WITHIN + timedelta(seconds=1))
    assert (seen.hostname, seen.online) == ("gone@host", False)
    assert presence.workers(now + presence.FORGET_AFTER + timedelta(seconds=1)) == []
    assert presence.workers() == [], "a forgotten worker is removed from Redis"


def test_a_worker_announces_the_queues_it_consumes(processes: list[Process]) -> None:
    worker = start_worker(
        "queues-worker", child_env(), concurrency=1, options=["-Q", "reports,celery"]
    )
    processes.append(worker)
    queues = wait_for(presence.live_queues, 60, "the worker to announce its queues")
    assert queues == {"reports", "celery"}
    worker.stop()
    assert presence.live_queues() == set(), "a worker that stops cleanly takes its queues along"
