from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/health/",
        "/admin/scheduler/schedule/",
        "/admin/scheduler/schedule/add/",
        "/admin/scheduler/jobrun/",
        "/admin/jobs/backup/",
        "/admin/jobs/report/",
        "/admin/jobs/workerheartbeat/",
        "/admin/django_celery_beat/crontabschedule/",
    ],
)
def test_anonymous_users_get_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_admin_shows_schedules_and_heartbeats(admin_client: Client) -> None:
    index = admin_client.get("/admin/")
    assert index.status_code == 200
    html = index.content.decode()
    for section in ("Schedules", "Job runs", "Backups", "Reports", "Worker heartbeats"):
        assert section in html
    # Nightshift's schedule pages replace django-celery-beat's.
    assert "/admin/django_celery_beat/periodictask/" not in html
    page = admin_client.get("/admin/scheduler/schedule/")
    assert page.status_code == 200
    assert "wrong scheduler" not in page.content.decode().lower()
