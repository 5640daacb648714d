"""Two `celery -A config beat -S django` on one database and broker: each occurrence runs once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from functools import partial

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler import leases
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


def dispatched(beat: Process) -> bool:
    return "Sending due task" in beat.log()


def test_two_beats_run_each_occurrence_exactly_once(processes: list[Process]) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    # overlap="allow", so only duplicate protection can stop the second dispatch.
    PeriodicTask.objects.create(
        name="twice-dispatched",
        task="tests.sleep_allow_overlap",
        interval=every_2s,
        kwargs='{"seconds": 0}',
    )
    env = child_env()
    worker = start_worker("dup-worker", env, concurrency=2, app="tests.e2e_app")
    processes.append(worker)
    # Ready before the first dispatch: a run not started by its next slot (2 s) would expire.
    wait_until_ready(worker)
    beats = [start_beat("dup-beat-a", env), start_beat("dup-beat-b", env)]
    processes.extend(beats)
    # Beats start at their own pace; the window opens once both are dispatching.
    for beat in beats:
        wait_for(partial(dispatched, beat), 60, f"{beat.name} to dispatch")
    window_start = timezone.now()
    time.sleep(16)  # the window: about eight slots
    window_end = timezone.now()
    for beat in beats:
        beat.stop()
    wait_for(lambda: leases.client().llen("celery") == 0, 20, "the queue to drain")
    wait_for(
        lambda: not JobRun.objects.filter(schedule="twice-dispatched", status=S.RUNNING).exists(),
        20,
        "the last run to finish",
    )

    runs = list(JobRun.objects.filter(schedule="twice-dispatched"))
    executed = Counter(r.slot for r in runs if r.status == S.SUCCEEDED)
    duplicates = [r for r in runs if r.status == S.SKIPPED_DUPLICATE]
    slots = {r.slot for r in runs if r.slot is not None}
    assert all(r.slot is not None for r in runs)
    assert len(slots) >= 5, f"expected about eight slots in 16 s, saw {len(slots)}"
    # Every slot ran exactly once; the second beat's dispatches were recorded as duplicates.
    assert executed == dict.fromkeys(slots, 1)
    assert {r.slot for r in duplicates} <= slots
    # Inside the window both beats dispatched every slot: each has its duplicate.
    both = {
        s
        for s in slots
        if window_start + timedelta(seconds=2) <= s <= window_end - timedelta(seconds=2)
    }
    assert len(both) >= 5, f"expected about six slots inside the window, saw {len(both)}"
    assert both <= {r.slot for r in duplicates}
    assert {r.status for r in runs} == {S.SUCCEEDED, S.SKIPPED_DUPLICATE}
