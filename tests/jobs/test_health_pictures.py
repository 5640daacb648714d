"""The health page's pictures: runs per hour by status over 24 hours (Asia/Shanghai hours, from
the cache) and the backups' sizes over 30 days."""

from __future__ import annotations

import re

import pytest
import time_machine
from django.core.cache import cache as django_cache
from django.test import Client

from jobs import cache, pictures
from scheduler import charts
from scheduler.redis_client import client as redis_client
from tests.factories import create_backup, create_run
from tests.scheduler.schedule_pages import at

pytestmark = pytest.mark.django_db

URL = "/admin/health/"
NOW = "2026-03-10 10:20"


@pytest.fixture(autouse=True)
def clean_redis() -> None:
    redis_client().flushdb()


def section(html: str, id_: str) -> str:
    start = html.index(f'<section id="{id_}"')
    return html[start : html.index("</section>", start)]


def columns(svg: str) -> list[str]:
    return re.findall(r"<g class=\"column\">(.*?)</g>", svg, re.S)


@time_machine.travel(at(NOW), tick=False)
def test_runs_per_hour_by_status_over_24_shanghai_hours(admin_client: Client) -> None:
    create_run("jobs.heartbeat", "succeeded", at("2026-03-09 11:00"), 1.0)  # the first hour
    create_run("jobs.heartbeat", "succeeded", at("2026-03-09 10:59"), 1.0)  # before it
    for minute in ("05", "15", "25"):
        create_run("jobs.heartbeat", "succeeded", at(f"2026-03-10 08:{minute}"), 1.0)
    create_run("jobs.daily_report", "failed", at("2026-03-10 08:40"), 1.0)
    create_run("jobs.daily_report", "cancelled", at("2026-03-10 09:10"), 1.0)  # a new status
    create_run("jobs.heartbeat", "running", at("2026-03-10 10:19"))
    cache.refresh_all().raise_for_failures()

    html = section(admin_client.get(URL).content.decode(), "runs-per-hour")

    assert (
        'role="img" aria-label="Runs per hour over the last 24 hours: 7 runs: '
        '4 succeeded, 1 failed, 1 running, 1 cancelled"' in html
    )
    hours = columns(html)
    assert len(hours) == 24
    assert hours[0].startswith("<title>2026-03-09 11:00 to 12:00 CST: 1 run</title>")
    assert hours[21].startswith("<title>2026-03-10 08:00 to 09:00 CST: 4 runs</title>")
    assert hours[23].startswith("<title>2026-03-10 10:00 to 11:00 CST: 1 run</title>")
    assert hours[1].startswith("<title>2026-03-09 12:00 to 13:00 CST: 0 runs</title>")
    assert "<title>2026-03-10 08:00 to 09:00 CST: 4 runs\n3 succeeded</title>" in hours[21]
    assert "<title>2026-03-10 08:00 to 09:00 CST: 4 runs\n1 failed</title>" in hours[21]
    assert f'fill="{charts.STATUS_COLOURS["failed"]}"' in hours[21]
    assert f'fill="{charts.STATUS_COLOURS["cancelled"]}"' in hours[22]
    ticks = re.findall(r'class="chart-tick">([^<]+)<', html)
    assert ticks == ["11:00", "14:00", "17:00", "20:00", "23:00", "02:00", "05:00", "08:00"]
    assert re.findall(r'class="chart-scale">([^<]+)<', html) == ["0", "4 runs"]
    assert "succeeded: 4" in html and "cancelled: 1" in html  # the legend


@time_machine.travel(at(NOW), tick=False)
def test_runs_per_hour_come_from_the_cache_until_it_is_refreshed(admin_client: Client) -> None:
    cache.refresh_all().raise_for_failures()
    create_run("jobs.heartbeat", "failed", at("2026-03-10 10:00"), 1.0)
    assert "0 runs." in section(admin_client.get(URL).content.decode(), "runs-per-hour")
    cache.refresh_all().raise_for_failures()
    assert "1 run: 1 failed." in section(admin_client.get(URL).content.decode(), "runs-per-hour")
    # A cold cache (Redis emptied): the page computes them.
    django_cache.delete(pictures.RUN_HOURS_KEY)
    assert "1 run: 1 failed." in section(admin_client.get(URL).content.decode(), "runs-per-hour")


@time_machine.travel(at(NOW), tick=False)
def test_backup_sizes_per_day_over_30_days(admin_client: Client) -> None:
    mb = 1024 * 1024
    create_backup(at("2026-02-08 02:30"), "/b/too-old.dump", "postgresql", size_bytes=900 * mb)
    create_backup(at("2026-02-09 02:30"), "/b/first-day.dump", "postgresql", size_bytes=10 * mb)
    create_backup(at("2026-03-09 02:30"), "/b/nightly.dump", "postgresql", size_bytes=50 * mb)
    create_backup(
        at("2026-03-09 14:00"), "/b/manual.dump", "postgresql", verified=False, size_bytes=40 * mb
    )
    evil = '/b/<img src=x onerror=alert("x")>.dump'
    create_backup(at("2026-03-10 02:30"), evil, "sqlite", size_bytes=20 * mb)
    cache.refresh_all().raise_for_failures()

    html = section(admin_client.get(URL).content.decode(), "backup-sizes")

    days = columns(html)
    assert len(days) == 30
    assert days[0].startswith("<title>2026-02-09</title>")
    assert "first-day.dump: 10.0\xa0MB, verified, taken 02:30 CST" in days[0]
    assert days[1].startswith("<title>2026-02-10: no backup</title>")
    # Of two backups on one day, the last; not verified, in the failure colour.
    assert "manual.dump: 40.0\xa0MB, NOT verified, taken 14:00 CST; 2 backups that day" in days[28]
    assert f'fill="{charts.STATUS_COLOURS["failed"]}"' in days[28]
    assert f'fill="{charts.STATUS_COLOURS["succeeded"]}"' in days[29]
    # A file name from the database, escaped in the tooltip.
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(&quot;x&quot;)&gt;.dump: 20.0\xa0MB, verified" in days[29]
    assert html.count('class="chart-empty"') == 27
    assert re.findall(r'class="chart-scale">([^<]+)<', html) == ["0", "40.0\xa0MB"]
    assert "3 of 30 days with a backup, the largest 40.0\xa0MB, 27 days without one." in html
