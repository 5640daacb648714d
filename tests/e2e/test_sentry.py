"""What Sentry receives (a local envelope endpoint) from real beat and worker processes."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from jobs.models import WorkerHeartbeat
from scheduler.models import JobRun
from scheduler.sync import get_crontab
from tests.processes import (
    Process,
    child_env,
    final_run,
    start_beat,
    start_worker,
    started_run,
    wait_for,
)
from tests.sentry_server import SentryServer

pytestmark = pytest.mark.e2e

S = JobRun.Status


def sentry_env(server: SentryServer, **extra: str) -> dict[str, str]:
    return child_env(
        {"SENTRY_DSN": server.dsn, "SENTRY_ENVIRONMENT": "e2e", "SENTRY_RELEASE": "e2e-1", **extra}
    )


def checkins_of(server: SentryServer, slug: str) -> list[dict[str, Any]]:
    return [c for c in server.of_type("check_in") if c.get("monitor_slug") == slug]


def only_event(server: SentryServer) -> dict[str, Any]:
    events = wait_for(server.events, 20, "a Sentry event")
    return events[0] if len(events) == 1 else pytest.fail(f"{len(events)} events: {events}")


def test_beat_and_worker_send_cron_checkins_for_a_crontab_job(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    # Last ran five minutes ago, so the every-minute crontab is due as soon as beat starts.
    PeriodicTask.objects.create(
        name="e2e-sentry-heartbeat",
        task="jobs.heartbeat",
        crontab=get_crontab("* * * * *"),
        last_run_at=timezone.now() - timedelta(minutes=5),
    )
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-sentry-worker", env))
    processes.append(start_beat("e2e-sentry-beat", env))

    wait_for(
        lambda: (
            {c["status"] for c in checkins_of(sentry_server, "e2e-sentry-heartbeat")}
            >= {"in_progress", "ok"}
        ),
        60,
        "an in_progress check-in from beat and an ok check-in from the worker",
    )
    assert WorkerHeartbeat.objects.filter(hostname__startswith="e2e-sentry-worker@").exists()

    checkins = checkins_of(sentry_server, "e2e-sentry-heartbeat")
    opening = next(c for c in checkins if c["status"] == "in_progress")
    closing = next(c for c in checkins if c["status"] == "ok")
    # Beat opens the check-in, the worker closes the same one.
    assert closing["check_in_id"] == opening["check_in_id"]
    assert opening["monitor_config"] == {
        "schedule": {"type": "crontab", "value": "* * * * *"},
        "timezone": "Asia/Shanghai",
        "checkin_margin": 2,
        "max_runtime": 1,  # jobs.heartbeat's hard time limit, 60 s
    }
    assert {opening["environment"], closing["environment"]} == {"e2e"}
    assert {opening["release"], closing["release"]} == {"e2e-1"}
    assert sentry_server.events() == []


def test_sub_minute_interval_is_monitored_as_every_minute(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="e2e-fast", task="jobs.heartbeat", interval=every_5s)
    env = sentry_env(sentry_server)
    processes.append(start_worker("e2e-fast-worker", env))
    processes.append(start_beat("e2e-fast-beat", env))

    wait_for(
        lambda: "ok" in {c["status"] for c in checkins_of(sentry_server, "e2e-fast")},
        40,
        "an ok check-in for the 5-second schedule",
    )
    opening = next(
        c for c in checkins_of(sentry_server, "e2e-fast") if c["status"] == "in_progress"
    )
    assert opening["monitor_config"]["schedule"] == {
        "type": "interval",
        "value": 1,
        "unit": "minute",
    }


def test_failing_job_sends_one_event_for_on_call_without_secrets(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    processes.append(
        start_worker("e2e-fail-worker", sentry_env(sentry_server), app="tests.e2e_app")
    )
    task_id = app.send_task(
        "tests.fail", kwargs={"message": "disk on fire", "db_password": "hunter2-secret"}
    ).id
    run = final_run(task_id, timeout=40)
    assert run.status == S.FAILED

    event = only_event(sentry_server)
    tags = event["tags"]
    assert tags["job"] == "tests.fail"
    assert tags["schedule"] == "-"
    assert tags["trigger"] == "manual"
    assert tags["attempt"] == "1"
    assert tags["run_id"] == str(run.pk)
    assert event["fingerprint"] == ["nightshift", "tests.fail", "ValueError"]
    context = event["contexts"]["nightshift_run"]
    assert context["admin_url"] == f"http://127.0.0.1:8000/admin/scheduler/jobrun/{run.pk}/change/"
    assert event["exception"]["values"][-1]["type"] == "ValueError"
    assert event["exception"]["values"][-1]["value"] == "disk on fire"
    assert run.sentry_event_id == event["event_id"]
    assert b"hunter2-secret" not in sentry_server.received()


def test_retries_are_breadcrumbs_and_only_the_final_failure_is_an_event(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    processes.append(
        start_worker("e2e-retry-worker", sentry_env(sentry_server), app="tests.e2e_app")
    )
    task_id = app.send_task("tests.always_transient").id
    run = final_run(task_id, timeout=40)
    assert (run.status, run.attempt) == (S.FAILED, 3)

    event = only_event(sentry_server)
    assert (event["tags"]["attempt"], event["tags"]["trigger"]) == ("3", "retry")
    assert event["fingerprint"] == ["nightshift", "tests.always_transient", "TimeoutError"]
    crumbs = [
        b["message"]
        for b in event["breadcrumbs"]["values"]
        if b.get("category") == "nightshift.retry"
    ]
    assert crumbs[:2] == [
        "attempt 1 retrying: TimeoutError: the upstream never answers",
        "attempt 2 retrying: TimeoutError: the upstream never answers",
    ]


def test_timeout_sends_one_event(processes: list[Process], sentry_server: SentryServer) -> None:
    processes.append(
        start_worker("e2e-slow-worker", sentry_env(sentry_server), app="tests.e2e_app")
    )
    run = final_run(app.send_task("tests.slow", kwargs={"seconds": 30}).id, timeout=40)
    assert run.status == S.TIMED_OUT
    event = only_event(sentry_server)
    assert event["tags"]["run_status"] == "timed_out"
    assert event["tags"]["run_id"] == str(run.pk)
    assert run.sentry_event_id == event["event_id"]


def test_lost_run_sends_one_event(processes: list[Process], sentry_server: SentryServer) -> None:
    env = sentry_env(sentry_server, NIGHTSHIFT_RUN_LEASE_SECONDS="2")
    doomed = start_worker("e2e-doomed", env, app="tests.e2e_app")
    processes.append(doomed)
    task_id = app.send_task("tests.sleep", kwargs={"seconds": 60}).id
    started_run(task_id)
    doomed.kill()
    processes.append(start_worker("e2e-checker", env, app="tests.e2e_app"))

    # Keep asking until the lease has expired and the check finds it.
    def check_and_find() -> JobRun | None:
        app.send_task("scheduler.mark_lost_runs")
        return JobRun.objects.filter(task_id=task_id, status=S.LOST).first()

    run = wait_for(check_and_find, 40, "the run marked lost", interval=1)
    event = only_event(sentry_server)
    wait_for(
        lambda: JobRun.objects.filter(pk=run.pk).exclude(sentry_event_id="").exists(),
        10,
        "the event id on the run",
    )
    assert event["tags"]["job"] == "tests.sleep"
    assert event["tags"]["run_status"] == "lost"
    assert event["fingerprint"] == ["nightshift", "tests.sleep", "RunLost"]
    assert event["contexts"]["nightshift_run"]["admin_url"].endswith(f"/jobrun/{run.pk}/change/")
    run.refresh_from_db()
    assert run.sentry_event_id == event["event_id"]


def test_monitor_config_follows_an_edit_made_while_beat_runs(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    task = PeriodicTask.objects.create(
        name="e2e-edited",
        task="jobs.heartbeat",
        crontab=get_crontab("* * * * *"),
        last_run_at=timezone.now() - timedelta(minutes=5),
    )
    env = sentry_env(sentry_server)
    processes.append(start_beat("e2e-edited-beat", env))

    def configs() -> list[str]:
        return [
            c["monitor_config"]["schedule"]["value"]
            for c in checkins_of(sentry_server, "e2e-edited")
            if c["status"] == "in_progress"
        ]

    # Owed since its last run 5 minutes ago: the current minute's slot is sent at once.
    wait_for(lambda: "* * * * *" in configs(), 30, "the first check-in")
    # The admin's edit: a new crontab (every minute, written differently). A timing edit owes
    # nothing from before it, so the next dispatch is at the next whole minute.
    task.refresh_from_db()
    task.crontab = get_crontab("* * * * 0-6")
    task.save()
    wait_for(lambda: "* * * * 0-6" in configs(), 75, "a check-in with the edited crontab")


def test_expired_runs_close_their_checkin_as_error(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="e2e-backlog", task="jobs.heartbeat", interval=every_2s)
    env = sentry_env(sentry_server)
    beat = start_beat("e2e-backlog-beat", env)
    processes.append(beat)
    wait_for(
        lambda: len(checkins_of(sentry_server, "e2e-backlog")) >= 2, 30, "two dispatches queued"
    )
    beat.stop()
    time.sleep(2.5)  # past the next slot of the last dispatch too
    processes.append(start_worker("e2e-backlog-worker", env))
    opened = {c["check_in_id"] for c in checkins_of(sentry_server, "e2e-backlog")}
    wait_for(
        lambda: (
            {
                c["check_in_id"]
                for c in checkins_of(sentry_server, "e2e-backlog")
                if c["status"] == "error"
            }
            == opened
        ),
        30,
        "an error check-in for every expired run",
    )
    # Each run sent expired in the queue. (A slot already past its deadline when a slow beat
    # took the lead was never sent: recorded missed, with no check-in.)
    statuses = Counter(
        JobRun.objects.filter(schedule="e2e-backlog").values_list("status", flat=True)
    )
    assert statuses[S.EXPIRED] == len(opened), statuses
    assert set(statuses) <= {S.EXPIRED, S.MISSED}, statuses
    assert not WorkerHeartbeat.objects.exists(), "an expired run must not execute"
