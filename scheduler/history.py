"""A schedule's edit history in words: what it was before an edit, what it is after, what changed.

The admin writes these lines into Django's LogEntry ("enabled: no → yes; schedule: At 15:00 … →
At 02:30 …"); argument values under secret-looking keys never appear in them.
"""

from __future__ import annotations

import json
from typing import Any

from django_celery_beat.models import PeriodicTask

from config.sentry import looks_secret
from scheduler.describe import schedule_in_words
from scheduler.policy import KNOBS
from scheduler.presentation import local_text
from scheduler.selectors import policy_of


def _masked_json(text: str | None) -> str:
    """JSON arguments for the history, with the values of secret-looking keys hidden."""
    try:
        value = json.loads(text or "null")
    except ValueError:
        return text or ""
    if isinstance(value, dict):
        value = {k: "***" if looks_secret(k) else v for k, v in value.items()}
    return json.dumps(value, sort_keys=True)


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def snapshot(task: PeriodicTask) -> dict[str, str]:
    """What the history compares before and after an edit, as text."""
    policy = policy_of(task)
    values = {
        "name": task.name,
        "job": task.task,
        "description": task.description,
        "enabled": _yes_no(task.enabled),
        "schedule": schedule_in_words(task),
        "one-off": _yes_no(task.one_off),
        "start time": local_text(task.start_time) if task.start_time else "—",
        "expires": local_text(task.expires) if task.expires else "—",
        "args": _masked_json(task.args),
        "kwargs": _masked_json(task.kwargs),
        "_kwargs": task.kwargs or "",  # tells a change hidden by the mask
        "queue": task.queue or "—",
    }
    for knob in KNOBS:
        value = getattr(policy, knob.name, None) if policy else None
        values[knob.label] = "job default" if value in (None, "") else str(value)
    return values


def describe_changes(before: dict[str, str], after: dict[str, str]) -> str:
    """'schedule: At 15:00 … → At 02:30 …; enabled: no → yes; description changed'."""
    parts = []
    for key, old in before.items():
        new = after.get(key, "")
        if old == new:
            continue
        if key.startswith("_"):
            if before.get(key[1:]) == after.get(key[1:]):
                parts.append(f"{key[1:]} changed")
        elif key == "description":
            parts.append("description changed")
        else:
            parts.append(f"{key}: {old or '—'} → {new or '—'}")
    return "; ".join(parts)


def added(task: PeriodicTask) -> str:
    """The history line of a new schedule."""
    now = snapshot(task)
    return f"Added: job {now['job']}; schedule: {now['schedule']}; enabled: {now['enabled']}"
