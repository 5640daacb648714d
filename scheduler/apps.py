from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class SchedulerConfig(AppConfig):
    name = "scheduler"
    verbose_name = "Scheduler"

    def ready(self) -> None:
        # Each app declares its default schedules in `<app>/schedules.py`, the way admin.py works.
        autodiscover_modules("schedules")
        from scheduler import beat, signals  # noqa: F401  (connect the Celery signal handlers)
