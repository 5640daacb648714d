"""Nightshift's beat engine: what `celery -A config beat -S django` runs.

How it is installed: the Celery app (config.celery) builds beat from `Beat` below, which maps
the scheduler name `django` (and django-celery-beat's own path) to `Engine`, a subclass of
django-celery-beat's DatabaseScheduler. The command, the tables and every PeriodicTask field
keep their stock meaning; only the engine under them changes:

- one pass per tick: every due slot is sent, in due order, over one producer (pipelined on
  Redis by kombu's publish batches); `last_run_at` / `total_run_count` written back in batches;
- live edits: database triggers log every change of a schedule (changes.py); beat reads the log
  every NIGHTSHIFT_BEAT_POLL_SECONDS and reloads only the rows it names;
- one leader among any number of beats (leader.py), the others standing by with the schedule
  loaded; a new leader starts where the old one's watermark says;
- no slot lost in silence: a slot not sent before its deadline is recorded `missed`.

When a slot fires, and its deadline, is scheduler.timing's answer, shared with the admin, the
health page and the Sentry monitor config.

Public face: `Beat` (the Celery beat application class), `ENGINE` (the scheduler class path),
`beats()` (the beats alive and their roles, for the health page). This module imports no models:
Celery loads it before Django is set up.
"""

from __future__ import annotations

from typing import Any

from celery import platforms
from celery.apps.beat import Beat as CeleryBeat

ENGINE = "scheduler.engine.scheduler:Engine"
# The names a command line or setting may give for stock django-celery-beat.
STOCK_NAMES = (
    "django",
    "django_celery_beat.schedulers:DatabaseScheduler",
    "django_celery_beat.schedulers.DatabaseScheduler",
)


class Beat(CeleryBeat):
    """`celery beat` with Nightshift's engine wherever stock DatabaseScheduler is asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.scheduler_cls in STOCK_NAMES:  # type: ignore[has-type]
            self.scheduler_cls = ENGINE

    def install_sync_handler(self, service: Any) -> None:
        """SIGTERM and SIGINT stop beat after the tick under way, then write back and hand the
        lead over. Stock beat raises SystemExit inside the handler instead, which could cut a
        tick short between opening a slot's check-in and sending its message (a pipelined
        batch not yet flushed is discarded): a slot lost. The engine's ticks sleep at most
        NIGHTSHIFT_BEAT_POLL_SECONDS, so the stop is prompt. While the engine is still loading
        (waiting for the database) there is no tick to finish and nothing to save: exit at once
        (asking the service for its scheduler then would build a second engine)."""

        def _sync(signum: Any, frame: Any) -> None:
            if "scheduler" in vars(service):  # Service.scheduler is a cached property
                service.stop()
                return
            raise SystemExit()

        platforms.signals.update(SIGTERM=_sync, SIGINT=_sync)


def beats() -> list[Any]:
    """The beats seen lately with their roles, the leader first."""
    from scheduler.engine.leader import beats as _beats

    return _beats()
