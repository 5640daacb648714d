"""One occurrence, one Crons outcome; one final failure, one event, about its own run.

Real beat and worker processes send to a local Sentry endpoint (tests.sentry_server)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler.models import JobRun
from scheduler.sync import get_crontab
from tests.processes import (
    Process,
    start_beat,
    start_worker,
    wait_for,
)
from tests.sentry_server import SentryServer

from .test_sentry import sentry_env

pytestmark = pytest.mark.e2e

S = JobRun.Status


def due_every_minute(name: str, job: str, kwargs: str = "{}") -> PeriodicTask:
    """An every-minute schedule last run five minutes ago: beat sends it as soon as it starts."""
    return PeriodicTask.objects.create(
        name=name,
        task=job,
        kwargs=kwargs,
        crontab=get_crontab("* * * * *"),
        last_run_at=timezone.now() - timedelta(minutes=5),
    )


def first_occurrence(server: SentryServer, slug: str) -> list[str]:
    """The statuses sent for the first check-in beat opened for `slug`, in order."""
    checkins = [c for c in server.of_type("check_in") if c.get("monitor_slug") == slug]
    if not checkins:
        return []
    first = checkins[0]["check_in_id"]
    return [c["status"] for c in checkins if c["check_in_id"] == first]


def events_about(server: SentryServer, task_id: str) -> list[dict[str, Any]]:
    return [e for e in server.events() if e.get("tags", {}).get("celery_task_id") == task_id]


def assert_about_run(event: dict[str, Any], run: JobRun) -> None:
    tags = event["tags"]
    assert (tags["job"], tags["schedule"], tags["run_id"]) == (
        run.job,
        run.schedule or "-",
        str(run.pk),
    )
    assert tags["celery_task_id"] == run.task_id
    assert event["transaction"] == run.job
    context = event["contexts"]["nightshift_run"]
    assert context["admin_url"] == f"http://127.0.0.1:8000/admin/scheduler/jobrun/{run.pk}/change/"
    assert (context["run_id"], context["task_id"]) == (run.pk, run.task_id)


def test_a_retry_that_then_succeeds_closes_its_checkin_ok_without_an_error(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    due_every_minute("e2e-flaky", "tests.flaky", '{"key": "once", "failures": 1}')
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-flaky-worker", env, app="tests.e2e_app"))
    processes.append(start_beat("e2e-flaky-beat", env))

    wait_for(
        lambda: "ok" in first_occurrence(sentry_server, "e2e-flaky"),
        90,
        "the first occurrence's check-in to close",
    )
    # Attempt 1 failed and was retried: the check-in stayed open, the retry closed it.
    assert first_occurrence(sentry_server, "e2e-flaky") == ["in_progress", "in_progress", "ok"]
    # (Beat also records the slots of the five minutes before it started as `missed`.)
    runs = JobRun.objects.filter(schedule="e2e-flaky").exclude(status=S.MISSED)
    runs = runs.order_by("started_at")
    assert [(r.attempt, r.status) for r in runs[:2]] == [(1, S.RETRYING), (2, S.SUCCEEDED)]
    assert sentry_server.events() == []
