from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler.sync import disable_orphans, drift, reset_schedule, sync_default_schedules


class Command(BaseCommand):
    help = (
        "Create the default schedules declared in code that are missing and disable schedules "
        "whose task no longer exists; never overwrite an admin's edits (unless --reset NAME)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; list where the database differs from the code and exit 1 if "
            "it does (for deploy checks).",
        )
        parser.add_argument(
            "--reset",
            metavar="NAME",
            action="append",
            default=[],
            help="Overwrite the schedule NAME with its declaration in code (repeatable).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            differences = drift()
            for line in differences:
                self.stdout.write(line)
            if differences:
                raise CommandError(
                    f"{len(differences)} difference(s) between the schedules in the database "
                    "and in code"
                )
            self.stdout.write(self.style.SUCCESS("schedules match the code"))
            return
        for name in options["reset"]:
            try:
                reset_schedule(name)
            except LookupError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"reset    {name} (to its declaration in code)")
        result = sync_default_schedules()
        for name in result.created:
            self.stdout.write(f"created  {name}")
        for name in result.existing:
            if name not in options["reset"]:
                self.stdout.write(f"kept     {name} (exists; not overwritten)")
        for name in disable_orphans():
            self.stderr.write(self.style.WARNING(f"disabled {name}: its task no longer exists"))
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(result.created)} created, {len(result.existing)} already present"
            )
        )
