"""What the schedule admin's tests share: its URLs, the form as the page posts it, the rows of
its list, and the messages Run now publishes. Rows come from tests/factories.py."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django_celery_beat.models import PeriodicTask

SHANGHAI = ZoneInfo("Asia/Shanghai")
LIST = "/admin/scheduler/schedule/"
ADD = "/admin/scheduler/schedule/add/"
PREVIEW = "/admin/scheduler/schedule/preview/"


def at(text: str) -> datetime:
    """A wall-clock time in Shanghai."""
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def change_url(schedule: PeriodicTask) -> str:
    return f"/admin/scheduler/schedule/{schedule.pk}/change/"


def row_of(html: str, name: str) -> str:
    """The changelist row (<tr>) of the schedule called `name`."""
    rows = [row for row in html.split("<tr") if f">{name}</a></th>" in row]
    assert len(rows) == 1, f"no single row for {name}"
    return rows[0]


def form_data(**overrides: str | None) -> dict[str, str]:
    """A complete, valid schedule form; an override of None leaves the field out (unchecked)."""
    data: dict[str, str | None] = {
        "name": "nightly-report",
        "task": "jobs.daily_report",
        "description": "",
        "enabled": "on",
        "kind": "crontab",
        "minute": "0",
        "hour": "15",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "Asia/Shanghai",
        "interval": "",
        "solar": "",
        "clocked": "",
        "start_time_0": "",
        "start_time_1": "",
        "expires_0": "",
        "expires_1": "",
        "args": "[]",
        "kwargs": "{}",
        "queue": "",
        "overlap": "",
        "soft_time_limit": "",
        "time_limit": "",
        "max_retries": "",
        "start_deadline": "",
        **overrides,
    }
    return {key: value for key, value in data.items() if value is not None}


def change_data(schedule: PeriodicTask, **overrides: str | None) -> dict[str, str]:
    """The change form of `schedule` as the page shows it, with some fields edited."""
    cron = schedule.crontab
    shown: dict[str, str | None] = {
        "name": schedule.name,
        "task": schedule.task,
        "enabled": "on" if schedule.enabled else None,
        "minute": cron.minute,
        "hour": cron.hour,
        "day_of_month": cron.day_of_month,
        "month_of_year": cron.month_of_year,
        "day_of_week": cron.day_of_week,
        "timezone": str(cron.timezone),
        "args": schedule.args,
        "kwargs": schedule.kwargs,
    }
    return form_data(**{**shown, **overrides})


def published(redis: Any) -> list[dict[str, Any]]:
    """The messages waiting in Nightshift's queues: the queue, headers and decoded args/kwargs."""
    messages = []
    for queue in settings.NIGHTSHIFT_QUEUES:
        for raw in redis.lrange(queue, 0, -1):
            envelope = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
            messages.append(
                {"queue": queue, "headers": envelope["headers"], "args": args, "kwargs": kwargs}
            )
    return messages
