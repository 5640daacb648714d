"""Per-schedule run-policy overrides, carried with each dispatch.

An admin sets overrides on a schedule (SchedulePolicy). Whoever publishes a run of that
schedule (beat, or "run now" in the admin) sends them along: the time limits as Celery's own
per-message limits, the rest in the `nightshift_policy` header that JobTask reads. Beat loads
them with the schedule rows (and reloads them with every change), so a dispatch queries nothing;
workers never query the database for a policy.
"""

from __future__ import annotations

from typing import Any

from scheduler.models import SchedulePolicy

POLICY_HEADER = "nightshift_policy"
TIME_LIMIT_OPTIONS = ("soft_time_limit", "time_limit")


def overrides_for(schedule: str) -> dict[str, Any]:
    """The overrides set on the schedule named `schedule` ({} when none)."""
    policy = SchedulePolicy.objects.filter(periodic_task__name=schedule).first()
    return policy.overrides() if policy is not None else {}


def split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headers, apply_async options) that carry `overrides` with a message."""
    options = {name: overrides[name] for name in TIME_LIMIT_OPTIONS if name in overrides}
    headers = {POLICY_HEADER: overrides} if overrides else {}
    return headers, options


def dispatch_options(schedule: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headers, apply_async options) that carry the schedule's overrides with a message."""
    return split(overrides_for(schedule))
