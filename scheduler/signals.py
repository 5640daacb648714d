"""Signal handlers every Nightshift process installs (connected in SchedulerConfig.ready)."""

from __future__ import annotations

from typing import Any

from celery.signals import before_task_publish
from django.utils import timezone

from scheduler.runs import ENQUEUED_HEADER


@before_task_publish.connect(dispatch_uid="nightshift-enqueued-at")
def stamp_enqueued_at(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Every published job carries the time it was enqueued (retries get their own)."""
    if headers is not None:
        headers[ENQUEUED_HEADER] = timezone.now().isoformat()
