"""The heartbeat job: a worker records that it is alive and running scheduled work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from jobs.models import WorkerHeartbeat


@dataclass(frozen=True)
class HeartbeatResult:
    hostname: str
    at: datetime
    runs: int


def record_heartbeat(hostname: str) -> HeartbeatResult:
    """Stamp `hostname`'s heartbeat with the current time and count the run."""
    now = timezone.now()
    updated = WorkerHeartbeat.objects.filter(hostname=hostname).update(
        last_seen_at=now, runs=F("runs") + 1
    )
    if not updated:
        try:
            with transaction.atomic():
                WorkerHeartbeat.objects.create(hostname=hostname, last_seen_at=now, runs=1)
        except IntegrityError:  # a concurrent first heartbeat of the same worker won
            WorkerHeartbeat.objects.filter(hostname=hostname).update(
                last_seen_at=now, runs=F("runs") + 1
            )
    runs = WorkerHeartbeat.objects.values_list("runs", flat=True).get(hostname=hostname)
    return HeartbeatResult(hostname=hostname, at=now, runs=runs)


def latest_heartbeat() -> WorkerHeartbeat | None:
    """The most recent heartbeat of any worker, or None when no worker ever ran one."""
    return WorkerHeartbeat.objects.order_by("-last_seen_at").first()
