from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from jobs.backups import (
    BackupError,
    check_restorable,
    describe_database,
    find_backup,
    parse_database_url,
    restore_backup,
)
from jobs.models import Backup


class Command(BaseCommand):
    help = (
        "Restore a database backup (a Backup id or the path of a backup file) into the "
        "configured database, or into --database-url. It overwrites that database, so it does "
        "nothing without --yes; the file's SHA-256 is checked against its Backup row first."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "backup",
            help="the id of a Backup (see the admin), or the path of a backup file "
            "(write ./NAME for a file whose name is all digits)",
        )
        parser.add_argument(
            "--database-url",
            help="restore into this database instead of the configured one, e.g. "
            "postgres://USER@HOST:5432/NAME or sqlite:////path/db.sqlite3. Put a PostgreSQL "
            "password in ~/.pgpass (or PGPASSFILE), not in the URL: a command line is "
            "visible to every user of the machine.",
        )
        parser.add_argument(
            "--yes", action="store_true", help="really overwrite the target database"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            url = options["database_url"]
            target = parse_database_url(url) if url else dict(connection.settings_dict)
            if url and target.get("PASSWORD"):
                raise CommandError(
                    "refusing a password in --database-url: every user of this machine can "
                    "read a command line. Leave it out of the URL and put it in ~/.pgpass "
                    "(or the file PGPASSFILE names); nothing was restored."
                )
            source = find_backup(options["backup"])
            digest = check_restorable(source, target)
        except BackupError as error:
            raise CommandError(str(error)) from error

        if source.backup is not None:
            row = source.backup
            created = timezone.localtime(row.created_at, timezone.get_default_timezone())
            state = "verified" if row.verified else f"NOT verified: {row.verification}"
            self.stdout.write(
                f"backup #{row.pk}: {source.path} ({created:%Y-%m-%d %H:%M:%S %Z}, "
                f"{row.size_bytes} bytes, {state})"
            )
            self.stdout.write(f"sha256 {digest}: matches the recorded checksum")
        else:
            self.stdout.write(f"file {source.path}: {source.note}")
            self.stdout.write(f"sha256 {digest}")
        what = describe_database(target)
        if not options["yes"]:
            how = (
                "every object in the backup is dropped and recreated from it"
                if source.engine == Backup.Engine.POSTGRESQL
                else "its whole content is replaced by the backup's"
            )
            raise CommandError(
                f"refusing to restore without --yes: this would overwrite {what} ({how}). "
                "Re-run with --yes to proceed."
            )
        self.stdout.write(f"restoring into {what} ...")
        try:
            result = restore_backup(source, target)
        except BackupError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"restored {result.path.name} into {result.target}"))
        self.stdout.write("If this code is newer than the backup, run `manage.py migrate` next.")
