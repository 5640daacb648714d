"""An operator edits and runs a schedule in the admin, in a real browser (Chromium, headless).

A real worker runs the job the operator starts with "Run now". Screenshots of every step are
written under var/screenshots/<test name>/.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from playwright.sync_api import Page, expect

from scheduler.models import JobRun
from tests.browser.conftest import ADMIN_PASSWORD, Shots
from tests.processes import Process, child_env, start_worker

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")


def next_daily(hour: int, minute: int) -> datetime:
    """The next hh:mm in Shanghai, independently of the code under test."""
    now = timezone.now().astimezone(SHANGHAI)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def log_in(page: Page, base: str, shot: Shots) -> None:
    User.objects.create_superuser("operator", "operator@example.com", ADMIN_PASSWORD)
    page.goto(f"{base}/admin/scheduler/schedule/")
    expect(page).to_have_url(f"{base}/admin/login/?next=/admin/scheduler/schedule/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", ADMIN_PASSWORD)
    shot("login")
    page.click("input[type=submit]")
    expect(page.locator("#content h1")).to_have_text("Select schedule to change")


def fill_crontab(page: Page, minute: str, hour: str) -> None:
    page.check("input[name=kind][value=crontab]")
    page.fill("#id_minute", minute)
    page.fill("#id_hour", hour)
    for field in ("day_of_month", "month_of_year", "day_of_week"):
        page.fill(f"#id_{field}", "*")


def preview_times(page: Page) -> Any:
    return page.locator("#schedule-preview .preview-times li")


def test_create_preview_save_reject_run_and_disable(
    page: Page, live_server: Any, shot: Shots, processes: list[Process]
) -> None:
    processes.append(start_worker("browser-worker", child_env(), concurrency=1))
    base = live_server.url
    log_in(page, base, shot)

    # Create a crontab schedule; the preview follows what is typed, before saving.
    page.goto(f"{base}/admin/scheduler/schedule/add/")
    page.fill("#id_name", "nightly-heartbeat")
    page.select_option("#id_task", "jobs.heartbeat")
    fill_crontab(page, "30", "2")
    times = preview_times(page)
    expect(times).to_have_count(5)
    expect(times.first).to_contain_text("02:30 CST")
    first_0230 = next_daily(2, 30).strftime("%Y-%m-%d %H:%M")
    expect(times.first).to_have_text(f"{first_0230} CST")
    shot("preview-02-30")
    page.fill("#id_hour", "4")
    expect(times.first).to_have_text(f"{next_daily(4, 30):%Y-%m-%d %H:%M} CST")
    for i in range(5):
        expect(times.nth(i)).to_contain_text("04:30 CST")
    shot("preview-04-30")
    assert not PeriodicTask.objects.exists(), "the preview saves nothing"

    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    row = page.locator("#result_list tr", has_text="nightly-heartbeat")
    expect(row).to_contain_text("At 04:30, every day (Asia/Shanghai)")
    expect(row.locator("td.field-next_run")).to_have_text(f"{next_daily(4, 30):%Y-%m-%d %H:%M} CST")
    shot("saved-in-list")
    saved = PeriodicTask.objects.get(name="nightly-heartbeat")
    assert (saved.crontab.minute, saved.crontab.hour) == ("30", "4")
    assert str(saved.crontab.timezone) == "Asia/Shanghai"

    # An invalid crontab: the error on the field, nothing saved.
    page.goto(f"{base}/admin/scheduler/schedule/add/")
    page.fill("#id_name", "broken-crontab")
    page.select_option("#id_task", "jobs.heartbeat")
    fill_crontab(page, "61", "2")
    expect(page.locator("#schedule-preview .preview-errors")).to_contain_text("61")
    page.click("input[name=_save]")
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".errorlist")).to_contain_text("minute: 61 is out of range 0-59")
    shot("invalid-crontab")
    assert not PeriodicTask.objects.filter(name="broken-crontab").exists()

    # Bad kwargs: not JSON, then an argument the job does not take. Nothing saved.
    fill_crontab(page, "0", "3")
    page.fill("#id_kwargs", "{day: yesterday}")
    page.click("input[name=_save]")
    expect(page.locator(".field-kwargs .errorlist")).to_be_visible()
    shot("kwargs-not-json")
    page.fill("#id_kwargs", '{"nope": 1}')
    page.click("input[name=_save]")
    expect(page.locator(".field-kwargs .errorlist")).to_contain_text("Unknown argument 'nope'")
    shot("kwargs-unknown-argument")
    assert not PeriodicTask.objects.filter(name="broken-crontab").exists()

    # Run now: the real worker runs it; the run appears on the schedule's page.
    page.goto(f"{base}/admin/scheduler/schedule/{saved.pk}/change/")
    page.click("button.run-now-button")
    expect(page.locator(".messagelist")).to_contain_text("started jobs.heartbeat as a manual run")
    shot("run-now-sent")
    recent = page.locator("table.recent-runs tbody tr").first
    for _ in range(60):
        page.goto(f"{base}/admin/scheduler/schedule/{saved.pk}/change/")
        if recent.count() and "Succeeded" in recent.inner_text().title():
            break
        page.wait_for_timeout(500)
    expect(recent).to_contain_text("succeeded")
    expect(recent).to_contain_text("manual")
    expect(recent).to_contain_text("operator")
    shot("run-appears")
    run = JobRun.objects.get(schedule="nightly-heartbeat")
    assert (run.status, run.trigger, run.requested_by) == ("succeeded", "manual", "operator")

    # Disable it from the list.
    page.goto(f"{base}/admin/scheduler/schedule/")
    row = page.locator("#result_list tr", has_text="nightly-heartbeat")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "disable_selected")
    page.click("button[name=index]")
    row = page.locator("#result_list tr", has_text="nightly-heartbeat")
    expect(row.locator("td.field-next_run")).to_have_text("disabled")
    shot("disabled")
    saved.refresh_from_db()
    assert saved.enabled is False
