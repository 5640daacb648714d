"""With SENTRY_DSN set, beat and worker both report to Sentry (a local envelope endpoint)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from jobs.models import WorkerHeartbeat
from scheduler.sync import get_crontab
from tests.processes import Process, child_env, start_beat, start_worker, wait_for
from tests.sentry_server import SentryServer

pytestmark = pytest.mark.e2e


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
    env = child_env(
        {"SENTRY_DSN": sentry_server.dsn, "SENTRY_ENVIRONMENT": "e2e", "SENTRY_RELEASE": "e2e-1"}
    )
    processes.append(start_worker("e2e-sentry-worker", env))
    processes.append(start_beat("e2e-sentry-beat", env))

    def checkins() -> list[dict[str, Any]]:
        return [
            c
            for c in sentry_server.of_type("check_in")
            if c.get("monitor_slug") == "e2e-sentry-heartbeat"
        ]

    wait_for(
        lambda: {c["status"] for c in checkins()} >= {"in_progress", "ok"},
        60,
        "an in_progress check-in from beat and an ok check-in from the worker",
    )
    assert WorkerHeartbeat.objects.filter(hostname__startswith="e2e-sentry-worker@").exists()

    opening = next(c for c in checkins() if c["status"] == "in_progress")
    closing = next(c for c in checkins() if c["status"] == "ok")
    # Beat opens the check-in, the worker closes the same one.
    assert closing["check_in_id"] == opening["check_in_id"]
    assert opening["monitor_config"]["schedule"] == {"type": "crontab", "value": "* * * * *"}
    assert opening["monitor_config"]["timezone"] == "Asia/Shanghai"
    assert {opening["environment"], closing["environment"]} == {"e2e"}
    assert {opening["release"], closing["release"]} == {"e2e-1"}
    assert sentry_server.of_type("event") == []
