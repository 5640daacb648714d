"""Fault drill: a flood of bad admin input. A Schedule editor posts each bad value the issue
found (and the other ways the form is known to be misused) to the schedule add form and to the
change form of an existing schedule. Each must come back as the form again (200, never a 500),
with one error on the field at fault that names what is wrong, and leave every table as it was:
schedules, their timing rows and run policies, the change log beat follows, the admin history,
and the edited schedule itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

import tests.e2e_app  # noqa: F401  (registers tests.sleep, a job with a required argument)
from scheduler.models import ScheduleChange, SchedulePolicy
from scheduler.services import set_policy
from tests.drills import record
from tests.factories import make_schedule
from tests.scheduler.schedule_pages import ADD, change_data, change_url, form_data

pytestmark = [pytest.mark.django_db, pytest.mark.drill]

PAST = "2020-01-01"


@dataclass(frozen=True)
class Bad:
    """One bad input: the form fields posted, the field that must say so, and what it says."""

    case: str
    fields: dict[str, str]
    field: str
    says: str
    on_change: bool = True  # also posted to the change form of an existing schedule


def bad_inputs(rows: dict[str, Any]) -> list[Bad]:
    """The flood; `rows` are timing rows a script made (the form only picks them)."""
    return [
        # Item 8: numbers out of range.
        Bad("time limit 3e9", {"time_limit": "3000000000"}, "time_limit", "LONGEST_JOB_SECONDS"),
        Bad("time limit 1e9", {"time_limit": "1000000000"}, "time_limit", "LONGEST_JOB_SECONDS"),
        Bad("soft limit 3e9", {"soft_time_limit": "3000000000"}, "soft_time_limit", "longer"),
        Bad("max_retries 1e6", {"max_retries": "1000000"}, "max_retries", "above the most, 50"),
        Bad("max_retries -1", {"max_retries": "-1"}, "max_retries", "greater than or equal to 0"),
        Bad("start deadline 3e9", {"start_deadline": "3000000000"}, "start_deadline", "a week"),
        Bad("time limit 0", {"time_limit": "0"}, "time_limit", "greater than or equal to 1"),
        Bad("soft >= hard", {"soft_time_limit": "700"}, "soft_time_limit", "below the hard"),
        Bad("interval 10^9 days", interval(rows["huge"]), "interval", "longer than 366 days"),
        Bad(
            "solar at latitude 100",
            solar(rows["nowhere"]),
            "solar",
            "latitude 100.000000 is invalid",
        ),
        # Item 9: arguments checked by type and size, not only by name.
        Bad("day: 5", {"kwargs": '{"day": 5}'}, "kwargs", "day: expected a date as YYYY-MM-DD"),
        Bad("day: yesterday", {"kwargs": '{"day": "yesterday"}'}, "kwargs", "day: expected"),
        Bad("force: yes", {"kwargs": '{"force": "yes"}'}, "kwargs", "force: expected true or"),
        Bad("1 MB kwargs", {"kwargs": f'{{"day": "{"x" * 1_000_000}"}}'}, "kwargs", "10,000"),
        Bad("1 MB args", {"args": f'["{"x" * 1_000_000}"]'}, "args", "10,000"),
        Bad("malformed JSON", {"kwargs": "{day: 1}"}, "kwargs", "Not valid JSON"),
        Bad("kwargs not an object", {"kwargs": '["2026-01-01"]'}, "kwargs", "Must be a JSON dict"),
        Bad("unknown argument", {"kwargs": '{"dya": "2026-01-01"}'}, "kwargs", "'dya'"),
        Bad(
            "too many args",
            {"args": '["2026-01-01", true, 3]', "kwargs": "{}"},
            "args",
            "Too many positional",
        ),
        Bad(
            "seconds: a",
            {"task": "tests.sleep", "kwargs": '{"seconds": "a"}'},
            "kwargs",
            'seconds: expected a number, got "a"',
        ),
        Bad("missing argument", {"task": "tests.sleep", "kwargs": "{}"}, "kwargs", "'seconds'"),
        Bad("unknown job", {"task": "jobs.nope"}, "task", "jobs.nope is not one of"),
        # Item 10: never runs, or fires at once.
        Bad("expired in 2020", {"expires_0": PAST, "expires_1": "00:00"}, "expires", "expired"),
        Bad("clocked in 2020", clocked(rows["past"]), "clocked", "has passed"),
        Bad("interval of 0", interval(rows["zero"]), "interval", "too often"),
        Bad("interval of 1 s", interval(rows["second"]), "interval", "at least 10 seconds"),
        Bad("interval of 1 µs", interval(rows["micro"]), "interval", "too often"),
        # The other admin cases.
        Bad("crontab minute 61", {"minute": "61"}, "minute", "61 is out of range 0-59"),
        Bad(
            "crontab 31 Feb", {"day_of_month": "31", "month_of_year": "2"}, "day_of_month", "never"
        ),
        Bad("time zone Mars", {"timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
        Bad("taken name", {"name": "taken"}, "name", "'taken' already exists", on_change=False),
    ]


def interval(row: IntervalSchedule) -> dict[str, str]:
    return {"kind": "interval", "interval": str(row.pk)}


def solar(row: SolarSchedule) -> dict[str, str]:
    return {"kind": "solar", "solar": str(row.pk)}


def clocked(row: ClockedSchedule) -> dict[str, str]:
    return {"kind": "clocked", "clocked": str(row.pk), "one_off": "on"}


def state(edited: PeriodicTask) -> dict[str, Any]:
    """What a bad post must leave as it was."""
    tables = (
        PeriodicTask,
        SchedulePolicy,
        CrontabSchedule,
        IntervalSchedule,
        SolarSchedule,
        ClockedSchedule,
        ScheduleChange,
        LogEntry,
    )
    return {
        "counts": {table.__name__: table.objects.count() for table in tables},
        "edited": PeriodicTask.objects.filter(pk=edited.pk).values().get(),
        "policy": list(SchedulePolicy.objects.filter(periodic_task=edited).values()),
    }


def post(client: Client, url: str, data: dict[str, str]) -> tuple[int, str, list[str]]:
    """(status, page, errors of the form's fields by 'field: message')."""
    response = client.post(url, data)
    if response.status_code != 200 or response.context is None:
        return response.status_code, "", []
    form = response.context["adminform"].form
    errors = [
        f"{field}: {message}" for field, messages in form.errors.items() for message in messages
    ]
    return 200, response.content.decode(), errors


def test_a_flood_of_bad_admin_input_is_refused_with_a_message_and_saves_nothing(
    editor_client: Client,
) -> None:
    editor_client.raise_request_exception = False  # a 500 is counted, not raised
    rows = {
        "huge": IntervalSchedule.objects.create(every=10**9, period="days"),
        "zero": IntervalSchedule.objects.create(every=0, period="seconds"),
        "second": IntervalSchedule.objects.create(every=1, period="seconds"),
        "micro": IntervalSchedule.objects.create(every=1, period="microseconds"),
        "nowhere": SolarSchedule.objects.create(event="sunrise", latitude=100, longitude=10),
        "past": ClockedSchedule.objects.create(clocked_time=timezone.now() - timedelta(days=2000)),
    }
    make_schedule("taken", task="jobs.daily_report")
    edited = make_schedule(
        "edited", task="jobs.daily_report", kwargs='{"day": "2026-01-31"}', enabled=True
    )
    set_policy(edited, {"max_retries": 2})
    cases = bad_inputs(rows)
    refused, total, failures = 0, 0, []
    for n, bad in enumerate(cases):
        # A name of its own: a case the form wrongly saves does not make the next one's refused.
        targets = [("add", ADD, form_data(**{"name": f"new-{n}", **bad.fields}))]
        if bad.on_change:
            targets.append(("change", change_url(edited), change_data(edited, **bad.fields)))
        for form, url, data in targets:
            total += 1
            before = state(edited)
            status, page, errors = post(editor_client, url, data)
            on_field = [e for e in errors if e.startswith(f"{bad.field}: ")]
            said = [e for e in on_field if bad.says in e] if len(on_field) == 1 else []
            unchanged = state(edited) == before
            if status == 200 and said and escape(said[0].split(": ", 1)[1]) in page and unchanged:
                refused += 1
            else:
                failures.append(f"{bad.case} ({form}): {status}, {errors[:3]}, kept={unchanged}")
    record(
        "a flood of bad admin input (schedule add and change forms)",
        refused=(refused, total),
        note=f"{len(cases)} bad inputs, each posted to the add form and most to a change form",
    )
    assert failures == [], "\n".join(failures)
    assert refused == total
