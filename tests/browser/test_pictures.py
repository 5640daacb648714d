"""The pictures of run history in a real browser (Chromium, headless): a schedule's strip of its
last 100 runs, the list's strips of the last 20, the health page's runs per hour and backup
sizes. Screenshots of each go under var/screenshots/<test name>/."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from jobs import cache
from scheduler.models import JobRun
from scheduler.redis_client import client as redis_client
from tests.browser.conftest import ADMIN_PASSWORD, Shots
from tests.factories import create_backup, create_runs, job_run, make_schedule

pytestmark = pytest.mark.e2e

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A day of a nightly job: mostly fine, some failures, a timeout, a slot skipped and one missed.
STATUSES = ["succeeded"] * 6 + ["failed", "succeeded", "skipped_overlap", "succeeded"]


def log_in(page: Page, base: str, next_url: str) -> None:
    User.objects.create_superuser("operator", "operator@example.com", ADMIN_PASSWORD)
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")


def nightly_runs(schedule: str, count: int) -> list[JobRun]:
    """`count` daily runs, the newest yesterday: durations that grow and wobble, a few failures,
    skips (no duration), one timed out (the longest) and one missed."""
    start = timezone.now() - timedelta(days=count)
    runs = []
    for i in range(count):
        status = STATUSES[i % len(STATUSES)]
        duration = None if status == "skipped_overlap" else 40.0 + i * 2 + (i % 7) * 9
        if i == count - 30:
            status, duration = "timed_out", 660.0
        if i == count - 12:
            status, duration = "missed", None
        runs.append(
            job_run(
                "jobs.backup_database",
                status,
                start + timedelta(days=i, hours=2, minutes=30),
                duration,
                schedule=schedule,
                error_type="SoftTimeLimitExceeded" if status == "timed_out" else "",
                attempt=2 if status == "failed" else 1,
            )
        )
    return create_runs(runs)


def hovered_title(page: Page) -> str:
    """The tooltip the browser shows for what is under the pointer: the <title> of the element
    or of its nearest ancestor that has one."""
    text: str = page.evaluate(
        """() => {
            let el = [...document.querySelectorAll(':hover')].pop();
            for (; el; el = el.parentElement) {
                const title = el.querySelector(':scope > title');
                if (title) return title.textContent;
            }
            return null;
        }"""
    )
    return text


def point_at(page: Page, element: Locator) -> None:
    """Move the pointer onto an element that is in view, without scrolling (as a person would;
    Playwright's hover() may scroll the list's table sideways first)."""
    box = element.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def bar_height(bar: Locator) -> float:
    box = bar.locator("rect.bar").bounding_box()
    assert box is not None
    return float(box["height"])


def test_schedule_page_strip_and_list_strips(page: Page, live_server: Any, shot: Shots) -> None:
    backup = make_schedule("nightly-backup", "30 2 * * *", task="jobs.backup_database")
    make_schedule("hourly-report", "0 * * * *", task="jobs.daily_report")
    make_schedule("new-and-idle", "0 3 * * *")
    runs = nightly_runs("nightly-backup", 130)
    create_runs(
        job_run(
            "jobs.daily_report",
            "succeeded" if i != 2 else "failed",
            timezone.now() - timedelta(hours=5 - i),
            1.0 + i,
            schedule="hourly-report",
        )
        for i in range(5)
    )
    base = live_server.url
    log_in(page, base, f"/admin/scheduler/schedule/{backup.pk}/change/")

    # The schedule page: the last 100 runs, oldest on the left, each bar a link to its run.
    strip = page.locator("#run-strip svg.run-strip")
    expect(strip).to_be_visible()
    expect(strip).to_have_attribute("role", "img")
    expect(strip).to_have_attribute(
        "aria-label",
        "last 100 runs: 79 succeeded, 10 failed, 1 timed out, 9 skipped: overlap, 1 missed",
    )
    bars = strip.locator("a.run-bar")
    expect(bars).to_have_count(100)
    newest = runs[-100:]
    assert bars.first.get_attribute("href") == f"/admin/scheduler/jobrun/{newest[0].pk}/change/"
    assert bars.last.get_attribute("href") == f"/admin/scheduler/jobrun/{newest[-1].pk}/change/"
    legend = page.locator("#run-strip ul.chart-legend")
    expect(legend).to_contain_text("succeeded: 79")
    expect(legend).to_contain_text("timed out: 1")
    page.locator("#run-strip").scroll_into_view_if_needed()

    # The timed-out run is the tallest bar; a skipped run, without a duration, still shows.
    timed_out = strip.locator("a.run-bar[data-status=timed_out]")
    skipped = strip.locator("a.run-bar[data-status=skipped_overlap]").first
    succeeded = strip.locator("a.run-bar[data-status=succeeded]").first
    heights = strip.locator("rect.bar").evaluate_all("bars => bars.map(b => b.getBBox().height)")
    assert heights.index(max(heights)) == 70 and heights.count(max(heights)) == 1
    assert 0 < bar_height(skipped) < bar_height(succeeded) < bar_height(timed_out)
    assert timed_out.locator("rect.bar").get_attribute("fill") != succeeded.locator(
        "rect.bar"
    ).get_attribute("fill")

    # Pointing at a bar tells its times in Shanghai, how long it took, its status and attempt.
    slow = next(r for r in runs if r.status == "timed_out")
    timed_out.hover()
    started = slow.started_at.astimezone(SHANGHAI)
    finished = started + timedelta(seconds=660)
    assert hovered_title(page) == (
        f"started {started:%Y-%m-%d %H:%M:%S} CST\n"
        f"finished {finished:%Y-%m-%d %H:%M:%S} CST\n"
        "took 11 min 0 s\n"
        "timed out, attempt 1 (SoftTimeLimitExceeded)"
    )
    shot("schedule-page-strip")
    page.locator("#run-strip").screenshot(path=str(shot.dir / "strip-only.png"))
    timed_out.click()
    expect(page).to_have_url(f"{live_server.url}/admin/scheduler/jobrun/{slow.pk}/change/")

    # The list: a strip of the last 20 runs per schedule, and what the colours mean.
    page.goto(f"{base}/admin/scheduler/schedule/")
    row = page.locator("#result_list tr", has_text="nightly-backup")
    small = row.locator("td.field-strip svg.run-strip")
    expect(small).to_be_visible()
    expect(small.locator("a.run-bar")).to_have_count(20)
    expect(small).to_have_attribute("aria-label", re.compile(r"^nightly-backup: last 20 runs: "))
    report = page.locator("#result_list tr", has_text="hourly-report")
    expect(report.locator("td.field-strip a.run-bar")).to_have_count(5)
    expect(report.locator("a.run-bar[data-status=failed]")).to_have_count(1)
    idle = page.locator("#result_list tr", has_text="new-and-idle")
    expect(idle.locator("td.field-strip")).to_have_text("—")
    expect(page.locator("#strip-legend")).to_contain_text("failed")
    shot("schedule-list-strips")
    point_at(page, report.locator("a.run-bar").last)
    assert hovered_title(page).endswith("succeeded, attempt 1")
    shot("schedule-list-hover")


def test_health_page_runs_per_hour_and_backup_sizes(
    page: Page, live_server: Any, shot: Shots
) -> None:
    redis_client().flushdb()
    now = timezone.now()
    hour = now.astimezone(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    # Every 5 minutes over the last 24 hours a heartbeat; a failing report three hours ago.
    create_runs(
        job_run("jobs.heartbeat", "succeeded", now - timedelta(minutes=5 * i), 0.2)
        for i in range(1, 24 * 12)
    )
    create_runs(
        job_run("jobs.daily_report", "failed", hour - timedelta(hours=3, minutes=-m), 3.0)
        for m in (1, 20, 40)
    )
    create_runs([job_run("jobs.backup_database", "lost", hour - timedelta(hours=20, minutes=-5))])
    # Backups on most of the last 30 days, growing; none on three days; today's not verified.
    today = now.astimezone(SHANGHAI).replace(hour=2, minute=30, second=0, microsecond=0)
    skipped_days = {4, 5, 17}
    for days_ago in range(29, -1, -1):
        if days_ago not in skipped_days:
            create_backup(
                today - timedelta(days=days_ago),
                f"/srv/backups/nightshift-{days_ago}.dump",
                "postgresql",
                verified=days_ago != 0,
                size_bytes=(300 - days_ago * 3) * 1024 * 1024,
            )
    cache.refresh_all().raise_for_failures()
    log_in(page, live_server.url, "/admin/health/")

    chart = page.locator("#runs-per-hour svg.stacked-columns")
    expect(chart).to_be_visible()
    expect(chart.locator("g.column")).to_have_count(24)
    label = chart.get_attribute("aria-label") or ""
    assert label.startswith("Runs per hour over the last 24 hours: ")
    assert "3 failed" in label and "1 lost" in label
    three_hours_ago = chart.locator("g.column").nth(20)
    expect(three_hours_ago.locator("rect.segment")).to_have_count(2)
    three_hours_ago.locator("rect.segment").last.hover()
    at = hour - timedelta(hours=3)
    assert hovered_title(page) == (
        f"{at:%Y-%m-%d %H}:00 to {at + timedelta(hours=1):%H}:00 CST: 15 runs\n3 failed"
    )
    expect(chart.locator("text.chart-tick").first).to_have_text(
        f"{hour - timedelta(hours=23):%H}:00"
    )
    expect(page.locator("#runs-per-hour ul.chart-legend")).to_contain_text("failed: 3")
    page.locator("#runs-per-hour").screenshot(path=str(shot.dir / "runs-per-hour.png"))

    sizes = page.locator("#backup-sizes svg.stacked-columns")
    expect(sizes).to_be_visible()
    expect(sizes.locator("g.column")).to_have_count(30)
    expect(sizes.locator("rect.segment")).to_have_count(27)
    newest = sizes.locator("g.column").last
    newest.locator("rect.segment").hover()
    assert hovered_title(page) == (
        f"{today:%Y-%m-%d}\nnightshift-0.dump: 300.0\xa0MB, NOT verified, taken 02:30 CST"
    )
    expect(sizes.locator("g.column").nth(25).locator("title").first).to_have_text(
        f"{today - timedelta(days=4):%Y-%m-%d}: no backup"
    )
    expect(sizes.locator("text.chart-scale").last).to_have_text("300.0 MB")
    expect(page.locator("#backup-sizes")).to_contain_text("27 of 30 days with a backup")
    expect(sizes.locator("text.chart-empty")).to_have_count(3)
    page.locator("#backup-sizes").screenshot(path=str(shot.dir / "backup-sizes.png"))
    shot("health-page")
