from argparse import ArgumentTypeError
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.reports import daily_report


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {value!r}") from None


class Command(BaseCommand):
    help = (
        "Build and store the daily report of one day (default: yesterday, Asia/Shanghai) and "
        "email it, unless it was emailed already."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--day", type=_day, metavar="YYYY-MM-DD", help="The day to report.")
        parser.add_argument(
            "--force", action="store_true", help="Email it even if it was emailed before."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = daily_report(options["day"], force=options["force"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        stored = f"report {result.day.isoformat()} stored (id {result.report_id})"
        if result.emailed_to:
            self.stdout.write(
                self.style.SUCCESS(f"{stored}, emailed to {', '.join(result.emailed_to)}")
            )
        elif result.not_emailed_because == "already emailed":
            self.stdout.write(
                f"{stored}, not emailed: it was emailed before (--force sends it again)"
            )
        else:
            self.stdout.write(
                self.style.WARNING(f"{stored}, not emailed: REPORT_RECIPIENTS and ADMINS are empty")
            )
