"""What the schedule pages say: Nightshift's words instead of django-celery-beat's and Django's
stock texts, one true message per mistake, and a queue no live worker consumes refused."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from scheduler import presence
from scheduler.models import Schedule
from scheduler.policy import KNOB
from scheduler.redis_client import client as redis_client
from scheduler.selectors import registered_jobs
from tests.factories import make_schedule
from tests.scheduler.schedule_pages import ADD, change_url, form_data

pytestmark = pytest.mark.django_db

STOCK_TEXTS = [
    "Short Description For This Task",
    "Detailed description about the details of this Periodic Task",
    "Set to False to disable the schedule",
    "Leave None for default queuing",
    "Set only one schedule type, leave the others null",
    "If True, the schedule will only run the task a single time",
    "Datetime when the schedule should begin",
    "JSON encoded",
]


def _errors(html: str) -> list[str]:
    """The text of every error message on the page."""
    lists = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    return [item for found in lists for item in re.findall(r"<li>(.*?)</li>", found, re.S)]


def test_the_form_speaks_nightshifts_words(editor_client: Client) -> None:
    html = editor_client.get(ADD).content.decode()
    for stock in STOCK_TEXTS:
        assert stock not in html
    assert "Untick to stop the schedule without deleting it." in html
    assert "Notes for the people who read or edit this schedule (optional)." in html
    # Date and time fields say the time zone instead of comparing it with the browser's.
    note = r'src="/static/scheduler/time_zone_note\.\w+\.js" data-time-zone="Asia/Shanghai"'
    assert re.search(note, html)


def test_after_a_refused_save_the_hints_are_those_of_the_posted_job(
    editor_client: Client,
) -> None:
    response = editor_client.post(ADD, form_data(minute="61"))
    html = response.content.decode()
    assert response.status_code == 200 and _errors(html) == ["minute: 61 is out of range 0-59"]
    defaults = registered_jobs()["jobs.daily_report"].defaults
    for name in ("overlap", "time_limit", "max_retries"):
        shown = KNOB[name].in_words(defaults[name])
        assert f'data-policy="{name}">{shown}</span>' in html
    assert "pick a job" not in html


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            {"kind": "interval", "interval": "999"},
            "Select a valid choice. That choice is not one of the available choices.",
        ),
        (
            {"timezone": "Mars/Base"},
            "Select a valid choice. Mars/Base is not one of the available choices.",
        ),
    ],
)
def test_one_mistake_one_true_message(
    editor_client: Client, typed: dict[str, str], message: str
) -> None:
    response = editor_client.post(ADD, form_data(**typed))
    assert _errors(response.content.decode()) == [message]
    assert not Schedule.objects.exists()


def test_a_queue_no_live_worker_consumes_is_refused(editor_client: Client, broker: Any) -> None:
    response = editor_client.post(ADD, form_data(queue="reports"))
    assert _errors(response.content.decode()) == [
        "No live worker consumes the queue &#x27;reports&#x27;, so its runs would wait there "
        "unseen (queues consumed now: none: no worker is online). Start a worker with "
        "`celery -A config worker -Q reports`, or choose default (the job&#x27;s own queue)."
    ]
    assert not Schedule.objects.exists()

    presence.stamp_worker("w1@host", ["celery"])
    response = editor_client.post(ADD, form_data(queue="reports"))
    assert "queues consumed now: celery)" in _errors(response.content.decode())[0]

    presence.stamp_worker("w2@host", ["celery", "reports"])
    assert editor_client.post(ADD, form_data(queue="reports")).status_code == 302
    assert Schedule.objects.get(name="nightly-report").queue == "reports"
    assert editor_client.post(ADD, form_data(name="default-queue")).status_code == 302

    # The workers gone (a deploy restarting them): an edit of something else that keeps the
    # queue as it was is saved; changing to a queue nobody consumes is still refused.
    redis_client().flushdb()
    saved = Schedule.objects.get(name="nightly-report")
    edit = form_data(queue="reports", description="the nightly report")
    assert editor_client.post(change_url(saved), edit).status_code == 302
    assert Schedule.objects.get(pk=saved.pk).description == "the nightly report"
    response = editor_client.post(change_url(saved), form_data(queue="archive"))
    assert "No live worker consumes the queue &#x27;archive&#x27;" in response.content.decode()


def _queue_options(html: str) -> list[tuple[str, str]]:
    """The (value, label) of each option of the form's queue select."""
    [select] = re.findall(r'<select name="queue"[^>]*>(.*?)</select>', html, re.S)
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select)


def test_the_form_offers_only_the_queues_live_workers_consume(
    editor_client: Client, broker: Any
) -> None:
    assert _queue_options(editor_client.get(ADD).content.decode()) == [
        ("", "default: the job&#x27;s own queue")
    ]
    presence.stamp_worker("w1@host", ["celery", "heavy", "maintenance"])
    presence.stamp_worker("w2@host", ["reports"])
    presence.stamp_worker("gone@host", ["archive"])
    redis_client().hset(presence.WORKERS_KEY, "gone@host", "2020-01-01T00:00:00+00:00")
    assert [value for value, _ in _queue_options(editor_client.get(ADD).content.decode())] == [
        "", "celery", "heavy", "maintenance", "reports"
    ]  # fmt: skip

    # A schedule keeps its own queue on edit, said to be unconsumed, even with nobody on it.
    saved = make_schedule("archiving", task="jobs.housekeeping", queue="archive")
    options = _queue_options(editor_client.get(change_url(saved)).content.decode())
    assert options[-1] == ("archive", "archive (no live worker consumes it now)")
    assert 'value="archive" selected' in editor_client.get(change_url(saved)).content.decode()


def test_run_now_keeps_the_name_as_typed(editor_client: Client, broker: Any) -> None:
    schedule = make_schedule("nightly-report", task="jobs.daily_report")
    response = editor_client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/", follow=True)
    assert '<li class="success">nightly-report: started jobs.daily_report' in (
        response.content.decode()
    )
