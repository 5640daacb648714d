"""Times and durations as people read them, the same in the admin and in e-mail."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def human_duration(seconds: float | None) -> str:
    """250 ms, 1.2 s, 3 min 4 s, 2 h 5 min."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def local_text(moment: datetime) -> str:
    """A time as the admin shows it: in the project's time zone (Asia/Shanghai), with its zone."""
    return timezone.localtime(moment, ZoneInfo(settings.TIME_ZONE)).strftime("%Y-%m-%d %H:%M %Z")
