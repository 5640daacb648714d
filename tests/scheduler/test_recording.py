"""Recording costs and the lost-run check, in process against the test database and Redis."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import tests.e2e_app  # noqa: F401  (registers the tests.* jobs in this process)
from config.celery import app
from scheduler import leases
from scheduler.models import JobRun
from scheduler.runs import mark_lost_runs

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
    leases.client().set(lock, "someone-else", px=10_000)
    try:
        with django_assert_num_queries(1):
            app.tasks["tests.noop"].apply(kwargs={"n": 3})
    finally:
        leases.client().delete(lock)
    assert JobRun.objects.get().status == S.SKIPPED_OVERLAP


def _running(job: str, started_ago: timedelta) -> JobRun:
    return JobRun.objects.create(
        task_id=f"t-{job}-{started_ago.total_seconds()}",
        job=job,
        trigger="manual",
        started_at=timezone.now() - started_ago,
        status=S.RUNNING,
        worker="w@h",
    )


def test_lost_run_check_closes_only_runs_whose_lease_is_gone() -> None:
    past_hard_limit = _running("tests.slow", timedelta(minutes=10))  # hard limit 5 s
    lost = _running("tests.sleep", timedelta(minutes=3))
    alive = _running("tests.noop", timedelta(minutes=3))
    leases.client().set(leases.alive_key(alive.task_id, alive.attempt), "token", px=10_000)
    too_recent = _running("tests.fail", timedelta(seconds=5))

    closed = mark_lost_runs()

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


def test_a_dead_redis_before_the_start_is_retried_and_records_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    from config.redis_server import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    monkeypatch.setattr(leases, "client", lambda: dead)
    from celery.exceptions import Retry

    with pytest.raises(Retry) as retried:
        app.tasks["tests.noop"].apply(kwargs={"n": 1}, throw=True)
    assert isinstance(retried.value.exc, redis.ConnectionError)
    assert not JobRun.objects.exists(), "no run started, so no row claims one"
