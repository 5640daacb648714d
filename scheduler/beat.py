"""Beat-side additions, installed on `celery -A config beat -S django` at start-up.

For each dispatch, beat adds to the message: the slot it serves and the next one (so workers can
drop duplicates from a second beat and stale runs from a backlog), the schedule's run-policy
overrides (scheduler.policy), and opens the Sentry Crons check-in with a monitor config for
every schedule kind sentry-sdk cannot describe itself.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk
from celery.beat import ScheduleEntry, Scheduler, Service
from celery.signals import beat_init
from django.utils import timezone
from sentry_sdk.crons import MonitorStatus, capture_checkin

from scheduler import policy, presence, reporting
from scheduler.runs import NEXT_SLOT_HEADER, SLOT_HEADER, hard_time_limit
from scheduler.slots import slot_for

logger = logging.getLogger(__name__)


def annotate_entry(scheduler: Scheduler, entry: ScheduleEntry) -> None:
    """Put the slot headers and the Sentry check-in headers on the entry's next message."""
    options: dict[str, Any] = entry.options if entry.options is not None else {}
    headers = dict(options.get("headers") or {})
    for key in [k for k in headers if k.startswith(("sentry-monitor-", "nightshift_"))]:
        del headers[key]  # left over from the previous dispatch of this entry
    for name in policy.TIME_LIMIT_OPTIONS:
        options.pop(name, None)
    policy_headers, policy_options = policy.dispatch_options(entry.name or "")
    headers.update(policy_headers)
    options.update(policy_options)
    slot = slot_for(entry.schedule, timezone.now())
    if slot is not None:
        headers[SLOT_HEADER] = slot.at.isoformat()
        if slot.next_at is not None:
            headers[NEXT_SLOT_HEADER] = slot.next_at.isoformat()
    if sentry_sdk.get_client().is_active():
        limit = policy_options.get("time_limit") or hard_time_limit(scheduler.app, entry.task or "")
        config = reporting.monitor_config(entry.schedule, limit, slot.at if slot else None)
        if config:
            check_in_id = capture_checkin(
                monitor_slug=entry.name,
                monitor_config=config,  # type: ignore[arg-type]
                status=MonitorStatus.IN_PROGRESS,
            )
            headers.update(
                {
                    "sentry-monitor-slug": entry.name,
                    "sentry-monitor-config": config,
                    "sentry-monitor-check-in-id": check_in_id,
                }
            )
    options["headers"] = headers
    entry.options = options


@beat_init.connect(dispatch_uid="nightshift-beat")
def install(sender: Service, **kwargs: Any) -> None:
    scheduler = sender.scheduler
    original = scheduler.apply_entry

    def apply_entry(entry: ScheduleEntry, producer: Any = None) -> Any:
        try:
            annotate_entry(scheduler, entry)
        except Exception:  # never let bookkeeping stop a dispatch
            logger.exception("could not annotate the dispatch of %s", entry.name)
        return original(entry, producer=producer)

    scheduler.apply_entry = apply_entry  # type: ignore[method-assign]
    original_tick = scheduler.tick

    def tick(*args: Any, **kwargs: Any) -> Any:
        presence.record_beat_tick()  # for the health page: beat is alive and looping
        return original_tick(*args, **kwargs)

    scheduler.tick = tick  # type: ignore[method-assign]
    logger.info("Nightshift beat hooks installed on %s", type(scheduler).__name__)
