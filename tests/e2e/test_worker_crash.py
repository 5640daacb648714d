"""A worker SIGKILLed mid-run: the run is marked lost, never stuck, and its lock frees itself."""

from __future__ import annotations

import time

import pytest

from config.celery import app
from scheduler import leases
from scheduler.models import JobRun
from tests.processes import Process, child_env, start_worker, wait_for

pytestmark = pytest.mark.e2e

S = JobRun.Status
LEASE = "2"  # seconds; production default is 60


def test_killed_worker_leaves_a_lost_run_and_no_stuck_lock(processes: list[Process]) -> None:
    env = child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": LEASE})
    doomed = start_worker("doomed-worker", env, app="tests.e2e_app")
    processes.append(doomed)
    task_id = app.send_task("tests.sleep", kwargs={"seconds": 60}).id
    run = wait_for(
        lambda: JobRun.objects.filter(task_id=task_id, status=S.RUNNING).first(),
        30,
        "the run to start",
    )
    assert leases.client().exists(leases.lock_key("tests.sleep", ""))

    doomed.kill()
    time.sleep(float(LEASE) * 2)  # past the lease: nobody renews it any more
    assert not leases.client().exists(leases.lock_key("tests.sleep", "")), "lock outlived worker"

    # The check that beat runs every minute, run here by a fresh worker.
    survivor = start_worker("survivor-worker", env, app="tests.e2e_app")
    processes.append(survivor)
    app.send_task("scheduler.mark_lost_runs")
    lost = wait_for(
        lambda: JobRun.objects.filter(pk=run.pk, status=S.LOST).first(), 30, "the run marked lost"
    )
    assert lost.error_type == "RunLost"
    assert "doomed-worker@" in lost.error_message
    assert lost.finished_at is not None

    # The job is not blocked: the next run takes the lock and succeeds.
    next_id = app.send_task("tests.sleep", kwargs={"seconds": 0}).id
    done = wait_for(
        lambda: JobRun.objects.filter(task_id=next_id, status=S.SUCCEEDED).first(),
        30,
        "the next run to succeed",
    )
    assert done.worker.startswith("survivor-worker@")
