"""restore_backup: a file with no row, and what it refuses (no --yes, damage, bad input)."""

from __future__ import annotations

import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from jobs.backups import (
    backup_database,
)
from jobs.models import Backup, WorkerHeartbeat
from scheduler.models import JobRun
from tests.factories import PASSWORD_HASH
from tests.jobs.databases import ENGINE, EXTENSION, snapshot

# pg_dump and the SQLite backup read from their own connections: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_restore_of_a_file_with_no_row_into_the_configured_database(
    sample_data: None, backup_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(connection.settings_dict)
    result = backup_database(backup_dir)
    copy = tmp_path / f"copy{EXTENSION}"
    shutil.copy(result.path, copy)
    User.objects.filter(username="alice").delete()
    JobRun.objects.filter(status=JobRun.Status.FAILED).update(error_message="edited")
    WorkerHeartbeat.objects.create(hostname="new@box", last_seen_at=timezone.now())

    with pytest.raises(CommandError, match="refusing to restore without --yes"):
        call_command("restore_backup", str(copy))
    out = capsys.readouterr().out
    assert "no Backup row records this file, so its SHA-256 cannot be checked" in out
    assert not User.objects.filter(username="alice").exists()

    call_command("restore_backup", str(copy), "--yes")

    # Everything as it was when the backup was taken (its own row came after the dump).
    assert snapshot(connection.settings_dict) == before
    assert User.objects.filter(username="alice").exists()
    assert not Backup.objects.exists()


def test_restore_refuses_without_yes_naming_what_it_would_overwrite(
    sample_data: None, backup_dir: Path
) -> None:
    result = backup_database(backup_dir)
    User.objects.filter(username="ops").delete()

    with pytest.raises(CommandError) as refused:
        call_command("restore_backup", str(result.path))

    name = connection.settings_dict["NAME"]
    what = (
        f"the SQLite database {Path(name).absolute()}"
        if ENGINE == "sqlite"
        else f'the PostgreSQL database "{name}"'
    )
    assert f"refusing to restore without --yes: this would overwrite {what}" in str(refused.value)
    assert not User.objects.filter(username="ops").exists()


def test_restore_refuses_a_damaged_file(sample_data: None, backup_dir: Path) -> None:
    result = backup_database(backup_dir)
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.path.write_bytes(data)
    User.objects.filter(username="ops").delete()

    with pytest.raises(CommandError, match=r"SHA-256 mismatch for backup #\d+ .*nothing was"):
        call_command("restore_backup", str(result.backup_id), "--yes")

    assert not User.objects.filter(username="ops").exists()
    assert Backup.objects.filter(pk=result.backup_id).exists()


@pytest.mark.parametrize(
    ("argument", "extra", "message"),
    [
        ("999999", [], r"there is no backup #999999"),
        ("{tmp}/nothing-here.dump", [], r"nothing-here.dump: no such file"),
        ("{tmp}/notes.txt", [], r"is neither a pg_dump archive nor a gzipped SQLite backup"),
        ("{tmp}/other-engine", [], r"is a (PostgreSQL|SQLite) backup; the .* is (SQLite|Postgre)"),
        (
            "{tmp}/notes.txt",
            ["--database-url", "mysql://u@h/db"],
            "not django.db.backends.mysql",
        ),
        (
            "{tmp}/notes.txt",
            ["--database-url", "postgres://u:secret@127.0.0.1:5432/db"],
            "refusing a password in --database-url",
        ),
    ],
    ids=[
        "unknown id",
        "missing file",
        "not a backup",
        "other engine",
        "unsupported target",
        "password on the command line",
    ],
)
def test_restore_rejects_bad_input_with_a_clear_message(
    tmp_path: Path, argument: str, extra: list[str], message: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    # A file of the other engine: a gzip stream for PostgreSQL, a pg_dump header for SQLite.
    (tmp_path / "other-engine").write_bytes(
        b"\x1f\x8b\x08\x00rest" if ENGINE == "postgresql" else b"PGDMP\x01\x0e"
    )
    User.objects.create(username="kept", password=PASSWORD_HASH)

    with pytest.raises(CommandError, match=message) as error:
        call_command("restore_backup", argument.format(tmp=tmp_path), *extra, "--yes")

    assert "secret" not in str(error.value)
    assert User.objects.filter(username="kept").exists()
