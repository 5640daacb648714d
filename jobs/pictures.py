"""The health page's pictures: runs per hour by status over 24 hours, backup sizes over 30 days.

The page never reads the run table: the hourly counts are one aggregate (over the last 24
hours' runs, indexed by started_at) that a cache warmer recomputes with the job-health summary
(`jobs.refresh_cache`, every 10 minutes); the backups of the last 30 days are one small query.
Drawn by scheduler.charts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.safestring import SafeString

from jobs import cache
from jobs.models import Backup
from scheduler import charts
from scheduler.models import JobRun

HOURS = 24
DAYS = 30
RUN_HOURS_KEY = "nightshift:runs-per-hour"
RUN_HOURS_TTL = timedelta(hours=1)


def register() -> None:
    """Register the hourly counts' warmer (called once, from the jobs app's ready())."""
    cache.register_warmer(RUN_HOURS_KEY, run_hours, ttl=RUN_HOURS_TTL)


@dataclass(frozen=True)
class Picture:
    """A chart as the health page shows it: its SVG, its legend and a line of explanation."""

    id: str
    title: str
    svg: SafeString
    legend: SafeString
    note: str


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def run_hours(now: datetime | None = None) -> dict[str, Any]:
    """Runs started in each of the last 24 hours (the current one included), by status:
    {"first_hour": ISO time, "counts": [[hour index, status, runs], ...]} (JSON-friendly)."""
    now = timezone.localtime(now or timezone.now(), _zone())
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    rows = (
        JobRun.objects.filter(started_at__gte=first)
        .annotate(hour=TruncHour("started_at", tzinfo=_zone()))
        .values("hour", "status")
        .annotate(runs=Count("pk"))
        .order_by()
    )
    counts = []
    for row in rows:
        index = round((row["hour"] - first).total_seconds() / 3600)
        if 0 <= index < HOURS:
            counts.append([index, row["status"], row["runs"]])
    return {"first_hour": first.isoformat(), "counts": counts}


def runs_per_hour(hours: dict[str, Any]) -> Picture:
    """The picture of `run_hours()`'s counts: a column per hour, a segment per status."""
    first = timezone.localtime(datetime.fromisoformat(hours["first_hour"]), _zone())
    per_hour: dict[int, Counter[str]] = defaultdict(Counter)
    for index, status, runs in hours["counts"]:
        per_hour[index][status] += runs
    columns = []
    total: Counter[str] = Counter()
    for index in range(HOURS):
        start = first + timedelta(hours=index)
        counts = per_hour[index]
        total += counts
        ordered = sorted(counts, key=charts.status_order)
        runs = sum(counts.values())
        columns.append(
            charts.Column(
                tick=f"{start:%H}:00" if index % 3 == 0 else "",
                title=f"{start:%Y-%m-%d %H:00} to {start + timedelta(hours=1):%H:00} "
                f"{start:%Z}: {runs} run{'s' if runs != 1 else ''}",
                segments=[
                    charts.Segment(
                        counts[s], charts.status_colour(s), f"{counts[s]} {charts.status_label(s)}"
                    )
                    for s in ordered
                ],
            )
        )
    tallest = max(sum(c.values()) for c in [*per_hour.values(), Counter()])
    runs = sum(total.values())
    summary = f"{runs} run{'s' if runs != 1 else ''}" + (
        f": {charts.counts_in_words(total)}" if runs else ""
    )
    return Picture(
        id="runs-per-hour",
        title=f"Runs per hour, last {HOURS} hours",
        svg=charts.stacked_columns(
            columns,
            f"Runs per hour over the last {HOURS} hours: {summary}",
            f"{tallest} run{'s' if tallest != 1 else ''}",
        ),
        legend=charts.status_legend(total) if runs else charts.legend([]),
        note=f"Hours in Asia/Shanghai, oldest on the left, as of the summary's refresh; {summary}.",
    )


def backup_sizes(now: datetime | None = None) -> Picture:
    """The size of each day's last backup over the last 30 days (today included)."""
    now = timezone.localtime(now or timezone.now(), _zone())
    first_day = now.date() - timedelta(days=DAYS - 1)
    first = datetime.combine(first_day, datetime.min.time(), tzinfo=_zone())
    per_day: dict[date, list[Backup]] = defaultdict(list)
    for backup in Backup.objects.filter(created_at__gte=first).order_by("created_at", "id"):
        per_day[timezone.localtime(backup.created_at, _zone()).date()].append(backup)
    verified = charts.status_colour(JobRun.Status.SUCCEEDED)
    unverified = charts.status_colour(JobRun.Status.FAILED)
    columns = []
    days_without = 0
    for index in range(DAYS):
        day = first_day + timedelta(days=index)
        backups = per_day.get(day, [])
        segments = []
        if backups:
            last = backups[-1]
            taken = timezone.localtime(last.created_at, _zone())
            more = f"; {len(backups)} backups that day, the last shown" if len(backups) > 1 else ""
            segments.append(
                charts.Segment(
                    last.size_bytes,
                    verified if last.verified else unverified,
                    f"{last}: {filesizeformat(last.size_bytes)}, "
                    f"{'verified' if last.verified else 'NOT verified'}, "
                    f"taken {taken:%H:%M %Z}{more}",
                )
            )
        else:
            days_without += 1
        columns.append(
            charts.Column(
                tick=f"{day:%m-%d}" if index % 5 == 4 else "",
                title=f"{day:%Y-%m-%d}" + ("" if backups else ": no backup"),
                segments=segments,
                empty_mark=True,
            )
        )
    largest = max((c.total for c in columns), default=0)
    summary = (
        f"{DAYS - days_without} of {DAYS} days with a backup"
        + (f", the largest {filesizeformat(largest)}" if largest else "")
        + (f", {days_without} days without one" if days_without else "")
    )
    return Picture(
        id="backup-sizes",
        title=f"Backup sizes, last {DAYS} days",
        svg=charts.stacked_columns(
            columns,
            f"Backup size per day over the last {DAYS} days: {summary}",
            filesizeformat(largest),
            column_width=18,
        ),
        legend=charts.legend([(verified, "verified"), (unverified, "not verified")]),
        note=f"Each day's last backup (Asia/Shanghai days); a cross marks a day without one. "
        f"{summary}.",
    )


def health_pictures(now: datetime | None = None) -> dict[str, Picture]:
    """What the health page draws, by name (for its template): one query, plus the cache."""
    hours = cache.get(RUN_HOURS_KEY)
    if not isinstance(hours, dict):
        raise TypeError(f"{RUN_HOURS_KEY} holds {type(hours).__name__}, not the hourly counts")
    return {"runs_chart": runs_per_hour(hours), "backups_chart": backup_sizes(now)}
