"""The admin's run controls against real workers (and beat, and a Sentry endpoint): a retry runs
again as a new run linked to its original; a cancelled 60-s run stops within seconds, is
recorded `cancelled` by the user and never runs again, not after a redelivery nor after a
worker restart; a run with other arguments runs with them while the schedule keeps its own."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client
from django_celery_beat.models import IntervalSchedule

import tests.e2e_app  # noqa: F401  (the tests.* jobs, for the admin's list of registered jobs)
from config.celery import app
from scheduler import services
from scheduler.models import JobRun, Schedule
from scheduler.redis_client import client as redis_client
from scheduler.sync import get_crontab
from tests.factories import user_in
from tests.processes import (
    Process,
    child_env,
    final_run,
    runs_of,
    start_beat,
    start_worker,
    started_run,
    wait_for,
    wait_until_ready,
)
from tests.sentry_server import SentryServer

pytestmark = pytest.mark.e2e

S = JobRun.Status
# Its Redis hands a message taken by a worker that died to another worker after 20 s.
REDELIVERY_APP = "tests.e2e_redelivery_app"
PAST_A_REDELIVERY = 25  # seconds: its visibility timeout, and then some


def editor(name: str) -> Client:
    client = Client()
    client.force_login(user_in("Schedule editors", name))
    return client


def daily(name: str, task: str, kwargs: dict[str, object]) -> Schedule:
    """A schedule whose only runs in the test are the ones the admin starts."""
    schedule: Schedule = Schedule.objects.create(
        name=name, task=task, kwargs=json.dumps(kwargs), crontab=get_crontab("0 3 * * *")
    )
    return schedule


def started(key: str) -> int:
    """How many times tests.count_then_sleep started for `key`."""
    return int(redis_client().get(f"tests:started:{key}") or 0)


def cancel(client: Client, run: JobRun) -> None:
    response = client.post(f"/admin/scheduler/jobrun/{run.pk}/cancel/")
    assert response.status_code == 302


def test_a_failed_run_retried_from_the_admin_runs_again_as_a_new_run_linked_to_it(
    processes: list[Process],
) -> None:
    schedule = daily("e2e-retry", "tests.fail_first", {"key": "retry"})
    alice = editor("alice")
    processes.append(start_worker("retry-worker", child_env(), app="tests.e2e_app"))
    alice.post(f"/admin/scheduler/schedule/{schedule.pk}/run/")
    original = wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-retry", status=S.FAILED).first(),
        60,
        "the first run to fail",
    )
    # Edited since: the retry runs with the arguments of the run it retries.
    Schedule.objects.filter(pk=schedule.pk).update(kwargs='{"key": "edited"}')

    response = alice.post(f"/admin/scheduler/jobrun/{original.pk}/retry/", follow=True)

    assert response.status_code == 200
    retry = wait_for(
        lambda: JobRun.objects.filter(retry_of=original).exclude(status=S.RUNNING).first(),
        60,
        "the retry to finish",
    )
    assert (retry.status, retry.result, retry.kwargs) == (
        S.SUCCEEDED,
        {"calls": 2},
        {"key": "retry"},
    )
    assert (retry.trigger, retry.requested_by, retry.schedule) == ("retry", "alice", "e2e-retry")
    assert retry.task_id != original.task_id
    original.refresh_from_db()
    assert original.status == S.FAILED  # the original keeps its own outcome
    page = alice.get(f"/admin/scheduler/jobrun/{retry.pk}/change/").content.decode()
    assert f">#{original.pk}</a> by alice" in page
    assert JobRun.objects.filter(schedule="e2e-retry").count() == 2


def test_a_run_with_other_arguments_runs_with_them_and_the_schedule_keeps_its_own(
    processes: list[Process],
) -> None:
    schedule = daily("e2e-other-arguments", "tests.count", {"key": "own"})
    processes.append(start_worker("arguments-worker", child_env(), app="tests.e2e_app"))

    editor("carol").post(
        f"/admin/scheduler/schedule/{schedule.pk}/run-with-arguments/",
        {"args": "[]", "kwargs": '{"key": "other"}'},
    )

    run = wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-other-arguments", status=S.SUCCEEDED).first(),
        60,
        "the run with other arguments",
    )
    assert (run.trigger, run.requested_by) == ("manual", "carol")
    assert (run.kwargs, run.result) == ({"key": "other"}, {"executions": 1})
    assert redis_client().get("tests:count:other") == b"1"
    assert redis_client().get("tests:count:own") is None
    schedule.refresh_from_db()
    assert json.loads(schedule.kwargs) == {"key": "own"}


def test_a_cancelled_run_stops_at_once_and_never_runs_again(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    every_10_s = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    schedule = Schedule.objects.create(
        name="e2e-cancel",
        task="tests.count_then_sleep",
        kwargs='{"key": "cancel", "seconds": 60}',
        interval=every_10_s,
    )
    env = child_env({"SENTRY_DSN": sentry_server.dsn, "SENTRY_ENVIRONMENT": "e2e"})
    worker = start_worker("cancel-worker", env, concurrency=1, app=REDELIVERY_APP)
    processes.extend([worker, start_beat("cancel-beat", env)])
    run = wait_for(
        lambda: JobRun.objects.filter(schedule="e2e-cancel", status=S.RUNNING).first(),
        60,
        "the 60-s run to start",
    )
    services.disable(Schedule.objects.filter(pk=schedule.pk))  # no next slot meanwhile
    opened = wait_for(
        lambda: [c for c in sentry_server.of_type("check_in") if c["status"] == "in_progress"],
        20,
        "beat's check-in",
    )[0]

    cancel(editor("bob"), run)

    run.refresh_from_db()
    assert (run.status, run.cancelled_by) == (S.CANCELLED, "bob")
    # It stops within seconds: the worker's only process is free for the next job.
    quick = app.send_task("tests.noop", kwargs={"n": 7})
    assert final_run(quick.id, timeout=20).status == S.SUCCEEDED
    closed = wait_for(
        lambda: [c for c in sentry_server.of_type("check_in") if c["status"] != "in_progress"],
        20,
        "the check-in's outcome",
    )
    assert [(c["check_in_id"], c["status"]) for c in closed] == [(opened["check_in_id"], "ok")]

    time.sleep(PAST_A_REDELIVERY)
    assert started("cancel") == 1
    assert [(r.status, r.cancelled_by) for r in runs_of(run.task_id)] == [(S.CANCELLED, "bob")]

    # A restarted worker has forgotten Celery's revoke; still nothing runs again.
    worker.stop()
    restarted = start_worker("cancel-worker-2", env, concurrency=1, app=REDELIVERY_APP)
    processes.append(restarted)
    wait_until_ready(restarted)
    time.sleep(PAST_A_REDELIVERY)
    assert started("cancel") == 1
    assert [r.status for r in runs_of(run.task_id)] == [S.CANCELLED]
    assert sentry_server.events() == []  # a cancel is not a failure


def test_a_run_cancelled_while_its_worker_was_dead_is_refused_when_its_message_comes_back(
    processes: list[Process],
) -> None:
    env = child_env()
    dead = start_worker("dead-worker", env, concurrency=1, app=REDELIVERY_APP)
    processes.append(dead)
    sent = app.send_task("tests.count_then_sleep", kwargs={"key": "dead", "seconds": 60})
    run = started_run(sent.id)
    dead.kill()  # its message stays unacknowledged: the broker hands it out again later

    cancel(editor("bob"), run)
    run.refresh_from_db()
    assert (run.status, run.cancelled_by) == (S.CANCELLED, "bob")

    # A new worker, which never heard of the revoke, gets the message back and refuses it.
    processes.append(start_worker("after-worker", env, concurrency=1, app=REDELIVERY_APP))
    refused = wait_for(
        lambda: JobRun.objects.filter(task_id=sent.id, status=S.SKIPPED_DUPLICATE).first(),
        90,
        "the redelivery of the cancelled run's message",
    )
    assert refused.error_message == (
        f"run #{run.pk} was cancelled by bob; this delivery of its message does not run"
    )
    time.sleep(2)
    assert started("dead") == 1
    assert [r.status for r in runs_of(sent.id)] == [S.CANCELLED, S.SKIPPED_DUPLICATE]
