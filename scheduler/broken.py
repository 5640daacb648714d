"""Broken schedules: ones beat cannot send, because their args or kwargs do not parse or no longer
fit their job (scheduler.arguments), or their job is not registered.

Beat records each occurrence of one as a `failed` run whose error_type is BROKEN and whose
error_message gives the reason, and tells Sentry once per schedule. Nothing else is stored: a
schedule is marked broken (in the admin's list and on the health page) while its newest run is
such a row written after its last edit; an edit that fixes it makes beat send it again.
"""

from __future__ import annotations

from datetime import datetime

BROKEN = "BrokenSchedule"


def broken_reason(
    error_type: str | None,
    error_message: str | None,
    started_at: datetime | None,
    changed_at: datetime | None,
) -> str:
    """Why a schedule is broken, from its newest run; '' when it is not (or edited since)."""
    if error_type != BROKEN or started_at is None:
        return ""
    if changed_at is not None and changed_at > started_at:
        return ""
    return error_message or "beat cannot send this schedule"
