"""Every outcome of a run, recorded by a real worker (`celery -A tests.e2e_app worker`)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from scheduler.models import JobRun
from scheduler.recording import rows
from scheduler.redis_client import client as redis_client
from tests import broker
from tests.processes import (
    Process,
    child_env,
    final_runs,
    runs_of,
    start_beat,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.e2e

S = JobRun.Status


@pytest.fixture
def worker(processes: list[Process]) -> Process:
    process = start_worker("runs-worker", child_env(), concurrency=2, app="tests.e2e_app")
    processes.append(process)
    return process


def send(name: str, **kwargs: object) -> str:
    return app.send_task(name, kwargs=kwargs).id


def test_success_is_recorded_with_result_worker_and_times(worker: Process) -> None:
    task_id = send("tests.noop", n=7)
    [run] = final_runs(task_id)
    assert run.status == S.SUCCEEDED
    assert run.result == 7
    assert (run.job, run.schedule, run.trigger, run.attempt) == ("tests.noop", "", "manual", 1)
    assert run.worker.startswith("runs-worker@")
    assert run.enqueued_at is not None and run.finished_at is not None
    assert run.enqueued_at <= run.started_at <= run.finished_at
    assert run.duration_seconds is not None and run.duration_seconds >= 0
    assert (run.error_type, run.error_message, run.traceback) == ("", "", "")


def test_failure_is_recorded_once_with_error_and_traceback(worker: Process) -> None:
    task_id = send("tests.fail", message="disk on fire")
    [run] = final_runs(task_id)
    assert run.status == S.FAILED
    assert run.error_type == "ValueError"
    assert run.error_message == "disk on fire"
    assert "ValueError: disk on fire" in run.traceback
    assert "tests/e2e_app.py" in run.traceback
    time.sleep(1)
    assert len(runs_of(task_id)) == 1, "a non-transient error must not be retried"


def test_transient_errors_retry_with_every_attempt_recorded(worker: Process) -> None:
    task_id = send("tests.flaky", key=task_id_key(), failures=2)
    runs = final_runs(task_id, timeout=40)
    assert [(r.attempt, r.trigger, r.status) for r in runs] == [
        (1, "manual", S.RETRYING),
        (2, "retry", S.RETRYING),
        (3, "retry", S.SUCCEEDED),
    ]
    assert runs[0].error_type == "ConnectionError"
    assert runs[0].error_message == "upstream unavailable (attempt 1)"
    assert runs[2].result == {"attempts": 3}
    # Exponential backoff: 1 s, then 2 s.
    assert (runs[1].started_at - _finished(runs[0])).total_seconds() >= 0.9
    assert (runs[2].started_at - _finished(runs[1])).total_seconds() >= 1.9


def test_transient_errors_stop_after_max_retries(worker: Process) -> None:
    task_id = send("tests.always_transient")
    runs = final_runs(task_id, timeout=40)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, S.RETRYING),
        (2, S.RETRYING),
        (3, S.FAILED),
    ]
    assert runs[-1].error_type == "TimeoutError"


def test_soft_time_limit_records_timed_out_after_cleanup(worker: Process) -> None:
    redis_client().delete("tests:slow:cleaned")
    task_id = send("tests.slow", seconds=30)
    [run] = final_runs(task_id, timeout=20)
    assert run.status == S.TIMED_OUT
    assert run.error_type == "billiard.exceptions.SoftTimeLimitExceeded"
    assert run.duration_seconds is not None and 0.9 <= run.duration_seconds < 5
    assert redis_client().get("tests:slow:cleaned") == b"yes"


def test_overlapping_run_of_the_same_job_is_skipped(worker: Process) -> None:
    first = send("tests.sleep", seconds=3)
    wait_for(lambda: any(r.status == S.RUNNING for r in runs_of(first)), 20, "the first run")
    second = send("tests.sleep", seconds=0)
    [skipped] = final_runs(second)
    assert skipped.status == S.SKIPPED_OVERLAP
    assert skipped.finished_at is not None
    [done] = final_runs(first)
    assert done.status == S.SUCCEEDED
    # Once the first is over the lock is free again.
    [third] = final_runs(send("tests.sleep", seconds=0))
    assert third.status == S.SUCCEEDED


def test_overlap_allow_runs_concurrently(worker: Process) -> None:
    ids = [send("tests.sleep_allow_overlap", seconds=2) for _ in range(2)]
    runs = [final_runs(task_id)[0] for task_id in ids]
    assert [r.status for r in runs] == [S.SUCCEEDED, S.SUCCEEDED]
    assert runs[0].started_at < _finished(runs[1]) and runs[1].started_at < _finished(runs[0])


def test_backlog_past_its_deadline_is_expired_not_executed(processes: list[Process]) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="backlog", task="tests.noop", interval=every_2s)
    env = child_env()
    beat = start_beat("backlog-beat", env)
    processes.append(beat)
    # Beat publishes while no worker is up: an outage.
    wait_for(lambda: queued() >= 3, 30, "3 queued")
    beat.stop()
    sent = queued()
    time.sleep(2.5)  # the last one's next slot passes too
    processes.append(start_worker("backlog-worker", env, app="tests.e2e_app"))
    expired = JobRun.objects.filter(schedule="backlog", status=S.EXPIRED)
    wait_for(lambda: expired.count() >= sent and queued() == 0, 30, "the backlog to drain")
    runs = list(JobRun.objects.filter(schedule="backlog"))
    # Every message sent ran nothing: expired, with the reason.
    assert len([r for r in runs if r.status == S.EXPIRED]) == sent
    assert all(r.trigger == "schedule" and r.slot is not None for r in runs)
    assert all("not started before its deadline" in r.error_message for r in expired)
    # A loaded machine may start beat after the first slot's deadline: that slot is recorded
    # missed by beat, before any it sent; never run.
    first_sent = min(r.slot for r in expired if r.slot is not None)
    late = [r for r in runs if r.status != S.EXPIRED]
    assert all(r.status == S.MISSED and r.slot is not None and r.slot < first_sent for r in late), (
        late
    )


def _finished(run: JobRun) -> datetime:
    assert run.finished_at is not None
    return run.finished_at


def queued() -> int:
    """Messages waiting in the default queue of the suite's broker."""
    return broker.waiting("celery")


def task_id_key() -> str:
    return f"k{time.monotonic_ns()}"


def test_a_worker_process_that_exits_writes_the_rows_of_its_runs_first(
    processes: list[Process],
) -> None:
    # Each pool process exits after one run, right after handing its row to the row writer;
    # no mark_lost_runs runs here, and the lease is long: only the exit can write the rows.
    recycled = start_worker(
        "recycled-worker",
        child_env({"NIGHTSHIFT_RUN_LEASE_SECONDS": "600"}),
        concurrency=1,
        app="tests.e2e_app",
        options=["--max-tasks-per-child", "1"],
    )
    processes.append(recycled)
    ids = [send("tests.count", key=f"recycled-{i}") for i in range(3)]

    def all_rows() -> list[JobRun] | None:
        found = list(JobRun.objects.filter(task_id__in=ids))
        return found if len(found) == len(ids) else None

    runs = wait_for(all_rows, 60, "the three rows")
    assert {run.status for run in runs} == {S.SUCCEEDED}
    assert len({run.worker for run in runs}) == 1
    assert not redis_client().exists(rows.UNWRITTEN_ROWS_KEY), "rows left in Redis"
