"""Sentry set-up shared by web, worker and beat (all of them import the settings)."""

from __future__ import annotations

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration
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
            CeleryIntegration(monitor_beat_tasks=True),
        ],
        send_default_pii=False,
        # Stack-frame locals hold task arguments (passwords, tokens): never send them.
        include_local_variables=False,
        event_scrubber=EventScrubber(denylist=DEFAULT_DENYLIST + EXTRA_DENYLIST, recursive=True),
        traces_sample_rate=traces_sample_rate,
    )
    return True
