"""Where a run came from: the headers Nightshift adds to a message, read back in the worker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from scheduler.arguments import size_problem
from scheduler.models import JobRun
from scheduler.policy import POLICY_HEADER

# Message headers Nightshift adds when a job is published (by beat, "run now", or the signal
# that stamps every message).
SLOT_HEADER = "nightshift_slot"
NEXT_SLOT_HEADER = "nightshift_next_slot"
ENQUEUED_HEADER = "nightshift_enqueued_at"
SCHEDULE_HEADER = "periodic_task_name"  # django-celery-beat's
# A run started by hand (admin "run now"): who asked. Marks the run `manual` even though it
# carries its schedule's name (so it shares the schedule's overlap lock).
REQUESTED_BY_HEADER = "nightshift_requested_by"
# A run the admin's Retry started: the id of the run it retries (its trigger is `retry`).
RETRY_OF_HEADER = "nightshift_retry_of"


def _header_time(headers: dict[str, Any], name: str) -> datetime | None:
    value = headers.get(name)
    return parse_datetime(value) if isinstance(value, str) else None


@dataclass(frozen=True)
class Dispatch:
    """Where a run came from, read from the Celery request of the executing task."""

    task_id: str
    job: str
    schedule: str
    slot: datetime | None
    next_slot: datetime | None
    enqueued_at: datetime | None
    attempt: int
    worker: str
    headers: dict[str, Any]
    eager: bool = False  # run in the calling process (tests, shell), not by a worker
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    # How the message was sent: its time limits and queue, as Celery's retry sends them again.
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_request(cls, job: str, request: Any) -> Dispatch:
        headers = dict(request.headers or {})
        hard, soft = request.timelimit or (None, None)
        options: dict[str, Any] = {"time_limit": hard, "soft_time_limit": soft}
        delivery = request.delivery_info or {}
        if delivery.get("exchange") == "" and delivery.get("routing_key"):
            options["queue"] = delivery["routing_key"]  # sent to the default exchange
        else:
            options["exchange"] = delivery.get("exchange")
            options["routing_key"] = delivery.get("routing_key")
        options["priority"] = delivery.get("priority")
        return cls(
            task_id=request.id or "",
            job=job,
            schedule=str(headers.get(SCHEDULE_HEADER) or ""),
            slot=_header_time(headers, SLOT_HEADER),
            next_slot=_header_time(headers, NEXT_SLOT_HEADER),
            enqueued_at=_header_time(headers, ENQUEUED_HEADER),
            attempt=(request.retries or 0) + 1,
            worker=request.hostname or "",
            headers=headers,
            eager=bool(request.is_eager),
            args=list(request.args or ()),
            kwargs=dict(request.kwargs or {}),
            options={name: value for name, value in options.items() if value is not None},
        )

    def message(self) -> str:
        """What sends this attempt again (JSON): args, kwargs, headers and options."""
        return json.dumps(
            {"args": self.args, "kwargs": self.kwargs, "headers": self.headers, **self.options}
        )

    @property
    def retry_of(self) -> int | None:
        value = self.headers.get(RETRY_OF_HEADER)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def trigger(self) -> str:
        if self.attempt > 1 or self.retry_of is not None:
            return JobRun.Trigger.RETRY
        if self.schedule and REQUESTED_BY_HEADER not in self.headers:
            return JobRun.Trigger.SCHEDULE
        return JobRun.Trigger.MANUAL

    def policy(self, name: str, default: Any) -> Any:
        """The job's policy value `name`, unless the dispatch carries its schedule's override."""
        overrides = self.headers.get(POLICY_HEADER)
        if isinstance(overrides, dict) and overrides.get(name) is not None:
            return overrides[name]
        return default

    def deadline(self, start_deadline: float | None) -> datetime | None:
        """When a first attempt that has not started becomes stale (None: never)."""
        if self.attempt > 1:
            return None  # retries are late on purpose
        base = self.slot or self.enqueued_at
        if start_deadline is not None and base is not None:
            return base + timedelta(seconds=start_deadline)
        return self.next_slot

    def new_run(self, status: str, **fields: Any) -> JobRun:
        # The arguments, for the admin's Retry; not kept past the cap the schedule form sets.
        recorded = not size_problem(self.args, self.kwargs)
        return JobRun(
            task_id=self.task_id,
            job=self.job,
            schedule=self.schedule,
            trigger=self.trigger,
            slot=self.slot,
            enqueued_at=self.enqueued_at,
            started_at=fields.pop("started_at", None) or timezone.now(),
            status=status,
            attempt=self.attempt,
            worker=self.worker,
            requested_by=str(self.headers.get(REQUESTED_BY_HEADER) or "")[:150],
            args=self.args if recorded else None,
            kwargs=self.kwargs if recorded else None,
            retry_of_id=self.retry_of,
            **fields,
        )
