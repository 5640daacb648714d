"""Every run-policy knob has bounds, declared once in scheduler.policy.KNOBS: the schedule form
(see test_admin_bad_input), the service that stores overrides and the system checks read them."""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_app
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from scheduler.models import SchedulePolicy
from scheduler.policy import KNOB
from scheduler.services import set_policy
from tests.factories import make_schedule

pytestmark = pytest.mark.django_db


def test_each_number_knob_is_bounded_on_both_sides(settings: Any) -> None:
    settings.LONGEST_JOB_SECONDS = 7200
    assert {name: (k.min_value, k.limit()) for name, k in KNOB.items() if not k.choices} == {
        "soft_time_limit": (1, 7200),
        "time_limit": (1, 7200),
        "max_retries": (0, 50),
        "start_deadline": (1, 604800),
    }
    # Within PostgreSQL's integer, whatever LONGEST_JOB_SECONDS says.
    assert all((k.limit() or 0) < 2**31 for k in KNOB.values())


def test_the_service_refuses_an_override_out_of_bounds_and_keeps_the_old_one() -> None:
    schedule = make_schedule("nightly")
    set_policy(schedule, {"max_retries": 2})
    with pytest.raises(ValueError) as raised:
        set_policy(schedule, {"max_retries": 1_000_000, "start_deadline": 3_000_000_000})
    assert str(raised.value) == (
        "max_retries: 1000000 is above the most, 50: retries wait up to 10 minutes each, so "
        "more would report a failure only after more than 8 hours. start_deadline: "
        "3000000000 s is above the most, 604800 s: a run that has not started within a week "
        "is stale."
    )
    assert SchedulePolicy.objects.get(periodic_task=schedule).overrides() == {"max_retries": 2}


def test_a_job_declaring_a_knob_out_of_bounds_fails_the_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call_command("check")  # registers the jobs
    monkeypatch.setattr(current_app.tasks["jobs.heartbeat"], "max_retries", 1000)
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    assert (
        "(scheduler.E001) Job jobs.heartbeat has max_retries=1000: 1000 is above the most, 50"
        in str(raised.value)
    )
