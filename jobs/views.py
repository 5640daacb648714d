"""The health page: "is everything running?" on one admin page, from cached and Redis data."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from jobs.health import cached_job_health
from jobs.models import Backup
from jobs.pictures import health_pictures
from scheduler import engine, presence, queues
from scheduler.models import JobRun
from scheduler.upcoming import soonest_runs

# Beat ticks at least every second (the engine's loop); a minute of silence is death.
BEAT_ALIVE_WITHIN = timedelta(seconds=60)
NEXT_RUNS = 10
# Every table shows at most this many rows, then "and K more" with a link to the full list.
TABLE_ROWS = 20
FAILED = {str(status) for status in JobRun.FINAL_ERRORS}


def _times(entry: dict[str, Any], *names: str) -> dict[str, Any]:
    """The entry with its ISO time strings parsed, for the template's date filters."""
    parsed = dict(entry)
    for name in names:
        value = entry.get(name)
        parsed[name] = parse_datetime(value) if isinstance(value, str) else None
    return parsed


def _run_url(run_id: int | None) -> str | None:
    return reverse("admin:scheduler_jobrun_change", args=[run_id]) if run_id else None


def health_context(now: datetime | None = None) -> dict[str, Any]:
    """Everything the health page shows: the cached summary, Redis, the broker (the queues'
    lengths), the latest backup, and the next runs computed now (scheduler.upcoming: a few
    queries whatever the number of schedules)."""
    now = now or timezone.now()
    summary = cached_job_health()
    beat_tick = presence.beat_last_tick()
    schedules = [
        {
            **_times(s, "next_run_at", "overdue_since", "last_run_at"),
            "url": _run_url(s["last_run_id"]),
        }
        for s in summary.get("schedules", [])
    ]
    upcoming = soonest_runs(NEXT_RUNS, now)
    attention = []
    for entry in schedules:
        problems = []
        if entry["overdue_since"]:
            since = timezone.localtime(entry["overdue_since"])
            problems.append(f"overdue since {since:%Y-%m-%d %H:%M}")
        if entry.get("broken"):
            problems.append(
                f"broken: {entry['broken']}; each slot fails until the schedule is edited"
            )
        elif entry["last_status"] in FAILED:
            problems.append(f"last run {entry['last_status']}")
        elif entry["last_status"] == JobRun.Status.MISSED:
            problems.append("last slot missed: beat did not send it in time")
        if problems:
            attention.append({**entry, "problems": "; ".join(problems)})
    failing_jobs = [
        {**_times(j, "last_run_at"), "url": _run_url(j["last_run_id"])}
        for j in summary.get("jobs", [])
        if j["failures_24h"]
    ]
    workers = presence.workers(now)
    beats = engine.beats()
    backup = Backup.objects.filter(verified=True).order_by("-created_at").first()
    return {
        "now": now,
        "generated_at": parse_datetime(summary.get("generated_at") or ""),
        "window_hours": summary.get("window_hours", 24),
        "beat_tick": beat_tick,
        "beat_alive": beat_tick is not None and now - beat_tick <= BEAT_ALIVE_WITHIN,
        "beats": beats,
        "beat_leader": next((b for b in beats if b.role == "leader"), None),
        "workers": _bounded(workers),
        "workers_online": sum(1 for w in workers if w.online),
        "queues": queues.queue_states(),
        "failing_jobs": _bounded(sorted(failing_jobs, key=lambda j: -j["failures_24h"])),
        "failing_jobs_url": _failed_runs_url(),
        "upcoming": upcoming.runs,
        "upcoming_more": upcoming.total - len(upcoming.runs),
        "schedules_url": _enabled_schedules_url(),
        "attention": _bounded(attention),
        "backup": backup,
        "backup_age": now - backup.created_at if backup else None,
    }


def _bounded(rows: list[Any]) -> dict[str, Any]:
    """The first TABLE_ROWS rows of a table, and how many more there are."""
    return {"rows": rows[:TABLE_ROWS], "more": max(0, len(rows) - TABLE_ROWS)}


def _enabled_schedules_url() -> str:
    return f"{reverse('admin:scheduler_schedule_changelist')}?enabled__exact=1"


def _failed_runs_url() -> str:
    runs = reverse("admin:scheduler_jobrun_changelist")
    return f"{runs}?status__in={','.join(sorted(FAILED))}"


def health(request: HttpRequest) -> HttpResponse:
    """The admin's health page (staff only; needs permission to view runs)."""
    if not request.user.has_perm("scheduler.view_jobrun"):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": "Health",
        **health_context(),
        **health_pictures(),
    }
    return TemplateResponse(request, "admin/nightshift_health.html", context)
