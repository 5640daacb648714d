"""A schedule's run-policy overrides, set in the database, reach the worker through beat."""

from __future__ import annotations

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from scheduler.models import JobRun, SchedulePolicy
from tests.processes import Process, child_env, start_beat, start_worker, wait_for

pytestmark = pytest.mark.e2e

S = JobRun.Status


def test_overrides_of_a_schedule_replace_the_jobs_defaults(processes: list[Process]) -> None:
    # tests.sleep skips overlapping runs and has the project's 300 s soft limit. The schedule
    # overrides both: runs may overlap, and each is interrupted after 2 s (so each run is
    # still going when the next second's run starts).
    every_second = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(
        name="override", task="tests.sleep", interval=every_second, kwargs='{"seconds": 5}'
    )
    SchedulePolicy.objects.create(
        periodic_task=task, overlap="allow", soft_time_limit=2, time_limit=10
    )
    env = child_env()
    processes.append(start_worker("override-worker", env, concurrency=2, app="tests.e2e_app"))
    processes.append(start_beat("override-beat", env))

    def timed_out() -> list[JobRun] | None:
        found = list(JobRun.objects.filter(schedule="override", status=S.TIMED_OUT))
        return found if len(found) >= 3 else None

    runs = wait_for(timed_out, 60, "three timed-out runs")
    for run in runs:
        assert run.duration_seconds is not None and 1.9 <= run.duration_seconds < 4
        assert run.error_type == "billiard.exceptions.SoftTimeLimitExceeded"
    first, second = sorted(runs, key=lambda r: r.started_at)[:2]
    assert first.finished_at is not None and second.started_at < first.finished_at, "overlap"
    statuses = set(JobRun.objects.filter(schedule="override").values_list("status", flat=True))
    assert S.SKIPPED_OVERLAP not in statuses
    assert S.SUCCEEDED not in statuses, "the 5 s job must never outlive its 2 s override"
