"""Whether a schedule's arguments fit its job: the one check beat and the schedule form share.

Beat calls it for every schedule it loads (a schedule whose arguments no longer fit, after a
job's signature changed, is recorded as broken instead of being sent); the schedule form is
meant to call the same function (today it has its own copy in scheduler.admin.forms).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from celery import current_app


def check_arguments(job_name: str, args: list[Any], kwargs: dict[str, Any]) -> list[str]:
    """What is wrong with running job `job_name` with these arguments; empty when they fit."""
    task = current_app.tasks.get(job_name)
    if task is None:
        # Celery discovers the apps' tasks when a worker or beat starts; elsewhere, on demand.
        current_app.autodiscover_tasks(force=True)
        task = current_app.tasks.get(job_name)
    if task is None:
        return [f"{job_name} is not a registered job"]
    try:
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):  # nothing to check against
        return []
    params = signature.parameters
    named = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes = f"{job_name} takes {', '.join(named) if named else 'no arguments'}"
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [key for key in kwargs if key not in named]
        if unknown:
            return [f"unknown argument {unknown[0]!r}: {takes}"]
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        missing = re.search(r"missing a required argument: '([^']+)'", str(exc))
        if missing:
            return [f"missing required argument {missing[1]!r}: {takes}"]
        return [f"{exc}: {takes}"]
    return []
