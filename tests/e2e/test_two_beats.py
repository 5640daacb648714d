"""Several `celery -A config beat -S django` on one database and broker: one leads, the others
stand by; SIGKILL the leader and a standby takes over; every occurrence runs once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.engine import beats
from scheduler.models import JobRun
from tests.processes import (
    Process,
    child_env,
    start_beat,
    start_worker,
    wait_for,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e

S = JobRun.Status


def leader_of(procs: list[Process]) -> Process | None:
    """The beat whose process leads now, according to the health page's view."""
    leading = {b.identity.split(":")[1] for b in beats() if b.role == "leader"}
    return next((p for p in procs if str(p.popen.pid) in leading), None)


@pytest.mark.parametrize("count", [2, 3])
def test_one_beat_leads_and_a_standby_takes_over_when_it_is_killed(
    processes: list[Process], count: int
) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    # overlap="allow", so only the beats' own discipline (and the duplicate check) stop repeats.
    PeriodicTask.objects.create(
        name="led", task="tests.sleep_allow_overlap", interval=every_2s, kwargs='{"seconds": 0}'
    )
    env = child_env({"NIGHTSHIFT_BEAT_LEASE_SECONDS": "4"})
    worker = start_worker("led-worker", env, concurrency=2, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)
    group = [start_beat(f"led-beat-{i}", env) for i in range(count)]
    processes.extend(group)
    wait_for(lambda: len(beats()) == count, 60, f"{count} beats to announce themselves")
    leader = wait_for(lambda: leader_of(group), 30, "a leader")
    leading_since = timezone.now()
    assert [b.role for b in beats()].count("leader") == 1
    time.sleep(6)  # three slots under the first leader

    # Only the leader sends: the standbys' logs have no dispatch.
    for beat in group:
        if beat is not leader:
            assert "Sending due task" not in beat.log(), f"standby {beat.name} dispatched"

    killed_at = timezone.now()
    leader.kill()
    survivors = [b for b in group if b is not leader]
    new_leader = wait_for(lambda: leader_of(survivors), 15, "a standby to take over")
    took_over = timezone.now() - killed_at
    assert took_over <= timedelta(seconds=10), f"takeover took {took_over}"
    time.sleep(8)  # four slots under the new leader
    for beat in survivors:
        beat.stop()
    wait_for(
        lambda: not JobRun.objects.filter(schedule="led", status=S.RUNNING).exists(),
        20,
        "the last run to finish",
    )

    runs = list(JobRun.objects.filter(schedule="led"))
    assert runs
    ran = Counter(r.slot for r in runs if r.status == S.SUCCEEDED)
    assert all(n == 1 for n in ran.values()), f"slots that ran twice: {ran}"
    # Every slot between the first run and the end has exactly one row: it ran, or (slots
    # that fell in the takeover gap past their 2-second deadline) it was recorded missed.
    slots = sorted(r.slot for r in runs if r.slot is not None)
    assert len(slots) == len(set(slots)), "a slot has two rows"
    expected = [slots[0] + timedelta(seconds=2 * k) for k in range(len(slots))]
    assert slots == expected, "a slot has no row"
    # A slot ran; or no beat sent it before its 2-s deadline (missed); or, on a loaded machine,
    # one sent just inside its deadline reached the worker just after it (expired).
    assert {r.status for r in runs} <= {S.SUCCEEDED, S.MISSED, S.EXPIRED}
    late = [r for r in runs if r.status in (S.MISSED, S.EXPIRED)]
    assert all("deadline" in r.error_message for r in late), [r.error_message for r in late]
    # Missed: slots before any beat ran, and slots of the takeover gap past their deadline.
    missed = [r.slot for r in runs if r.status == S.MISSED and r.slot is not None]
    in_gap = [s for s in missed if killed_at - timedelta(seconds=2) <= s <= timezone.now()]
    before = [s for s in missed if s < leading_since]
    assert sorted(in_gap + before) == sorted(missed)
    assert "Sending due task" in new_leader.log()
