"""Drill: an editor and a superuser try to retime or delete the timing rows many schedules share,
and type choices the schedule form must refuse. Each attempt is refused with a message and
leaves the database as it was."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from tests.drills import record
from tests.factories import make_schedule, user_in
from tests.scheduler.schedule_pages import ADD, form_data

pytestmark = [pytest.mark.e2e, pytest.mark.drill, pytest.mark.django_db]

INTERVALS = "/admin/django_celery_beat/intervalschedule/"
CRONTABS = "/admin/django_celery_beat/crontabschedule/"


def _state() -> list[object]:
    """Everything a refused attempt must leave as it was."""
    return [
        list(model.objects.order_by("pk").values())
        for model in (
            PeriodicTask,
            CrontabSchedule,
            IntervalSchedule,
            SolarSchedule,
            ClockedSchedule,
        )
    ]


@dataclass
class Attempt:
    what: str
    run: Callable[[], str]  # returns what the user was told
    says: str  # in what the user was told


def test_drill_shared_timing_rows_and_form_choices(client: Client) -> None:
    every_5 = IntervalSchedule.objects.create(every=5, period="minutes")
    for n in range(12):
        PeriodicTask.objects.create(name=f"every-5-{n}", task="jobs.heartbeat", interval=every_5)
    crontab = make_schedule("weekday-0715", "15 7 * * mon-fri").crontab
    make_schedule("weekday-0715-copy", "15 7 * * mon-fri")
    editor = Client()
    editor.force_login(user_in("Schedule editors", "erin"))
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "x"))

    def page(client: Client, url: str, data: Mapping[str, object]) -> str:
        response = client.post(url, data)
        return f"{response.status_code} {response.content.decode()}"

    def code_delete() -> str:
        try:
            with transaction.atomic():
                crontab.delete()
        except ProtectedError as exc:
            return str(exc.args[0])
        return "deleted"

    retime = {"every": "5", "period": "seconds"}
    bulk = {"action": "delete_selected", "_selected_action": [every_5.pk], "post": "yes"}
    attempts = [
        Attempt(
            "editor retimes a shared interval",
            lambda: page(editor, f"{INTERVALS}{every_5.pk}/change/", retime),
            "403",
        ),
        Attempt(
            "editor deletes a shared interval",
            lambda: page(editor, f"{INTERVALS}{every_5.pk}/delete/", {"post": "yes"}),
            "403",
        ),
        Attempt(
            "editor bulk-deletes a shared interval", lambda: page(editor, INTERVALS, bulk), "403"
        ),
        Attempt(
            "editor retimes a shared crontab",
            lambda: page(editor, f"{CRONTABS}{crontab.pk}/change/", {"minute": "5"}),
            "403",
        ),
        Attempt(
            "superuser retimes a shared interval",
            lambda: page(admin, f"{INTERVALS}{every_5.pk}/change/", retime),
            "403",
        ),
        Attempt(
            "superuser deletes a shared interval",
            lambda: page(admin, f"{INTERVALS}{every_5.pk}/delete/", {"post": "yes"}),
            "Schedule every-5-11 (uses Every 5 minutes; give it another timing first)",
        ),
        Attempt(
            "superuser bulk-deletes a shared interval",
            lambda: page(admin, INTERVALS, bulk),
            "Schedule every-5-0 (uses Every 5 minutes",
        ),
        Attempt(
            "code deletes a shared crontab",
            code_delete,
            "2 schedule(s) use it (weekday-0715, weekday-0715-copy)",
        ),
        Attempt(
            "form: an interval that does not exist",
            lambda: page(editor, ADD, form_data(kind="interval", interval="999")),
            "Select a valid choice.",
        ),
        Attempt(
            "form: an unknown time zone",
            lambda: page(editor, ADD, form_data(timezone="Mars/Base")),
            "Mars/Base is not one of",
        ),
        Attempt(
            "form: a queue no live worker consumes",
            lambda: page(editor, ADD, form_data(queue="nobody")),
            "No live worker consumes the queue",
        ),
    ]

    before = _state()
    told, unchanged = [], []
    for attempt in attempts:
        said = attempt.run()
        told.append(attempt.says in said)
        unchanged.append(_state() == before)
    refused = sum(t and u for t, u in zip(told, unchanged, strict=True))
    record(
        "admin: shared timing rows, bad form choices (items 7, 12)",
        refused=(refused, len(attempts)),
        note=f"{len(attempts)} attempts by an editor, a superuser and code",
    )
    failed = [a.what for a, t, u in zip(attempts, told, unchanged, strict=True) if not (t and u)]
    assert failed == []
    assert PeriodicTask.objects.filter(interval=every_5).count() == 12
