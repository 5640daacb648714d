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


def fill_schedules_and_runs(schedules: int, runs: int) -> None:
    """`schedules` crontab schedules of 20 jobs (names s0000...) and `runs` runs spread over
    them, then VACUUM ANALYZE as autovacuum would soon after."""
    from django.core.management import call_command
    from django_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTasks

    from devtools.bulk_runs import insert_runs

    print(f"filling: {schedules} schedules, {runs} runs ...", flush=True)
    crontabs = [
        CrontabSchedule.objects.create(minute=str(m), hour="*/2", timezone="Asia/Shanghai")
        for m in range(0, 60, 5)
    ]
    PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(
                name=f"s{i:04d}", task=f"jobs.job{i % 20}", crontab=crontabs[i % len(crontabs)]
            )
            for i in range(schedules)
        ],
        batch_size=1000,
    )
    PeriodicTasks.update_changed()
    insert_runs(runs, schedules=schedules, spacing_seconds=30)
    call_command("dbshell", "--", "-c", "VACUUM ANALYZE")
