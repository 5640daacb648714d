"""The run strips of the schedule admin: the last 100 on a schedule's page, the last 20 per
schedule on the list, drawn from one query for the whole page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scheduler import charts
from scheduler.models import JobRun
from tests.factories import create_runs, job_run, make_schedule
from tests.scheduler.schedule_pages import LIST, change_url, row_of

pytestmark = pytest.mark.django_db

BAR = re.compile(
    r'<a href="/admin/scheduler/jobrun/(\d+)/change/" class="run-bar" data-status="(\w+)"'
)


def history(schedule: str, count: int, newest_hours_ago: float = 1) -> list[JobRun]:
    """`count` runs of `schedule`, an hour apart, oldest first; every fifth one failed."""
    newest = timezone.now() - timedelta(hours=newest_hours_ago)
    return create_runs(
        job_run(
            "jobs.heartbeat",
            "failed" if i % 5 == 0 else "succeeded",
            newest - timedelta(hours=count - 1 - i),
            1.0 + i % 4,
            schedule=schedule,
        )
        for i in range(count)
    )


def strip_in(html: str) -> list[tuple[int, str]]:
    return [(int(pk), status) for pk, status in BAR.findall(html)]


def test_schedule_page_draws_its_last_100_runs_for_editors_and_viewers(
    admin_client: Client, viewer_client: Client
) -> None:
    schedule = make_schedule("hourly")
    runs = history("hourly", 120)
    history("another", 10)  # not this schedule's

    for client in (admin_client, viewer_client):
        html = client.get(change_url(schedule)).content.decode()
        field = html[html.index('<fieldset class="module" id="run-strip">') :]
        field = field[: field.index("</svg>")]
        assert 'role="img" aria-label="last 100 runs: 80 succeeded, 20 failed"' in field
        assert strip_in(field) == [(r.pk, r.status) for r in runs[-100:]]
    assert "succeeded: 80" in html and "failed: 20" in html  # the legend
    assert "tallest 4.0 s" in html


def test_schedule_page_without_runs_says_so(admin_client: Client) -> None:
    schedule = make_schedule("idle")
    html = admin_client.get(change_url(schedule)).content.decode()
    field = html[html.index('<fieldset class="module" id="run-strip">') :]
    assert "No runs yet." in field[: field.index("</fieldset>")]
    assert '<svg class="run-strip"' not in html


def test_list_draws_the_last_20_runs_of_each_schedule(admin_client: Client) -> None:
    make_schedule("busy")
    make_schedule("few")
    make_schedule("never")
    busy = history("busy", 45)
    few = history("few", 3, newest_hours_ago=50)
    # Two runs of "busy" started at the same moment as its 20th newest: the strip still has 20.
    twentieth = busy[-20].started_at
    create_runs(job_run(schedule="busy", started_at=twentieth) for _ in range(2))

    html = admin_client.get(LIST).content.decode()

    shown = strip_in(row_of(html, "busy"))
    assert len(shown) == 20
    newest = JobRun.objects.filter(schedule="busy").order_by("-started_at", "-id")[:20]
    assert [pk for pk, _ in shown] == [run.pk for run in reversed(newest)]
    assert strip_in(row_of(html, "few")) == [(r.pk, r.status) for r in few]
    assert 'aria-label="few: last 3 runs: 2 succeeded, 1 failed"' in row_of(html, "few")
    assert "run-bar" not in row_of(html, "never")
    # The legend counts what the page's strips show.
    legend = html[html.index('id="strip-legend"') :]
    legend = legend[: legend.index("</ul>")]
    shown_statuses = [status for _, status in shown] + [r.status for r in few]
    assert f"succeeded: {shown_statuses.count('succeeded')}" in legend
    assert f"failed: {shown_statuses.count('failed')}" in legend


def list_queries(client: Client, **query: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(LIST, query).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


def test_list_strips_cost_one_query_whatever_the_number_of_schedules_shown(
    admin_client: Client,
) -> None:
    for i in range(100):
        make_schedule(f"s{i:03d}")
    create_runs(
        job_run(
            "jobs.heartbeat",
            "succeeded",
            timezone.now() - timedelta(minutes=n),
            1.0,
            schedule=f"s{n % 100:03d}",
        )
        for n in range(100 * 25)
    )

    one = list_queries(admin_client, q="s042")
    page = list_queries(admin_client)
    assert len(one) == len(page)
    strips = [sql for sql in page if sql.startswith('SELECT "scheduler_jobrun".')]
    assert len(strips) == 1, strips
    html = admin_client.get(LIST).content.decode()
    for i in (0, 42, 99):
        assert len(strip_in(row_of(html, f"s{i:03d}"))) == charts.LIST_STRIP.slots
