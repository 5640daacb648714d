"""Run controls in the admin: retry a run, cancel a running one, run a schedule now with other
arguments. Who may, what each refuses and says, and what it records (messages in the suite's
real Redis broker; the runs they start are tests/e2e/test_run_controls.py's)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from scheduler.models import JobRun, Schedule
from scheduler.recording import leases
from tests.factories import create_run, make_schedule
from tests.scheduler.schedule_pages import change_url, published

pytestmark = pytest.mark.django_db

S = JobRun.Status


def run_page(run: JobRun) -> str:
    return f"/admin/scheduler/jobrun/{run.pk}/change/"


def retry_url(run: JobRun) -> str:
    return f"/admin/scheduler/jobrun/{run.pk}/retry/"


def cancel_url(run: JobRun) -> str:
    return f"/admin/scheduler/jobrun/{run.pk}/cancel/"


def with_arguments_url(schedule: Schedule) -> str:
    return f"/admin/scheduler/schedule/{schedule.pk}/run-with-arguments/"


def notices(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def failed_report_run(**fields: Any) -> JobRun:
    """A failed run of the daily report for a given day, as a worker recorded it."""
    fields.setdefault("args", [])
    fields.setdefault("kwargs", {"day": "2026-11-30", "force": True})
    return create_run(
        "jobs.daily_report",
        fields.pop("status", S.FAILED),
        schedule="report",
        error_type="SMTPServerDisconnected",
        finished_at=timezone.now(),
        **fields,
    )


# --- Retry -------------------------------------------------------------------------------------


def test_retry_sends_the_runs_own_arguments_as_a_new_run_linked_to_it(
    editor_client: Client, broker: Any
) -> None:
    # The schedule's arguments changed since: a retry is of the run, not of the schedule.
    make_schedule("report", task="jobs.daily_report", kwargs='{"force": false}')
    run = failed_report_run()

    page = editor_client.get(run_page(run)).content.decode()
    assert "Retry</button>" in page and "Cancel…" not in page
    response = editor_client.post(retry_url(run), follow=True)

    [notice] = notices(response)
    assert notice.startswith(f"Run #{run.pk} of jobs.daily_report sent again as a new run by erin")
    [message] = published(broker)
    assert message["headers"]["task"] == "jobs.daily_report"
    assert message["headers"]["id"] != run.task_id
    assert message["kwargs"] == {"day": "2026-11-30", "force": True}
    assert message["headers"]["nightshift_retry_of"] == run.pk
    assert message["headers"]["nightshift_requested_by"] == "erin"
    assert message["headers"]["periodic_task_name"] == "report"
    assert message["headers"].get("nightshift_slot") is None  # its own occurrence, not the slot's


@pytest.mark.parametrize("status", [S.LOST, S.TIMED_OUT])
def test_lost_and_timed_out_runs_may_be_retried(
    editor_client: Client, broker: Any, status: str
) -> None:
    run = failed_report_run(status=status)
    editor_client.post(retry_url(run))
    assert [m["headers"]["nightshift_retry_of"] for m in published(broker)] == [run.pk]


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"status": S.SUCCEEDED}, "succeeded: only a failed, lost or timed-out run can be retried"),
        ({"status": S.RUNNING}, "running: only a failed, lost or timed-out run can be retried"),
        ({"status": S.CANCELLED}, "cancelled: only a failed, lost or timed-out run can be retried"),
        ({"args": None, "kwargs": None}, "has no recorded arguments"),
    ],
)
def test_retry_refuses_other_runs_and_sends_nothing(
    editor_client: Client, broker: Any, fields: dict[str, Any], why: str
) -> None:
    run = failed_report_run(**fields)
    response = editor_client.post(retry_url(run), follow=True)
    [notice] = notices(response)
    assert notice.startswith(f"Run #{run.pk}") and why in notice
    assert notice.endswith("nothing was sent.")
    assert published(broker) == []
    assert JobRun.objects.count() == 1


def test_retry_of_a_job_no_longer_registered_sends_nothing(
    editor_client: Client, broker: Any
) -> None:
    run = create_run("jobs.gone", S.FAILED, args=[], kwargs={})
    response = editor_client.post(retry_url(run), follow=True)
    assert notices(response) == [
        f"Run #{run.pk}: jobs.gone is not a registered job any more; nothing was sent."
    ]
    assert published(broker) == []


def test_retry_is_a_post(editor_client: Client, broker: Any) -> None:
    run = failed_report_run()
    assert editor_client.get(retry_url(run)).status_code == 302
    assert published(broker) == []


def test_the_run_page_says_where_a_run_came_from(editor_client: Client) -> None:
    original = failed_report_run()
    retry = create_run(
        "jobs.daily_report", S.SUCCEEDED, trigger="retry", requested_by="alice", retry_of=original
    )
    retry_page = editor_client.get(run_page(retry)).content.decode()
    assert f'retry of <a href="{run_page(original)}">#{original.pk}</a> by alice' in retry_page
    original_page = editor_client.get(run_page(original)).content.decode()
    assert f'retried as <a href="{run_page(retry)}">#{retry.pk}</a> by alice' in original_page
    # Its arguments, with values of keys that look like credentials hidden.
    assert escape('args [], kwargs {"day": "2026-11-30", "force": true}') in original_page
    secret = create_run("tests.fail", S.FAILED, args=[], kwargs={"db_password": "hunter2"})
    html = editor_client.get(run_page(secret)).content.decode()
    assert "hunter2" not in html and "[Filtered]" in html


# --- Cancel ------------------------------------------------------------------------------------


def running_backup() -> JobRun:
    return create_run(
        "jobs.backup_database", S.RUNNING, worker="w1@host", args=[], kwargs={}, schedule="b"
    )


def test_cancel_asks_first_then_closes_the_run_as_cancelled_by_the_user(
    editor_client: Client, broker: Any
) -> None:
    run = running_backup()
    page = editor_client.get(run_page(run)).content.decode()
    assert f'href="{cancel_url(run)}"' in page and "Retry</button>" not in page

    confirmation = editor_client.get(cancel_url(run))
    assert confirmation.status_code == 200
    assert "Yes, cancel the run" in confirmation.content.decode()
    run.refresh_from_db()
    assert run.status == S.RUNNING  # asking changed nothing

    response = editor_client.post(cancel_url(run), follow=True)

    assert notices(response) == [
        f"Run #{run.pk} of jobs.backup_database cancelled by erin: its worker stops it now, "
        "and its message will not run again."
    ]
    run.refresh_from_db()
    assert (run.status, run.cancelled_by) == (S.CANCELLED, "erin")
    assert run.finished_at is not None and run.duration_seconds is not None
    assert "cancelled by erin" in response.content.decode()
    # Its task id is marked: a later delivery of its message is refused (test_recording).
    assert (
        broker.get(leases.cancel_key(run.task_id))
        == f"run #{run.pk} was cancelled by erin".encode()
    )


def test_cancelling_a_run_that_already_ended_changes_nothing(
    editor_client: Client, broker: Any
) -> None:
    run = create_run("jobs.backup_database", S.SUCCEEDED, finished_at=timezone.now())
    for request in (editor_client.get, editor_client.post):
        response = request(cancel_url(run), follow=True)
        assert notices(response) == [
            f"Run #{run.pk} has already ended (succeeded); nothing was changed."
        ]
    run.refresh_from_db()
    assert run.status == S.SUCCEEDED and run.cancelled_by == ""
    assert broker.get(leases.cancel_key(run.task_id)) is None


# --- Run now with other arguments --------------------------------------------------------------


def report_schedule() -> Schedule:
    return make_schedule("report", task="jobs.daily_report", kwargs='{"force": false}')


def test_run_with_other_arguments_runs_once_with_them_and_keeps_the_schedules(
    editor_client: Client, broker: Any
) -> None:
    schedule = report_schedule()
    page = editor_client.get(change_url(schedule)).content.decode()
    assert f'href="{with_arguments_url(schedule)}"' in page
    form = editor_client.get(with_arguments_url(schedule))
    assert form.status_code == 200
    assert form.context["form"].initial == {"args": "[]", "kwargs": '{"force": false}'}

    response = editor_client.post(
        with_arguments_url(schedule),
        {"args": "[]", "kwargs": '{"day": "2026-11-30", "force": true}'},
        follow=True,
    )

    [notice] = notices(response)
    assert notice.startswith(
        escape(
            "report: started jobs.daily_report as a manual run by erin with args [], kwargs "
            '{"day": "2026-11-30", "force": true}; the schedule keeps its own arguments'
        )
    )
    [message] = published(broker)
    assert message["kwargs"] == {"day": "2026-11-30", "force": True}
    assert message["headers"]["nightshift_requested_by"] == "erin"
    assert message["headers"]["periodic_task_name"] == "report"
    schedule.refresh_from_db()
    assert json.loads(schedule.kwargs) == {"force": False}
    entry = LogEntry.objects.get(object_id=str(schedule.pk))
    assert entry.user_id == User.objects.get(username="erin").pk
    assert entry.get_change_message().startswith("Ran now with other arguments (task ")


@pytest.mark.parametrize(
    ("posted", "field", "error"),
    [
        ({"kwargs": "{'day': 1}"}, "kwargs", "Not valid JSON: Expecting property name"),
        ({"kwargs": "[1]"}, "kwargs", 'Must be a JSON dict, like {"day": "2026-01-31"}.'),
        ({"args": "{}"}, "args", 'Must be a JSON list, like ["a", 2].'),
        (
            {"kwargs": '{"dya": "2026-11-30"}'},
            "kwargs",
            "Unknown argument 'dya': jobs.daily_report takes day, force.",
        ),
        ({"kwargs": '{"day": 5}'}, "kwargs", "day: expected a date as YYYY-MM-DD or null, got 5"),
        (
            {"kwargs": json.dumps({"day": "x" * 10_001})},
            "kwargs",
            "The arguments are 10,014 bytes of JSON; the most is 10,000",
        ),
    ],
)
def test_run_with_other_arguments_checks_them_as_the_schedule_form_does(
    editor_client: Client, broker: Any, posted: dict[str, str], field: str, error: str
) -> None:
    schedule = report_schedule()
    response = editor_client.post(
        with_arguments_url(schedule), {"args": "[]", "kwargs": "{}", **posted}
    )
    assert response.status_code == 200
    [shown] = response.context["form"].errors[field]
    assert shown.startswith(error)
    assert published(broker) == []


# --- Who may -----------------------------------------------------------------------------------


def test_viewers_see_no_controls_and_get_403(viewer_client: Client, broker: Any) -> None:
    failed, running = failed_report_run(), running_backup()
    schedule = report_schedule()
    for run in (failed, running):
        page = viewer_client.get(run_page(run))
        assert page.status_code == 200
        html = page.content.decode()
        assert "Retry</button>" not in html and "Cancel…" not in html
    assert (
        "Run with other arguments" not in viewer_client.get(change_url(schedule)).content.decode()
    )
    for url in (retry_url(failed), cancel_url(running), with_arguments_url(schedule)):
        assert viewer_client.get(url).status_code == 403
        assert viewer_client.post(url, {"args": "[]", "kwargs": "{}"}).status_code == 403
    running.refresh_from_db()
    assert running.status == S.RUNNING
    assert published(broker) == []


def test_anonymous_users_get_the_login_page(client: Client, broker: Any) -> None:
    run, schedule = failed_report_run(), report_schedule()
    for url in (retry_url(run), cancel_url(run), with_arguments_url(schedule)):
        response = client.post(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert published(broker) == []


def test_controls_need_the_csrf_token(editor: Any, broker: Any) -> None:
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(editor)
    run = running_backup()
    assert checked.post(cancel_url(run)).status_code == 403
    run.refresh_from_db()
    assert run.status == S.RUNNING
