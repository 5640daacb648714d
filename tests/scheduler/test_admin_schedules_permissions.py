"""Who may see and do what on the schedule pages: anonymous users, viewers, editors."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from scheduler.models import SchedulePolicy
from tests.factories import make_schedule
from tests.scheduler.schedule_pages import (
    ADD,
    LIST,
    PREVIEW,
    change_data,
    change_url,
)

pytestmark = pytest.mark.django_db


# --- Permissions ---------------------------------------------------------------------------------


def test_a_viewer_sees_but_cannot_change(viewer_client: Client) -> None:
    schedule = make_schedule("report", task="jobs.daily_report")
    SchedulePolicy.objects.create(periodic_task=schedule, soft_time_limit=100)
    listing = viewer_client.get(LIST)
    assert listing.status_code == 200
    assert "report" in listing.content.decode()
    assert listing.context["action_form"] is None  # no action is open to a viewer
    page = viewer_client.get(change_url(schedule))
    html = page.content.decode()
    assert page.status_code == 200
    assert "At 15:00, every day (Asia/Shanghai)" in html
    assert "<td>100 s</td><td>override</td>" in html
    assert 'name="_save"' not in html
    refused = viewer_client.post(change_url(schedule), change_data(schedule, enabled=None))
    assert refused.status_code == 403
    viewer_client.post(LIST, {"action": "disable_selected", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled
    assert viewer_client.get(ADD).status_code == 403


def test_an_editor_may_not_change_the_policy_without_its_permission(
    editor_client: Client, editor: User
) -> None:
    editor.groups.clear()
    editor.user_permissions.set(
        Group.objects.get(name="Schedule editors")
        .permissions.exclude(codename="change_schedulepolicy")
        .all()
    )
    schedule = make_schedule("report", task="jobs.daily_report")
    response = editor_client.post(change_url(schedule), change_data(schedule, max_retries="9"))
    assert response.status_code == 302
    assert not SchedulePolicy.objects.filter(periodic_task=schedule).exists()


def test_nothing_without_login(client: Client) -> None:
    schedule = make_schedule("secret-job", kwargs='{"token": "abc"}')
    for url in (LIST, change_url(schedule), PREVIEW + "?kind=crontab&minute=0"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
        assert b"secret-job" not in response.content and b"CST" not in response.content
    run = client.post(f"/admin/scheduler/schedule/{schedule.pk}/run/")
    assert run.status_code == 302 and run["Location"].startswith("/admin/login/")
