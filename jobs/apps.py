from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        from jobs import health

        # Nightshift's own cache warmer, refreshed by jobs.refresh_cache with any app's others.
        health.register()
