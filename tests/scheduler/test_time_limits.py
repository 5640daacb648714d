"""A time limit above LONGEST_JOB_SECONDS is refused: in code by a system check, in the admin by
the schedule form (past it, Redis hands a job still running to a second worker)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client
from django_celery_beat.models import PeriodicTask

from tests.scheduler.schedule_pages import form_data

pytestmark = pytest.mark.django_db

ADD = "/admin/scheduler/schedule/add/"


def test_the_jobs_in_code_pass_the_checks(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("check")
    assert "System check identified no issues" in capsys.readouterr().out


def test_a_job_whose_time_limit_is_above_the_longest_job_fails_the_checks(settings: Any) -> None:
    # jobs.backup_database declares time_limit=3900 (soft 3600); every other job stays below.
    settings.LONGEST_JOB_SECONDS = 3700
    with pytest.raises(SystemCheckError) as raised:
        call_command("check")
    report = str(raised.value)
    assert (
        "(scheduler.E001) Job jobs.backup_database has time_limit=3900 s, "
        "above LONGEST_JOB_SECONDS=3700 s." in report
    )
    assert (
        "HINT: Lower the time_limit of jobs.backup_database to at most 3700 s, "
        "or raise LONGEST_JOB_SECONDS to at least 3900 s" in report
    )
    assert report.count("scheduler.E001") == 1


def test_an_override_above_the_longest_job_is_a_form_error(
    admin_client: Client, settings: Any
) -> None:
    settings.LONGEST_JOB_SECONDS = 7200
    response = admin_client.post(ADD, form_data(time_limit="7201"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["time_limit"] == [
        "7201 s is longer than LONGEST_JOB_SECONDS (7200 s), the longest a job may run: "
        "past it, the broker hands a job that is still running to another worker."
    ]
    assert "7201 s is longer than LONGEST_JOB_SECONDS (7200 s)" in response.content.decode()
    assert not PeriodicTask.objects.exists()


def test_an_override_of_exactly_the_longest_job_is_saved(
    admin_client: Client, settings: Any
) -> None:
    settings.LONGEST_JOB_SECONDS = 7200
    response = admin_client.post(ADD, form_data(time_limit="7200"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = PeriodicTask.objects.get(name="nightly-report")
    assert schedule.nightshift_policy.time_limit == 7200
