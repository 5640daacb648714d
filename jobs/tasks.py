"""Celery tasks: thin wrappers with explicit names around the services in this package."""

from __future__ import annotations

from datetime import date
from typing import Any

from celery import Task
from django.conf import settings

from config.celery import app
from jobs import backups, cache, heartbeat, housekeeping, reports
from scheduler.arguments import IsoDate


@app.task(name="jobs.heartbeat", bind=True, soft_time_limit=30, time_limit=60)
def heartbeat_task(self: Task[Any, Any]) -> dict[str, object]:
    """Record that this worker ran a scheduled job."""
    result = heartbeat.record_heartbeat(self.request.hostname or "unknown")
    return {"hostname": result.hostname, "at": result.at.isoformat(), "runs": result.runs}


# A backup killed midway leaves nothing to undo: sent again at once if its worker dies.
@app.task(
    name="jobs.backup_database",
    soft_time_limit=3600,
    time_limit=3900,
    max_retries=2,
    retry_when_lost=True,
)
def backup_database_task() -> dict[str, object]:
    """Back up the database into BACKUP_DIR, verify the copy, then apply the retention policy."""
    result = backups.backup_database(settings.BACKUP_DIR)
    pruned = backups.apply_retention()
    return {
        "backup_id": result.backup_id,
        "path": str(result.path),
        "size_bytes": result.size_bytes,
        "sha256": result.sha256,
        "pruned": len(pruned),
    }


@app.task(name="jobs.daily_report", soft_time_limit=600, time_limit=660)
def daily_report_task(day: IsoDate | None = None, force: bool = False) -> dict[str, object]:
    """Build yesterday's report (Asia/Shanghai), or `day` (YYYY-MM-DD), and email it once."""
    result = reports.daily_report(date.fromisoformat(day) if day else None, force=force)
    return {
        "report_id": result.report_id,
        "day": result.day.isoformat(),
        "emailed_to": result.emailed_to,
    }


@app.task(name="jobs.refresh_cache", soft_time_limit=240, time_limit=300)
def refresh_cache_task() -> dict[str, object]:
    """Recompute every registered cache warmer; any failing warmer fails the run."""
    result = cache.refresh_all()
    result.raise_for_failures()
    return {"refreshed": result.refreshed, "failed": sorted(result.failed)}


@app.task(name="jobs.housekeeping", soft_time_limit=1800, time_limit=1900)
def housekeeping_task() -> dict[str, object]:
    """Prune old sessions, run history and reports; disable expired one-off schedules."""
    return housekeeping.housekeeping().as_dict()
