"""The health page's queues: the messages waiting in each (asked of the suite's real Redis
broker), the live workers that consume it, a broker that does not answer, and the link to Flower."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from config.celery import app
from devtools.redis_server import free_port
from scheduler import presence
from scheduler.redis_client import client as redis_client

pytestmark = pytest.mark.django_db

URL = "/admin/health/"


@pytest.fixture(autouse=True)
def clean_redis() -> Any:
    redis_client().flushdb()
    yield
    redis_client().flushdb()


def queue_row(html: str, name: str) -> str:
    found = re.search(rf'<tr id="queue-{name}">(.*?)</tr>', html, re.S)
    assert found, f"no row for the queue {name}"
    return found.group(1)


def test_each_queue_shows_what_waits_in_it_and_who_consumes_it(admin_client: Client) -> None:
    # Sent by name, as run now and `celery call` send them: each job to its family's queue.
    for _ in range(3):
        app.send_task("jobs.backup_database")
    app.send_task("jobs.heartbeat")
    app.send_task("scheduler.mark_lost_runs")
    presence.stamp_worker("heavy-1@host", ["heavy"])
    presence.stamp_worker("quick-1@host", ["maintenance", "celery"])
    presence.stamp_worker("quick-2@host", ["maintenance", "celery", "reports"])
    # A worker not seen for an hour consumes nothing any more.
    presence.stamp_worker("gone@host", ["heavy"])
    redis_client().hset(presence.WORKERS_KEY, "gone@host", "2020-01-01T00:00:00+00:00")

    html = admin_client.get(URL).content.decode()
    heavy, quick, default = (queue_row(html, q) for q in ("heavy", "maintenance", "celery"))
    assert '<td class="waiting">3</td>' in heavy
    assert '<td class="consumers">1: heavy-1@host</td>' in heavy
    assert '<td class="waiting">2</td>' in quick
    assert '<td class="consumers">2: quick-1@host, quick-2@host</td>' in quick
    assert '<td class="waiting">0</td>' in default
    # A queue only a worker's -Q names is listed too.
    assert "reports (a worker's -Q only)" in queue_row(html, "reports")


def test_a_queue_nobody_consumes_says_its_jobs_wait(admin_client: Client) -> None:
    app.send_task("jobs.daily_report")
    presence.stamp_worker("quick-1@host", ["maintenance", "celery"])
    heavy = queue_row(admin_client.get(URL).content.decode(), "heavy")
    assert '<td class="waiting">1</td>' in heavy
    assert "none: its jobs wait until a worker consumes it" in heavy


def test_a_broker_that_does_not_answer_shows_unknown(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.conf, "broker_read_url", f"redis://127.0.0.1:{free_port()}/0")
    response = admin_client.get(URL)
    assert response.status_code == 200
    row = queue_row(response.content.decode(), "heavy")
    assert '<span class="ns-bad">unknown: OperationalError: Error 111 connecting to' in row


def test_the_admin_and_the_health_page_link_to_flower(admin_client: Client, settings: Any) -> None:
    assert "Flower" not in admin_client.get("/admin/").content.decode()
    assert 'id="flower-link"' not in admin_client.get(URL).content.decode()
    settings.FLOWER_URL = "https://flower.example.com/"
    for page in ("/admin/", URL):
        link = re.search(r'<p id="flower-link">.*?</p>', admin_client.get(page).content.decode())
        assert link and '<a href="https://flower.example.com/">' in link.group(0)
