"""Django for a benchmark of admin pages: PostgreSQL, the admin at `urlconf`, migrated."""

from __future__ import annotations

import os
import secrets


def setup_admin_bench(database_url: str, urlconf: str) -> None:
    """Configure and set up Django against `database_url` (production settings, no HTTPS
    redirect, plain static storage: the bench is about queries and rendering, not assets)."""
    os.environ.update(
        {
            "ENV_FILE": os.devnull,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": database_url,
            "SECURE_SSL_REDIRECT": "false",
            "ALLOWED_HOSTS": "testserver",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ROOT_URLCONF = urlconf
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)
