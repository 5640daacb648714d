from typing import Any

from django.core.management.base import BaseCommand

from scheduler.sync import sync_default_schedules


class Command(BaseCommand):
    help = "Create the default schedules declared in code that are missing; never overwrite edits."

    def handle(self, *args: Any, **options: Any) -> None:
        result = sync_default_schedules()
        for name in result.created:
            self.stdout.write(f"created  {name}")
        for name in result.existing:
            self.stdout.write(f"kept     {name} (exists; not overwritten)")
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.created)} created, {len(result.existing)} already present"
            )
        )
