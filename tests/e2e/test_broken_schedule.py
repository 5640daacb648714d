"""A schedule beat cannot send (kwargs that no longer fit its job, kwargs that are not JSON, a job
no longer registered), with real beat, worker and a local Sentry endpoint: each of its slots is a
`failed` row with the reason, Sentry hears once per schedule and each slot's check-in is closed
as error (a restarted beat does not report it again), the admin's list marks it broken, the
other schedules keep running, and once the schedule is fixed in the admin it runs again.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask

import tests.e2e_app  # noqa: F401  # the admin here knows the test jobs, as beat and workers do
from scheduler.broken import BROKEN
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from tests.drills import record
from tests.processes import (
    Process,
    child_env,
    ledger,
    settled,
    start_beat,
    start_worker,
    wait_for,
    wait_until_ready,
)
from tests.scheduler.schedule_pages import LIST, change_url, form_data, row_of
from tests.sentry_server import SentryServer

pytestmark = [pytest.mark.e2e, pytest.mark.drill]

S = JobRun.Status
EVERY = timedelta(seconds=2)


def rows_of(name: str) -> list[JobRun]:
    return list(JobRun.objects.filter(schedule=name).order_by("slot", "id"))


def failures_of(name: str) -> int:
    return JobRun.objects.filter(schedule=name, status=S.FAILED).count()


def checkins_of(server: SentryServer, slug: str) -> list[dict[str, Any]]:
    return [c for c in server.of_type("check_in") if c.get("monitor_slug") == slug]


def schedule_list(client: Client) -> str:
    return client.get(LIST).content.decode()


def test_broken_schedules_fail_each_slot_visibly_and_run_again_once_fixed(
    processes: list[Process], sentry_server: SentryServer
) -> None:
    env = child_env(
        {"SENTRY_DSN": sentry_server.dsn, "SENTRY_ENVIRONMENT": "e2e", "SENTRY_RELEASE": "e2e-1"}
    )
    worker = start_worker("broken-worker", env, concurrency=1, app="tests.e2e_app")
    beat = start_beat("broken-beat", env)
    processes.extend([worker, beat])
    wait_until_ready(worker)
    wait_for(lambda: "beat leads from" in beat.log(), 60, "beat to lead")

    every_2s = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
    healthy = PeriodicTask.objects.create(
        name="healthy", task="tests.count", interval=every_2s, kwargs='{"key": "healthy"}'
    )
    # Made by a script (the form refuses all three): a kwarg the job does not take (as after a
    # parameter was removed from it), kwargs that are not JSON, a job that no longer exists.
    unfit = PeriodicTask.objects.create(
        name="unfit-kwargs",
        task="tests.count",
        interval=every_2s,
        kwargs='{"key": "unfit", "nope": 1}',
    )
    # An interval counts from its phase: the moment it was created.
    unfit_first_slot = unfit.date_changed + EVERY
    PeriodicTask.objects.create(
        name="not-json", task="tests.count", interval=every_2s, kwargs='{"key": '
    )
    PeriodicTask.objects.create(name="job-gone", task="tests.gone", interval=every_2s)
    broken = {
        "unfit-kwargs": "Unknown argument 'nope': tests.count takes key",
        "not-json": "not valid JSON",
        "job-gone": "tests.gone is not a registered job",
    }

    wait_for(
        lambda: all(len(rows_of(name)) >= 3 for name in broken),
        90,
        "three failed rows of each broken schedule",
    )
    for name, reason in broken.items():
        for run in rows_of(name):
            assert run.status == S.FAILED
            assert run.error_type == BROKEN
            assert reason in run.error_message, run.error_message
            assert run.slot is not None
            assert run.trigger == JobRun.Trigger.SCHEDULE
    assert {r.job for r in rows_of("job-gone")} == {"tests.gone"}

    # The admin's list marks each of them broken, with the reason.
    admin = User.objects.create_superuser("admin", "admin@example.com", "pw-admin-123")
    client = Client()
    client.force_login(admin)
    page = schedule_list(client)
    for name, reason in broken.items():
        row = row_of(page, name)
        assert "schedule-broken" in row
        assert escape(reason) in row
    assert "schedule-broken" not in row_of(page, "healthy")

    # Fixed in the admin (the form saves it): it runs again, and is no longer marked broken.
    edited = client.post(
        change_url(unfit),
        form_data(
            name="unfit-kwargs",
            task="tests.count",
            kind="interval",
            minute="*",
            hour="*",
            interval=str(every_2s.pk),
            kwargs='{"key": "unfit"}',
        ),
    )
    assert edited.status_code == 302, edited.content.decode()[-3000:]
    first_success = wait_for(
        lambda: JobRun.objects.filter(schedule="unfit-kwargs", status=S.SUCCEEDED).first(),
        60,
        "the fixed schedule to run",
    )
    assert int(redis_client().get("tests:count:unfit") or 0) >= 1
    assert "schedule-broken" not in row_of(schedule_list(client), "unfit-kwargs")

    # The count: every slot of the broken schedule up to its first run after the fix has one
    # row, failed before the fix reached beat and succeeded after.
    until = first_success.slot
    assert until is not None
    [book, healthy_book] = settled(
        lambda: [
            ledger("unfit-kwargs", unfit_first_slot, EVERY, until),
            ledger("healthy", healthy.date_changed + EVERY, EVERY, until),
        ],
        60,
    )
    statuses = [run.status for run in map(book.outcome, book.owed) if run is not None]
    failed = statuses.count(S.FAILED)
    # No failure once it ran: the fix holds.
    assert statuses == sorted(statuses, key=lambda s: s == S.SUCCEEDED)

    # A new beat (restarted, or a standby taking over) does not tell Sentry again about the
    # schedules still broken: their event was sent since their last edit.
    beat.stop()
    processes.append(start_beat("broken-beat-2", env))
    still_broken = {name: failures_of(name) for name in ("not-json", "job-gone")}
    wait_for(
        lambda: all(failures_of(name) >= n + 2 for name, n in still_broken.items()),
        60,
        "two more failed slots of each schedule still broken, from the new beat",
    )

    # Sentry: one event per broken schedule, whatever the number of failed slots; a check-in
    # per failed slot, closed as error by beat itself.
    events = wait_for(
        lambda: found if len(found := sentry_server.events()) >= len(broken) else None,
        30,
        "an event per broken schedule",
    )
    by_schedule = {e["tags"]["schedule"]: e for e in events}

    def error_checkin_per_failed_slot() -> bool:
        return all(
            len([c for c in checkins_of(sentry_server, name) if c["status"] == "error"])
            >= failures_of(name)
            for name in broken
        )

    wait_for(error_checkin_per_failed_slot, 30, "an error check-in per failed slot")
    unfit_checkins = checkins_of(sentry_server, "unfit-kwargs")
    errors = [c for c in unfit_checkins if c["status"] == "error"]
    opened = {c["check_in_id"] for c in unfit_checkins if c["status"] == "in_progress"}
    events = sentry_server.events()

    record(
        "broken schedules: unfit kwargs, bad JSON, job gone; 1 fixed",
        owed=len(book.owed),
        rows=len(statuses),
        lost=len(book.lost),
        twice=len(book.ran_twice),
        events_per_failure=len(events) / len(broken),
        note=(
            f"unfit-kwargs: {failed} slots failed with the reason, then ran once fixed; "
            f"healthy alongside: {len(healthy_book.owed)} owed, lost {len(healthy_book.lost)}; "
            f"{len(events)} Sentry events for {len(broken)} broken schedules"
        ),
    )
    assert book.lost == [] and book.twice == {}
    assert failed >= 3
    assert healthy_book.lost == [] and healthy_book.ran_twice == []
    assert healthy.pk and len(healthy_book.owed) >= failed
    assert len(events) == len(broken), [e["tags"]["schedule"] for e in events]
    assert set(by_schedule) == set(broken)
    event = by_schedule["unfit-kwargs"]
    first = rows_of("unfit-kwargs")[0]
    assert event["tags"]["job"] == "tests.count"
    assert event["tags"]["run_id"] == str(first.pk)
    assert event["contexts"]["nightshift_run"]["admin_url"].endswith(
        f"/admin/scheduler/jobrun/{first.pk}/change/"
    )
    assert first.sentry_event_id == event["event_id"]
    assert len(errors) == failed
    assert not opened & {c["check_in_id"] for c in errors}
    assert "in_progress" not in {c["status"] for c in checkins_of(sentry_server, "job-gone")}
