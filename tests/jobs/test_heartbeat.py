from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.heartbeat import latest_heartbeat, record_heartbeat
from jobs.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def test_heartbeat_records_time_and_counts_runs_per_worker() -> None:
    before = timezone.now()
    first = record_heartbeat("w1@host")
    second = record_heartbeat("w1@host")
    record_heartbeat("w2@host")

    assert (first.runs, second.runs) == (1, 2)
    row = WorkerHeartbeat.objects.get(hostname="w1@host")
    assert row.runs == 2 and row.last_seen_at >= before
    latest = latest_heartbeat()
    assert latest is not None and latest.hostname == "w2@host"


def test_no_heartbeat_yet() -> None:
    assert latest_heartbeat() is None


def test_heartbeat_reads_in_shanghai_time() -> None:
    record_heartbeat("w@h")
    row = WorkerHeartbeat.objects.get()
    local = timezone.localtime(row.last_seen_at)
    assert str(row) == f"w@h at {local:%Y-%m-%d %H:%M:%S} CST"
