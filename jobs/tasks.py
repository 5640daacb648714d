"""Celery tasks: thin wrappers with explicit names around the services in this package."""

from __future__ import annotations

from typing import Any

from celery import Task

from config.celery import app
from jobs import heartbeat


@app.task(name="jobs.heartbeat", bind=True, soft_time_limit=30, time_limit=60)
def heartbeat_task(self: Task[Any, Any]) -> dict[str, object]:
    """Record that this worker ran a scheduled job."""
    result = heartbeat.record_heartbeat(self.request.hostname or "unknown")
    return {"hostname": result.hostname, "at": result.at.isoformat(), "runs": result.runs}
