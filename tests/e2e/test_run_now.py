"""The admin's "Run now" through a real worker (`celery -A config worker`): the run is recorded as
`manual`, with the user who asked and the schedule it belongs to."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from jobs.models import WorkerHeartbeat
from scheduler.models import JobRun, Schedule
from scheduler.sync import get_crontab
from tests.processes import Process, child_env, start_worker, wait_for

pytestmark = pytest.mark.e2e


def test_run_now_is_recorded_as_manual_with_who_asked(processes: list[Process]) -> None:
    # A daily schedule: whatever runs during this test was started by the button.
    schedule = Schedule.objects.create(
        name="e2e-run-now", task="jobs.heartbeat", crontab=get_crontab("0 3 * * *")
    )
    client = Client()
    client.force_login(User.objects.create_superuser("nora"))
    processes.append(start_worker("run-now-worker", child_env()))

    response = client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/")
    assert response.status_code == 302

    run = wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-run-now", status="succeeded").first(),
        60,
        "the manual run to finish",
    )
    assert (run.job, run.trigger, run.requested_by) == ("jobs.heartbeat", "manual", "nora")
    assert run.worker.startswith("run-now-worker@")
    assert WorkerHeartbeat.objects.get(hostname=run.worker).runs == 1
    assert JobRun.objects.filter(schedule="e2e-run-now").count() == 1
