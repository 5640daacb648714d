"""The run list at scale: its schedule filter is searched, not listed; search finds runs."""

from __future__ import annotations

import pytest
from django.test import Client

from scheduler.models import JobRun
from tests.factories import create_run, make_schedule

pytestmark = pytest.mark.django_db

URL = "/admin/scheduler/jobrun/"


def sidebar(page: str) -> str:
    return page[page.index('data-filter-title="schedule"') :].split("</details>")[0]


def test_the_schedule_filter_is_a_text_box_not_a_list_of_every_schedule(
    admin_client: Client,
) -> None:
    for i in range(30):
        make_schedule(f"report-{i:02d}")
    make_schedule("nightly-backup")
    page = admin_client.get(URL).content.decode()
    box = sidebar(page)
    assert 'name="schedule_name"' in box
    assert "report-00" not in box and "nightly-backup" not in box


def test_typing_part_of_a_name_lists_the_runs_and_links_the_schedules(
    admin_client: Client,
) -> None:
    for name in ["nightly-backup", "weekly-backup", "heartbeat"]:
        make_schedule(name)
        create_run("jobs.backup_database", schedule=name)
    old = create_run("jobs.backup_database", schedule="deleted-backup")  # its schedule is gone

    response = admin_client.get(URL, {"schedule_name": "BACKUP", "status__exact": "succeeded"})
    assert {run.schedule for run in response.context["cl"].result_list} == {
        "nightly-backup",
        "weekly-backup",
    }
    box = sidebar(response.content.decode())
    assert 'value="BACKUP"' in box
    # The other filters stay when the text changes.
    assert '<input type="hidden" name="status__exact" value="succeeded">' in box
    assert "?schedule=nightly-backup&amp;schedule_name=BACKUP&amp;status__exact=succeeded" in box
    assert "heartbeat" not in box

    one = admin_client.get(URL, {"schedule": "nightly-backup", "schedule_name": "BACKUP"})
    assert [run.schedule for run in one.context["cl"].result_list] == ["nightly-backup"]
    # A deleted schedule's runs: by the exact name, as before.
    gone = admin_client.get(URL, {"schedule": "deleted-backup"})
    assert list(gone.context["cl"].result_list) == [old]
    assert "deleted-backup" in sidebar(gone.content.decode())


def test_many_matches_show_ten_names_and_a_count(admin_client: Client) -> None:
    for i in range(25):
        make_schedule(f"report-{i:02d}")
    box = sidebar(admin_client.get(URL, {"schedule_name": "report"}).content.decode())
    assert "report-09" in box and "report-10" not in box
    assert "and 15 more" in box
    nothing = sidebar(admin_client.get(URL, {"schedule_name": "zzz"}).content.decode())
    assert "No schedule's name contains “zzz”" in nothing


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("jobs.backup_database", "backup"),  # the job
        ("backup_DATABASE", "backup"),  # part of it, any case
        ("NIGHTLY", "backup"),  # part of the schedule's name
        ("refresh-old", "refresh"),  # the whole name of a schedule since removed
        ("task-0042", "heartbeat"),  # the task id, exactly
        ("no SPACE", "backup"),  # words of the error message
        ('"No space left"', "backup"),  # a phrase of it
        ("OSError", "backup"),  # the error type
        ("missed beat", "missed"),  # a missed run's reason (it has no error type)
    ],
)
def test_search_finds_runs_by_job_schedule_task_id_and_error(
    admin_client: Client, query: str, expected: str
) -> None:
    backup = create_run(
        "jobs.backup_database",
        JobRun.Status.FAILED,
        schedule="nightly-backup",
        error_type="OSError",
        error_message="[Errno 28] No space left on device",
    )
    make_schedule("nightly-backup", task="jobs.backup_database")
    heartbeat = create_run("jobs.heartbeat", schedule="heartbeat", task_id="task-0042")
    refresh = create_run("jobs.refresh_cache", schedule="refresh-old")
    missed = create_run(
        "jobs.cleanup", JobRun.Status.MISSED, error_message="not sent: no beat led (missed)"
    )
    runs = {"backup": backup, "heartbeat": heartbeat, "refresh": refresh, "missed": missed}
    found = list(admin_client.get(URL, {"q": query}).context["cl"].result_list)
    assert found == [runs[expected]]


def test_a_word_that_matches_nothing_finds_nothing(admin_client: Client) -> None:
    create_run("jobs.heartbeat", schedule="heartbeat")
    assert not admin_client.get(URL, {"q": "heartbeat nosuchword"}).context["cl"].result_list


def test_a_search_counts_its_matches_up_to_a_limit_and_still_lists_them(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler.admin import runs as run_admin

    monkeypatch.setattr(run_admin, "SEARCH_COUNT_LIMIT", 3)
    made = [
        create_run("jobs.backup_database", JobRun.Status.FAILED, error_message=f"disk full {i}")
        for i in range(5)
    ]
    create_run("jobs.heartbeat")
    response = admin_client.get(URL, {"q": "disk full"})
    page = response.content.decode()
    assert "more than 3 job runs" in page
    assert list(response.context["cl"].result_list) == made[::-1]  # newest first, all of them
    # The date links are left out while searching; without a search they are back.
    assert "started_at__year=" not in page
    assert "started_at__year=" in admin_client.get(URL).content.decode()
    few = admin_client.get(URL, {"q": "disk full 4"}).content.decode()
    assert "1 job run" in few and "more than" not in few
