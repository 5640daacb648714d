"""Flower's configuration file: `celery -A config flower` (the Procfile's `flower`) reads it from
its working directory, after its FLOWER_* environment variables and before its command line.

- Credentials come from the environment (or the .env file), never the command line:
  FLOWER_BASIC_AUTH=user:password (several: comma-separated), or Flower's OAuth (FLOWER_AUTH...).
- With DEBUG off, Flower refuses to start without one of them: it shows every job's arguments
  and can revoke and terminate them.
- It listens on FLOWER_ADDRESS (default 127.0.0.1: this host only) and FLOWER_PORT (5555).
"""

from __future__ import annotations

import os as _os

from django.conf import settings as _settings
from flower.command import apply_env_options as _apply_env_options  # type: ignore[import-untyped]
from tornado.options import options as _options

# Loading the settings reads the .env file into the environment (values already set win), as
# for every Nightshift process; Flower read FLOWER_* before that, so it reads them again.
_debug = _settings.DEBUG
_apply_env_options()

address = _os.environ.get("FLOWER_ADDRESS", "127.0.0.1")

if not _debug and not (_options.basic_auth or _options.auth):
    raise SystemExit(
        "Flower refuses to start: DEBUG is off and no authentication is configured. Set "
        "FLOWER_BASIC_AUTH=user:password in the environment or the .env file (never on the "
        "command line), or set DEBUG=true on a developer machine."
    )
