"""Signal handlers every Nightshift process installs (connected in SchedulerConfig.ready)."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish, task_postrun
from django.db import close_old_connections
from django.utils import timezone

from scheduler.runs import ENQUEUED_HEADER


@before_task_publish.connect(dispatch_uid="nightshift-enqueued-at")
def stamp_enqueued_at(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Every published job carries the time it was enqueued (retries get their own)."""
    if headers is not None:
        headers[ENQUEUED_HEADER] = timezone.now().isoformat()


@task_postrun.connect(dispatch_uid="nightshift-close-old-connections")
def close_unusable_connections(sender: Any = None, **kwargs: Any) -> None:
    """Between jobs, drop a broken or aged database connection, as Django does per request."""
    if sender is not None and not getattr(sender.request, "is_eager", False):
        close_old_connections()
