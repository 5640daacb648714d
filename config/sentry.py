"""Sentry set-up shared by web, worker and beat (all of them import the settings).

What becomes an event (`before_send`), so that one failure is one event:
- a job run's end is reported once, by scheduler.reporting (with the run's job, schedule, run
  id and admin link); the Celery integration's capture of the same exception is dropped, and
  so are error lines logged while a run is going (they stay breadcrumbs of the run's event);
- Celery's own lines about a pool process killed or a hard time limit are not events: the
  lost-run check reports those runs;
- infrastructure errors (the database, Redis or the broker not answering) group into one issue
  per error class, whatever raised them, and outside a run's report each process sends one
  such event per error class every INFRASTRUCTURE_EVENT_EVERY seconds (one per outage).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.integrations.redis import RedisIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

# Key names, beyond sentry-sdk's defaults, whose values never leave the process.
EXTRA_DENYLIST = [
    "db_password",
    "database_url",
    "dsn",
    "redis_url",
    "access_key",
    "secret_key",
    "passfile",
    "pgpassword",
    "refresh_token",
    "access_token",
]
# And any key that merely looks like a credential, at any depth (job arguments, contexts).
_SECRET_WORDS = re.compile(
    r"pass|secret|token|key|dsn|credential|auth|cookie|session|signature", re.IGNORECASE
)
FILTERED = "[Filtered]"


def looks_secret(key: str) -> bool:
    """Whether a key names a credential (password, api_key, DSN, ...): its value is never shown.

    Sentry events and the admin's edit history both hide such values; this is the one list.
    """
    return bool(_SECRET_WORDS.search(key))


def scrub(value: Any) -> Any:
    """Replace the values of credential-like keys, at any depth."""
    if isinstance(value, dict):
        return {
            k: (FILTERED if isinstance(k, str) and looks_secret(k) else scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


_REPORTED = "_nightshift_reported"
INFRASTRUCTURE_EVENT_EVERY = 600.0  # seconds
_infrastructure_sent: dict[str, float] = {}  # error class -> when this process last sent one


def mark_reported(exc: BaseException) -> None:
    """Note that `exc` has had its event: a later capture of it is a duplicate."""
    with contextlib.suppress(AttributeError, TypeError):  # an exception without a __dict__
        setattr(exc, _REPORTED, True)


def infrastructure_error(exc: BaseException | None) -> str | None:
    """The class name of an error of the services everything depends on (database, Redis,
    broker not answering), else None."""
    import kombu.exceptions
    import redis
    from django.db import InterfaceError, OperationalError

    kinds = (
        OperationalError,
        InterfaceError,
        redis.ConnectionError,
        redis.TimeoutError,
        kombu.exceptions.OperationalError,
    )
    if not isinstance(exc, kinds):
        return None
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _exception(hint: Any) -> BaseException | None:
    """The exception an event is about: captured, logged with exc_info, or a log argument
    (Celery logs "Cannot connect to redis://...: <the error>")."""
    exc_info = hint.get("exc_info") if isinstance(hint, dict) else None
    if exc_info and exc_info[1] is not None:
        return exc_info[1]  # type: ignore[no-any-return]
    record = hint.get("log_record") if isinstance(hint, dict) else None
    if isinstance(record, logging.LogRecord):
        if record.exc_info and record.exc_info[1] is not None:
            return record.exc_info[1]
        if isinstance(record.args, tuple):
            return next((a for a in record.args if isinstance(a, BaseException)), None)
    return None


def _first_in_a_while(kind: str) -> bool:
    now = time.monotonic()
    last = _infrastructure_sent.get(kind)
    if last is not None and now - last < INFRASTRUCTURE_EVENT_EVERY:
        return False
    _infrastructure_sent[kind] = now
    return True


def before_send(event: Any, hint: Any) -> Any:
    """Drop duplicate events, group infrastructure errors (see the module's doc), and scrub
    credential-like keys from what an event carries, beyond the SDK's exact names."""
    if event.get("type") == "check_in":
        return event
    exc = _exception(hint)
    if exc is not None and getattr(exc, _REPORTED, False):
        return None
    in_run = "nightshift_run" in (event.get("contexts") or {})
    run_report = "run_id" in (event.get("tags") or {})
    if in_run and not run_report and "log_record" in hint:
        return None  # a line the running job logged: a breadcrumb of its run's own report
    kind = infrastructure_error(exc)
    if kind is not None:
        event["fingerprint"] = ["infrastructure", kind]
        if not run_report and not _first_in_a_while(kind):
            return None
    for part in ("extra", "contexts", "request"):
        if part in event:
            event[part] = scrub(event[part])
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict) and isinstance(crumbs.get("values"), list):
        for crumb in crumbs["values"]:
            if isinstance(crumb, dict) and "data" in crumb:
                crumb["data"] = scrub(crumb["data"])
    return event


def init_sentry(
    *, dsn: str, environment: str, release: str | None, traces_sample_rate: float = 0.0
) -> bool:
    """Initialise sentry-sdk when a DSN is configured; return whether it was initialised."""
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        integrations=[
            DjangoIntegration(),
            # No monitor_beat_tasks: it would close a Crons check-in as `error` at every retry.
            # scheduler.engine opens each check-in (in_progress, with its monitor config) and
            # scheduler.reporting closes it with the occurrence's final outcome.
            CeleryIntegration(),
        ],
        # Redis commands are Nightshift's own bookkeeping (leases, the broker): as breadcrumbs
        # they drown a job's own trail, and instrumenting them costs every run.
        disabled_integrations=[RedisIntegration()],
        send_default_pii=False,
        # Stack-frame locals hold task arguments (passwords, tokens): never send them.
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + EXTRA_DENYLIST, recursive=True),
        before_send=before_send,
        traces_sample_rate=traces_sample_rate,
    )
    # Their errors are about a pool process killed, or a job killed at its hard time limit:
    # the lost-run check reports that run (lost / timed_out), once.
    ignore_logger("celery.worker.request")
    ignore_logger("multiprocessing")  # billiard's pool: "Process ... exited with signal 9"
    return True
