"""Recording costs and the lost-run check, in process against the test database and Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

import tests.e2e_app  # noqa: F401  (registers the tests.* jobs in this process)
from config.celery import app
from scheduler import recording
from scheduler.models import JobRun
from scheduler.recording import leases, rows
from scheduler.recording.keeper import Keeper
from scheduler.redis_client import client
from tests.factories import create_run, job_run

pytestmark = pytest.mark.django_db

S = JobRun.Status


def test_a_recorded_run_costs_at_most_three_queries(django_assert_max_num_queries) -> None:
    # apply() runs the task through Celery's tracer in this process: the full recording path.
    with django_assert_max_num_queries(3):
        assert app.tasks["tests.noop"].apply(kwargs={"n": 3}).get() == 3
    run = JobRun.objects.get()
    assert (run.status, run.result, run.trigger) == (S.SUCCEEDED, 3, "manual")


def test_a_skipped_run_costs_one_query(django_assert_num_queries) -> None:
    lock = leases.lock_key("tests.noop", "")
    client().set(lock, "someone-else", px=10_000)
    try:
        with django_assert_num_queries(1):
            app.tasks["tests.noop"].apply(kwargs={"n": 3})
    finally:
        client().delete(lock)
    assert JobRun.objects.get().status == S.SKIPPED_OVERLAP


def _running(job: str, started_ago: timedelta) -> JobRun:
    return create_run(job, S.RUNNING, timezone.now() - started_ago, trigger="manual", worker="w@h")


def test_lost_run_check_closes_only_runs_whose_lease_is_gone() -> None:
    past_hard_limit = _running("tests.slow", timedelta(minutes=10))  # hard limit 5 s
    lost = _running("tests.sleep", timedelta(minutes=3))
    alive = _running("tests.noop", timedelta(minutes=3))
    client().set(leases.alive_key(alive.task_id, alive.attempt), "token", px=10_000)
    too_recent = _running("tests.fail", timedelta(seconds=5))

    closed = recording.recover().closed

    assert sorted(r.pk for r in closed) == sorted([past_hard_limit.pk, lost.pk])
    statuses = dict(JobRun.objects.values_list("pk", "status"))
    assert statuses == {
        past_hard_limit.pk: S.TIMED_OUT,
        lost.pk: S.LOST,
        alive.pk: S.RUNNING,
        too_recent.pk: S.RUNNING,
    }
    assert JobRun.objects.get(pk=lost.pk).error_type == "RunLost"
    assert JobRun.objects.get(pk=past_hard_limit.pk).error_type == "TimeLimitExceeded"


def _finished(task_id: str, finished_ago: timedelta) -> JobRun:
    finished_at = timezone.now() - finished_ago
    return job_run(
        task_id=task_id,
        job="tests.noop",
        schedule="every-minute",
        trigger="schedule",
        slot=finished_at.replace(second=0, microsecond=0),
        started_at=finished_at - timedelta(seconds=1.5),
        finished_at=finished_at,
        duration_seconds=1.5,
        status=S.SUCCEEDED,
        worker="gone@host",
        result={"n": 3},
    )


def _keep_in_redis(run: JobRun) -> str:
    """What a worker does at the end of a successful run, before its keeper inserts the row."""
    field = f"{run.task_id}:{run.attempt}:kept"
    leases.release([], lambda pipe: rows.keep(pipe, field, run))
    return field


def test_the_check_writes_rows_kept_in_redis_whose_worker_never_inserted_them() -> None:
    client().delete(rows.UNWRITTEN_ROWS_KEY)
    never_inserted = _finished("t-never-inserted", timedelta(minutes=2))
    inserted = _finished("t-inserted", timedelta(minutes=2))
    fresh = _finished("t-fresh", timedelta(seconds=1))
    for run in (never_inserted, inserted, fresh):
        _keep_in_redis(run)
    inserted.save(force_insert=True)  # its writer inserted it, then died before forgetting it

    assert rows.write_unwritten(older_than=60) == 1

    by_task = {run.task_id: run for run in JobRun.objects.all()}
    assert sorted(by_task) == ["t-inserted", "t-never-inserted"]
    written = by_task["t-never-inserted"]
    for field in ("job", "schedule", "trigger", "slot", "started_at", "finished_at", "status"):
        assert getattr(written, field) == getattr(never_inserted, field), field
    assert (written.duration_seconds, written.result, written.worker) == (
        1.5,
        {"n": 3},
        "gone@host",
    )
    # The fresh row is left to its own writer; nothing is written twice.
    assert client().hkeys(rows.UNWRITTEN_ROWS_KEY) == [b"t-fresh:1:kept"]
    assert rows.write_unwritten(older_than=60) == 0
    assert JobRun.objects.count() == 2


def test_a_kept_row_the_database_refuses_is_dropped_with_an_error_not_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client().delete(rows.UNWRITTEN_ROWS_KEY)
    good = _finished("t-good", timedelta(minutes=2))
    refused = _finished("t-refused", timedelta(minutes=2))
    refused.job = None  # type: ignore[assignment]  # NOT NULL: no database takes it
    _keep_in_redis(good)
    _keep_in_redis(refused)

    assert rows.write_unwritten(older_than=60) == 1

    assert list(JobRun.objects.values_list("task_id", flat=True)) == ["t-good"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "t-refused" in errors[0].getMessage()
    assert not client().exists(rows.UNWRITTEN_ROWS_KEY)


def test_rows_kept_in_an_outage_land_once_next_to_the_later_attempts_rows() -> None:
    # What a worker leaves when the database does not answer: a long run's `running` row
    # written before, its final row kept in Redis just now; a first attempt's `retrying` row
    # kept, whose retry has since been written.
    client().delete(rows.UNWRITTEN_ROWS_KEY)
    long_run = _running("tests.sleep", timedelta(seconds=30))
    long_run.status, long_run.finished_at, long_run.duration_seconds = (
        S.SUCCEEDED,
        timezone.now(),
        30,
    )
    _keep_in_redis(long_run)
    first = _finished("t-retried", timedelta(minutes=2))
    first.status, first.error_type = S.RETRYING, "django.db.utils.OperationalError"
    _keep_in_redis(first)
    second = _finished("t-retried", timedelta(seconds=1))
    second.attempt, second.trigger = 2, "retry"
    second.save(force_insert=True)

    # The fresh final row closes its running row at once (only its worker would); the
    # retrying row is inserted once a lease period old.
    assert rows.write_unwritten(older_than=60) == 2

    closed = JobRun.objects.get(pk=long_run.pk)
    assert (closed.status, closed.duration_seconds) == (S.SUCCEEDED, 30)
    attempts = JobRun.objects.filter(task_id="t-retried").values_list("attempt", "status")
    assert sorted(attempts) == [(1, S.RETRYING), (2, S.SUCCEEDED)]
    assert not client().exists(rows.UNWRITTEN_ROWS_KEY)
    # Kept again (a worker that kept it twice, a check run twice): nothing written twice.
    _keep_in_redis(long_run)
    _keep_in_redis(first)
    assert rows.write_unwritten(older_than=60) == 0
    assert JobRun.objects.count() == 3


def test_a_dead_redis_before_the_start_is_retried_and_records_nothing(
    monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    import redis

    from devtools.redis_server import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    from celery.exceptions import Retry

    with pytest.raises(Retry) as retried:
        app.tasks["tests.noop"].apply(kwargs={"n": 1}, throw=True)
    assert isinstance(retried.value.exc, redis.ConnectionError)
    assert not JobRun.objects.exists(), "no run started, so no row claims one"


@pytest.mark.django_db(transaction=True)  # the keeper thread has its own connection
def test_the_keeper_inserts_handed_over_rows_together_and_forgets_them_in_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client().delete(rows.UNWRITTEN_ROWS_KEY)
    batches: list[int] = []
    insert = rows.insert

    def counting_insert(batch: list[tuple[str, JobRun]]) -> tuple[list[str], list[str]]:
        batches.append(len(batch))
        return insert(batch)

    monkeypatch.setattr(rows, "insert", counting_insert)
    finished = [_finished(f"t-{i}", timedelta(seconds=1)) for i in range(50)]
    fields = [_keep_in_redis(run) for run in finished]
    keeper = Keeper()
    for run, field in zip(finished, fields, strict=True):
        keeper.hand_over(field, run)  # as 50 runs ending one after another

    assert keeper.stop(timeout=10)  # and closes its connection, as at exit

    assert sorted(JobRun.objects.values_list("task_id", flat=True)) == sorted(
        run.task_id for run in finished
    )
    assert sum(batches) == 50 and len(batches) < 50, batches  # rows share their INSERT
    assert not client().exists(rows.UNWRITTEN_ROWS_KEY)


# --- Run controls: the arguments a row keeps, and a cancelled task id ---------------------------


def test_a_row_keeps_its_arguments_and_the_run_it_retries() -> None:
    original = create_run("tests.noop", S.FAILED, args=[], kwargs={"n": 4})
    headers: dict[str, Any] = {recording.RETRY_OF_HEADER: original.pk}
    app.tasks["tests.noop"].apply(kwargs={"n": 4}, headers=headers).get()
    retry = JobRun.objects.exclude(pk=original.pk).get()
    assert (retry.args, retry.kwargs, retry.retry_of, retry.trigger) == (
        [],
        {"n": 4},
        original,
        "retry",
    )


def test_arguments_over_the_size_cap_are_not_kept() -> None:
    app.tasks["tests.noop"].apply(args=("x" * 20_000,)).get()
    run = JobRun.objects.get()
    assert (run.status, run.args, run.kwargs) == (S.SUCCEEDED, None, None)


def test_a_delivery_of_a_cancelled_task_id_does_not_run() -> None:
    redis = client()
    redis.delete("tests:count:cancelled")
    leases.mark_cancelled("cancelled-task", "run #5 was cancelled by bob")

    app.tasks["tests.count"].apply(kwargs={"key": "cancelled"}, task_id="cancelled-task")

    run = JobRun.objects.get()
    assert (run.task_id, run.status) == ("cancelled-task", S.SKIPPED_DUPLICATE)
    assert run.error_message == (
        "run #5 was cancelled by bob; this delivery of its message does not run"
    )
    assert redis.get("tests:count:cancelled") is None  # the job never ran
    assert redis.get(leases.lock_key("tests.count", "")) is None  # nor holds its lock
    redis.delete(leases.cancel_key("cancelled-task"))


def test_the_worker_that_killed_a_run_gives_back_its_leases() -> None:
    from celery.app.task import Context

    redis = client()
    lock, alive = leases.lock_key("tests.sleep", "nightly"), leases.alive_key("killed", 1)
    other = leases.lock_key("tests.sleep", "other")
    for key, token in ((lock, "killed"), (alive, "killed"), (other, "someone-else")):
        redis.set(key, token, px=60_000)
    request = Context(
        {"id": "killed", "task": "tests.sleep", "retries": 0, "periodic_task_name": "nightly"}
    )

    recording.terminated(request)

    assert [redis.get(key) for key in (lock, alive, other)] == [None, None, b"someone-else"]
    redis.delete(other)


def test_a_late_copy_of_a_cancelled_run_says_so_rather_than_expired() -> None:
    leases.mark_cancelled("late-task", "run #6 was cancelled by bob")
    slot = timezone.now() - timedelta(hours=2)
    headers: dict[str, Any] = {
        recording.SCHEDULE_HEADER: "hourly",
        recording.SLOT_HEADER: slot.isoformat(),
        recording.NEXT_SLOT_HEADER: (slot + timedelta(hours=1)).isoformat(),
    }

    app.tasks["tests.noop"].apply(task_id="late-task", headers=headers)

    run = JobRun.objects.get()
    assert run.status == S.SKIPPED_DUPLICATE
    assert run.error_message.startswith("run #6 was cancelled by bob;")
    client().delete(leases.cancel_key("late-task"))
