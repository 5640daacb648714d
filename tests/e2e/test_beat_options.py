"""`celery -A config beat -S django` runs Nightshift's engine, and every PeriodicTask option keeps
its stock meaning: one real beat and worker, one schedule per option, observed as a user would
(run rows, counters, the rows' own fields, the raw messages waiting in Redis)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from celery.schedules import solar
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from kombu import Exchange, Queue

from config.celery import app
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from tests import broker
from tests.processes import Process, child_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.e2e

S = JobRun.Status


def longitude_with_solar_noon_in(seconds: float) -> float:
    """A longitude (on the equator) whose next solar noon is `seconds` from now."""
    now = datetime.now(UTC)
    longitude = 0.0
    for _ in range(5):
        sun = solar("solar_noon", 0, longitude, nowfun=lambda: now)
        remaining = sun.remaining_estimate(now).total_seconds()
        # Solar noon comes 240 s earlier per degree east.
        longitude = ((longitude + (remaining - seconds) / 240.0 + 180) % 360) - 180
    return round(longitude, 6)


def counted(key: str) -> int:
    return int(redis_client().get(f"tests:count:{key}") or 0)


@pytest.fixture
def bound_queue() -> Iterator[None]:
    """A queue bound to exchange ns-ex by routing key ns-rk, as an operator would declare."""
    queue = Queue("ns-bound", Exchange("ns-ex", type="direct"), routing_key="ns-rk")
    with app.connection_for_write() as conn:
        queue(conn.default_channel).declare()
    yield


def test_every_option_keeps_its_stock_meaning(processes: list[Process], bound_queue: None) -> None:
    now = timezone.now()
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    every_minute = CrontabSchedule.objects.create(minute="*", timezone="Asia/Shanghai")
    noon = SolarSchedule.objects.create(
        event="solar_noon",
        latitude=Decimal(0),
        longitude=Decimal(str(longitude_with_solar_noon_in(40))),
    )
    soon = ClockedSchedule.objects.create(clocked_time=now + timedelta(seconds=15))

    def schedule(name: str, key: str | None = None, **fields: Any) -> PeriodicTask:
        fields.setdefault("task", "tests.count")
        if key is not None:
            fields.setdefault("kwargs", json.dumps({"key": key}))
        return PeriodicTask.objects.create(name=name, **fields)

    schedule("crontab", "crontab", crontab=every_minute)
    interval = schedule("interval", "interval", interval=every_2s)
    schedule("by-args", args='["by-args"]', interval=every_2s)
    schedule("solar", "solar", solar=noon)
    clocked = schedule("clocked", "clocked", clocked=soon, one_off=True)
    one_off = schedule("one-off", "one-off", interval=every_2s, one_off=True)
    schedule("disabled", "disabled", interval=every_2s, enabled=False)
    start_at = now + timedelta(seconds=20)
    schedule("start-time", "start-time", interval=every_2s, start_time=start_at)
    expires_at = now + timedelta(seconds=12)
    expiring = schedule("expires", "expires", interval=every_2s, expires=expires_at)
    schedule("expire-seconds", task="tests.noop", interval=every_2s, queue="nobody",
             expire_seconds=30)  # fmt: skip
    schedule("routed", task="tests.noop", interval=every_2s, queue="inspect", priority=5,
             headers='{"x-team": "ops"}')  # fmt: skip
    schedule("exchange", task="tests.noop", interval=every_2s, exchange="ns-ex",
             routing_key="ns-rk")  # fmt: skip

    env = child_env()
    processes.append(start_worker("opt-worker", env, concurrency=2, app="tests.e2e_app"))
    beat = start_beat("opt-beat", env)
    processes.append(beat)

    # -S django gets the engine, not stock DatabaseScheduler.
    wait_for(lambda: "Nightshift engine loaded" in beat.log(), 30, "the engine to load")
    assert "scheduler -> scheduler.engine.scheduler.Engine" in beat.log()

    wait_for(lambda: counted("crontab") >= 1, 75, "the every-minute crontab to run")
    wait_for(lambda: counted("solar") >= 1, 60, "the solar noon to run")
    wait_for(lambda: counted("start-time") >= 2, 30, "the start-time schedule to run")
    beat.stop()
    time.sleep(3)  # the last dispatches run

    # crontab: on the whole minute, in Shanghai time.
    crontab_slots = list(JobRun.objects.filter(schedule="crontab").values_list("slot", flat=True))
    assert crontab_slots and all(s is not None and s.second == 0 for s in crontab_slots)
    # interval: every 2 s from the schedule's own phase; kwargs and args both arrive.
    interval_runs = JobRun.objects.filter(schedule="interval", status=S.SUCCEEDED)
    assert counted("interval") == interval_runs.count() >= 10
    assert counted("by-args") >= 10
    interval.refresh_from_db()
    newest = interval_runs.order_by("-slot").first()
    assert newest is not None and interval.last_run_at == newest.slot
    # Counted per message sent: a slot past its deadline before a slow beat led was not sent.
    sent = JobRun.objects.filter(schedule="interval").exclude(status=S.MISSED)
    assert interval.total_run_count == sent.count()
    for slot in interval_runs.values_list("slot", flat=True):
        assert slot is not None
        assert (slot - interval.date_changed).total_seconds() % 2 == pytest.approx(0, abs=1e-3)
    # solar: once, at its event.
    assert counted("solar") == 1
    # clocked and one-off: once each, then disabled.
    assert counted("clocked") == 1 and counted("one-off") == 1
    clocked.refresh_from_db()
    one_off.refresh_from_db()
    assert not clocked.enabled and not one_off.enabled
    solar_run = JobRun.objects.get(schedule="clocked")
    assert solar_run.slot == soon.clocked_time
    # disabled: never.
    assert counted("disabled") == 0
    # start_time: nothing before it; its first slot is the start time itself.
    first = JobRun.objects.filter(schedule="start-time").order_by("slot").first()
    assert first is not None and first.slot == start_at
    # expires: runs before, none after, and beat disables it.
    expiring.refresh_from_db()
    expired_runs = JobRun.objects.filter(schedule="expires")
    assert expired_runs.count() >= 4
    assert all(r.slot is not None and r.slot < expires_at for r in expired_runs)
    assert not expiring.enabled
    # expire_seconds: the message carries its expiry, 30 s after it was sent.
    waiting = broker.messages("nobody")
    assert waiting
    expiry = datetime.fromisoformat(waiting[-1].headers["expires"])
    slot = datetime.fromisoformat(waiting[-1].headers["nightshift_slot"])
    assert timedelta(seconds=29) <= expiry - slot <= timedelta(seconds=32)
    # queue, priority, headers: in the queue, with priority 5 and the custom header.
    routed = broker.messages("inspect")
    assert routed and all(m.headers["periodic_task_name"] == "routed" for m in routed)
    assert routed[0].properties["priority"] == 5
    assert routed[0].headers["x-team"] == "ops"
    # exchange + routing key: delivered to the queue bound to them.
    bound = broker.messages("ns-bound")
    assert bound and bound[0].headers["periodic_task_name"] == "exchange"
