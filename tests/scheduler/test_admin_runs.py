from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from scheduler.models import JobRun
from scheduler.presentation import human_duration
from tests.factories import create_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def runs() -> list[JobRun]:
    now = timezone.now()
    return [
        create_run(
            "jobs.backup_database",
            JobRun.Status.FAILED,
            now,
            task_id="t1",
            schedule="nightly-backup",
            finished_at=now,
            duration_seconds=4000.0,
            error_type="OSError",
            error_message="No space left",
            sentry_event_id="a" * 32,
        ),
        create_run(
            "jobs.heartbeat",
            JobRun.Status.SUCCEEDED,
            now,
            task_id="t2",
            trigger="manual",
            finished_at=now,
            duration_seconds=0.25,
        ),
    ]


def test_run_list_filters_and_shows_durations(admin_client: Client, runs: list[JobRun]) -> None:
    page = admin_client.get("/admin/scheduler/jobrun/", {"status__exact": "failed"})
    assert page.status_code == 200
    assert [r.job for r in page.context["cl"].result_list] == ["jobs.backup_database"]
    assert "1 h 6 min" in page.content.decode()
    search = admin_client.get("/admin/scheduler/jobrun/", {"q": "No space"})
    assert [r.job for r in search.context["cl"].result_list] == ["jobs.backup_database"]
    everything = admin_client.get("/admin/scheduler/jobrun/")
    assert len(everything.context["cl"].result_list) == 2


def test_sentry_link_when_configured(
    admin_client: Client, runs: list[JobRun], settings: object
) -> None:
    settings.SENTRY_EVENT_URL = "https://acme.sentry.io/issues/?query={event_id}"  # type: ignore[attr-defined]
    html = admin_client.get("/admin/scheduler/jobrun/").content.decode()
    assert f'href="https://acme.sentry.io/issues/?query={"a" * 32}"' in html


def test_runs_are_read_only(admin_client: Client, runs: list[JobRun]) -> None:
    run = runs[0]
    assert admin_client.get("/admin/scheduler/jobrun/add/").status_code == 403
    detail = admin_client.get(f"/admin/scheduler/jobrun/{run.pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    admin_client.post(f"/admin/scheduler/jobrun/{run.pk}/change/", {"status": "succeeded"})
    run.refresh_from_db()
    assert run.status == JobRun.Status.FAILED
    assert (
        admin_client.post(f"/admin/scheduler/jobrun/{run.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert JobRun.objects.filter(pk=run.pk).exists()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.25, "250 ms"),
        (1.25, "1.2 s"),
        (42, "42 s"),
        (125, "2 min 5 s"),
        (7260, "2 h 1 min"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.django_db(transaction=False)
def test_run_list_of_a_million_runs_renders_with_a_bounded_number_of_queries(
    admin_client: Client, django_assert_max_num_queries
) -> None:
    from tests.factories import insert_runs

    insert_runs(1_000_000, spacing_seconds=90)  # about three years
    assert JobRun.objects.count() == 1_000_000
    # session, user, the schedule filter's names, the (estimated-free) count, the page, the
    # date hierarchy's first and last run
    with django_assert_max_num_queries(8):
        page = admin_client.get("/admin/scheduler/jobrun/")
    assert page.status_code == 200
    assert len(page.context["cl"].result_list) == 50
    newest = JobRun.objects.order_by("-started_at").first()
    assert newest is not None and newest in page.context["cl"].result_list
    html = page.content.decode()
    year = timezone.localtime(newest.started_at).year
    assert f"?started_at__year={year}" in html, "the date hierarchy links the runs' years"
    # Filtered and drilled down, still bounded.
    with django_assert_max_num_queries(8):
        failed = admin_client.get(
            "/admin/scheduler/jobrun/",
            {"status": "failed", "job": "jobs.job3", "started_at__year": str(year)},
        )
    assert failed.status_code == 200
    assert {r.status for r in failed.context["cl"].result_list} == {"failed"}
    assert {r.job for r in failed.context["cl"].result_list} == {"jobs.job3"}
