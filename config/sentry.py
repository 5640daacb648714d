"""Sentry set-up shared by web, worker and beat (all of them import the settings)."""

from __future__ import annotations

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
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


def before_send(event: Any, hint: Any) -> Any:
    """Scrub credential-like keys from what an event carries, beyond the SDK's exact names."""
    if event.get("type") == "check_in":
        return event
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
    return True
