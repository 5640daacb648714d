"""Default schedules declared in code; `manage.py sync_schedules` creates the missing ones.

An app declares its defaults in its own `schedules.py`:

    from scheduler.defaults import DefaultSchedule, register

    register(DefaultSchedule(name="app-heartbeat", task="jobs.heartbeat", crontab="* * * * *"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Sentry Crons uses the schedule name as monitor slug; keep it slug-safe.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class DefaultSchedule:
    """A schedule the project ships with: a crontab (five fields) in the project's time zone."""

    name: str
    task: str
    crontab: str
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"schedule name {self.name!r} must be lower-case letters, digits, '-' or '_'"
            )
        if len(self.crontab.split()) != 5:
            raise ValueError(
                f"schedule {self.name!r}: crontab {self.crontab!r} must have five fields "
                "(minute hour day-of-month month day-of-week)"
            )


_registry: dict[str, DefaultSchedule] = {}


def register(*schedules: DefaultSchedule) -> None:
    """Declare default schedules; a second declaration under the same name is an error."""
    for schedule in schedules:
        existing = _registry.get(schedule.name)
        if existing is not None and existing != schedule:
            raise ValueError(f"default schedule {schedule.name!r} is declared twice")
        _registry[schedule.name] = schedule


def declared() -> list[DefaultSchedule]:
    """All declared default schedules, by name."""
    return [_registry[name] for name in sorted(_registry)]
