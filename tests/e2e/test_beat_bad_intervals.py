"""Real beat and worker: an interval shorter than a second, stored by a script (the form refuses
it), is never dispatched. Beat logs the schedule as one it cannot dispatch and goes on sending
the others, instead of sending the same job in a loop."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.models import JobRun
from tests.processes import Process, child_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.e2e


def test_beat_never_dispatches_an_interval_shorter_than_a_second(
    processes: list[Process],
) -> None:
    bad = {
        "every-0-seconds": IntervalSchedule.objects.create(every=0, period="seconds"),
        "every-1-microsecond": IntervalSchedule.objects.create(every=1, period="microseconds"),
        "every-999999-microseconds": IntervalSchedule.objects.create(
            every=999_999, period="microseconds"
        ),
    }
    for name, interval in bad.items():
        PeriodicTask.objects.create(name=name, task="jobs.heartbeat", interval=interval)
    every_2s = IntervalSchedule.objects.create(every=2, period="seconds")
    PeriodicTask.objects.create(name="every-2-seconds", task="jobs.heartbeat", interval=every_2s)
    env = child_env()
    processes.append(start_worker("bad-interval-worker", env))
    beat = start_beat("bad-interval-beat", env)
    processes.append(beat)

    # The good schedule runs: beat is up and sending.
    wait_for(
        lambda: JobRun.objects.filter(schedule="every-2-seconds").count() >= 3,
        120,
        "three runs of the 2-second schedule",
    )
    runs = {name: JobRun.objects.filter(schedule=name).count() for name in bad}
    log = beat.log()
    assert runs == dict.fromkeys(bad, 0), log[-3000:]
    for name, interval in bad.items():
        assert (
            f"schedule '{name}' cannot be dispatched: its interval "
            f"(every {interval.every} {interval.period}) is shorter than 1 s" in log
        ), log[-3000:]
    assert beat.popen.poll() is None, "beat died"
