from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db.models.signals import post_migrate


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import health, pictures

        # Nightshift's own cache warmers, refreshed by jobs.refresh_cache with any app's others.
        health.register()
        pictures.register()
        post_migrate.connect(_grant_groups, sender=self)


def _grant_groups(
    sender: AppConfig, using: str = "default", apps: Apps = global_apps, **kwargs: Any
) -> None:
    """The jobs' records are read-only in the admin: both groups may see them."""
    from scheduler import groups

    records = groups.view("backup", "report", "workerheartbeat")
    groups.grant(sender, {groups.EDITORS: records, groups.VIEWERS: records}, using, apps)
