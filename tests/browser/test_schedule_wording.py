"""What the schedule form says in a real browser (Chromium, headless), away from Shanghai."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from scheduler.policy import KNOB
from scheduler.selectors import registered_jobs
from tests.browser.conftest import ADMIN_PASSWORD, Shots

pytestmark = pytest.mark.e2e


@pytest.fixture
def page_in_utc(browser: Browser, live_server: Any, live_settings: None) -> Iterator[Page]:
    """A browser whose clock is in UTC, 8 hours behind the server's Asia/Shanghai."""
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    User.objects.create_superuser("operator", "operator@example.com", ADMIN_PASSWORD)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/scheduler/schedule/add/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#content h1")).to_have_text("Add schedule")
    yield page
    context.close()


def test_date_fields_say_times_are_shanghai_not_hours_behind(
    page_in_utc: Page, request: pytest.FixtureRequest
) -> None:
    shot = Shots(page_in_utc, request.node.name)
    notes = page_in_utc.locator(".timezonewarning")
    expect(notes.first).to_have_text("Times are Asia/Shanghai.")
    shot("time-zone-note")
    assert set(notes.all_inner_texts()) == {"Times are Asia/Shanghai."}
    assert page_in_utc.get_by_text("server time").count() == 0


def test_a_refused_save_keeps_the_picked_jobs_hints(
    page_in_utc: Page, request: pytest.FixtureRequest
) -> None:
    page, shot = page_in_utc, Shots(page_in_utc, request.node.name)
    page.fill("#id_name", "nightly-report")
    page.select_option("#id_task", "jobs.daily_report")
    page.fill("#id_minute", "61")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist").first).to_have_text("minute: 61 is out of range 0-59")
    shot("refused")

    job = registered_jobs()["jobs.daily_report"]
    expect(page.locator("#job-description")).to_contain_text(job.description)
    for name in ("overlap", "time_limit", "max_retries"):
        expect(page.locator(f'.job-default[data-policy="{name}"]')).to_have_text(
            KNOB[name].in_words(job.defaults[name])
        )
