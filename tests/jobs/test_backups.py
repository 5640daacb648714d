"""Backups of the configured database (PostgreSQL or SQLite): verified, private, restorable, and
nothing lost when one fails (tests/jobs/databases.py says which engine).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
import secrets
import shutil
import signal
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from jobs.backups import (
    BackupError,
    BackupVerificationError,
    apply_retention,
    backup_database,
)
from jobs.models import Backup
from tests.factories import create_backup
from tests.jobs.databases import ENGINE, EXTENSION, raw_connect, snapshot

# pg_dump and the SQLite backup read from their own connections: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- Real databases, compared row by row -----------------------------------------------------


def database_url(db: Mapping[str, Any]) -> str:
    if ENGINE == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def other_database(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A second, separate (empty) database of the configured engine to restore into."""
    source = connection.settings_dict
    if ENGINE == "sqlite":
        yield {"ENGINE": source["ENGINE"], "NAME": str(tmp_path / "restored.sqlite3")}
        return
    target = {**source, "NAME": f"{source['NAME']}_restored"}
    admin = raw_connect({**source, "NAME": "postgres"})
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{target["NAME"]}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{target["NAME"]}"')
        yield target
        admin.execute(f'DROP DATABASE IF EXISTS "{target["NAME"]}" WITH (FORCE)')
    finally:
        admin.close()


def test_backup_is_verified_private_and_restores_row_by_row_into_another_database(
    sample_data: None,
    backup_dir: Path,
    other_database: dict[str, Any],
    tmp_path: Path,
    settings: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "pw-" + secrets.token_hex(8)
    log = tmp_path / "pg-calls"
    if ENGINE == "postgresql":
        # Wrappers that record how pg_dump / pg_restore were called, then run the real ones.
        # Trust authentication accepts the password and ignores it.
        settings.PG_BIN_DIR = str(tmp_path / "pgbin")
        for tool in ("pg_dump", "pg_restore"):
            wrapper = tmp_path / "pgbin" / tool
            wrapper.parent.mkdir(exist_ok=True)
            wrapper.write_text(
                f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {log}.argv\n'
                f'printf "%s\\n" "PGPASSWORD=$PGPASSWORD PGPASSFILE=$PGPASSFILE" >> {log}.env\n'
                f'exec {shutil.which(tool)} "$@"\n'
            )
            wrapper.chmod(0o755)
        # The restore target's password comes from a passfile: restore_backup refuses one
        # in --database-url, where every user of the machine could read it.
        passfile = tmp_path / "pgpass"
        passfile.write_text(f"*:*:{other_database['NAME']}:*:{password}\n")
        passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(passfile))
    before = snapshot(connection.settings_dict)
    assert len(before["auth_user"]) == 3 and len(before["scheduler_jobrun"]) == 400
    assert before["django_celery_beat_periodictask"]

    saved_password = connection.settings_dict["PASSWORD"] if ENGINE == "postgresql" else None
    if ENGINE == "postgresql":
        connection.settings_dict["PASSWORD"] = password
    try:
        result = backup_database(backup_dir)
    finally:
        if ENGINE == "postgresql":
            connection.settings_dict["PASSWORD"] = saved_password

    row = Backup.objects.get()
    path = backup_dir / os.listdir(backup_dir)[0]
    local = timezone.localtime(row.created_at, SHANGHAI)
    assert os.listdir(backup_dir) == [f"nightshift-{ENGINE}-{local:%Y%m%d-%H%M%S}+0800{EXTENSION}"]
    assert (result.backup_id, result.path, Path(row.path)) == (row.pk, path, path)
    assert result.size_bytes == row.size_bytes == path.stat().st_size > 20_000
    assert result.sha256 == row.sha256 == sha256(path)
    assert (row.engine, row.verified) == (ENGINE, True)
    expected = "pg_restore --list: " if ENGINE == "postgresql" else "integrity_check ok"
    assert expected in row.verification
    assert row.duration_seconds > 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup_dir.stat().st_mode) == 0o700

    call_command(
        "restore_backup", str(row.pk), "--database-url", database_url(other_database), "--yes"
    )

    out = capsys.readouterr().out
    assert "matches the recorded checksum" in out and "restored" in out
    assert snapshot(other_database) == before
    if ENGINE == "postgresql":
        argv = Path(f"{log}.argv").read_text()
        assert "pg_dump --format=custom" in argv and "pg_restore --clean" in argv
        assert password not in argv
        # pg_dump gets the configured password; pg_restore --list (verification) needs none;
        # the restore finds the target's in the passfile.
        assert Path(f"{log}.env").read_text().splitlines() == [
            f"PGPASSWORD={password} PGPASSFILE={passfile}",
            f"PGPASSWORD= PGPASSFILE={passfile}",
            f"PGPASSWORD= PGPASSFILE={passfile}",
        ]
        assert password not in out + caplog.text + row.verification


# --- Failures lose nothing ----------------------------------------------------------------


def fake_pg_bin(tmp_path: Path, pg_dump_script: str) -> str:
    """A PG_BIN_DIR whose pg_dump is the given shell script (and pg_restore the real one)."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "pg_dump").write_text("#!/bin/sh\n" + pg_dump_script)
    (bin_dir / "pg_dump").chmod(0o755)
    (bin_dir / "pg_restore").symlink_to(shutil.which("pg_restore") or "pg_restore")
    return str(bin_dir)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail (EFBIG, or SIGXFSZ for pg_dump): a disk that is full."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextmanager
def database_named(name: str) -> Iterator[None]:
    saved = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.settings_dict["NAME"] = saved


@contextmanager
def soft_time_limit_on_sigusr1() -> Iterator[None]:
    """What Celery does in a worker when a task passes its soft time limit."""

    def handler(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


Failure = Callable[[Path, Any, pytest.MonkeyPatch], AbstractContextManager[None]]


def _pg_dump_fails(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    settings.PG_BIN_DIR = fake_pg_bin(
        tmp, "printf 'PGDMP some bytes'\necho 'pg_dump: error: fake failure' >&2\nexit 1\n"
    )
    return nullcontext()


def _pg_dump_not_in_bin_dir(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    (tmp / "empty").mkdir()
    settings.PG_BIN_DIR = str(tmp / "empty")
    return nullcontext()


def _pg_dump_not_on_path(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    (tmp / "empty").mkdir()
    settings.PG_BIN_DIR = ""
    mp.setenv("PATH", str(tmp / "empty"))
    return nullcontext()


def _interrupted(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    # pg_dump has written part of the dump when the soft time limit strikes the worker.
    settings.PG_BIN_DIR = fake_pg_bin(
        tmp,
        f"echo $$ > {tmp}/pg_dump.pid\nprintf 'PGDMP partial'\nsleep 0.2\n"
        "kill -USR1 $PPID\nexec sleep 60\n",
    )
    return soft_time_limit_on_sigusr1()


def _disk_full(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    return file_size_limit(16 * 1024)


def _no_such_database(tmp: Path, settings: Any, mp: pytest.MonkeyPatch) -> Any:
    return database_named(
        str(tmp / "missing.sqlite3") if ENGINE == "sqlite" else "nightshift_no_such_db"
    )


FAILURES: dict[str, list[tuple[str, Failure, type[BaseException], str | None]]] = {
    "postgresql": [
        ("pg_dump fails", _pg_dump_fails, BackupError, r"pg_dump failed \(exit status 1\): "),
        ("pg_dump not in PG_BIN_DIR", _pg_dump_not_in_bin_dir, BackupError, r"found in PG_BIN"),
        ("pg_dump not on PATH", _pg_dump_not_on_path, BackupError, r"on PATH and PG_BIN_DIR is"),
        ("soft time limit", _interrupted, SoftTimeLimitExceeded, None),
        ("disk full", _disk_full, BackupError, r"pg_dump failed \(killed by SIGXFSZ\)"),
        ("no such database", _no_such_database, BackupError, r"nightshift_no_such_db.*not exist"),
    ],
    "sqlite": [
        (
            "disk full",
            _disk_full,
            BackupError,
            r"SQLite backup of /.* failed: (disk I/O error|database or disk is full)",
        ),
        ("no such database", _no_such_database, BackupError, r"missing.sqlite3 does not exist"),
    ],
}


@pytest.mark.parametrize(
    ("failure", "error", "message"),
    [case[1:] for case in FAILURES[ENGINE]],
    ids=[case[0] for case in FAILURES[ENGINE]],
)
def test_a_failed_backup_leaves_nothing_behind_and_older_backups_untouched(
    sample_data: None,
    backup_dir: Path,
    tmp_path: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    failure: Failure,
    error: type[BaseException],
    message: str | None,
) -> None:
    older = backup_database(backup_dir)
    older_bytes = older.path.read_bytes()

    with failure(tmp_path, settings, monkeypatch), pytest.raises(error, match=message):
        backup_database(backup_dir)

    assert os.listdir(backup_dir) == [older.path.name]
    assert older.path.read_bytes() == older_bytes
    assert list(Backup.objects.values_list("pk", "verified")) == [(older.backup_id, True)]
    if (tmp_path / "pg_dump.pid").exists():  # the interrupted pg_dump does not run on
        assert not Path(f"/proc/{(tmp_path / 'pg_dump.pid').read_text().strip()}").exists()


@contextmanager
def broken_source(tmp_path: Path, settings: Any) -> Iterator[str]:
    """A database the backup copies faithfully but whose copy fails verification."""
    if ENGINE == "postgresql":
        # A pg_dump that "succeeds" but writes no archive.
        settings.PG_BIN_DIR = fake_pg_bin(tmp_path, "printf 'not a dump at all'\nexit 0\n")
        yield "pg_restore --list failed"
        return
    # A row breaking its table's CHECK constraint: integrity_check reports it.
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE backup_test_bad (x integer CHECK (x > 0))")
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        cursor.execute("INSERT INTO backup_test_bad VALUES (-1)")
        cursor.execute("PRAGMA ignore_check_constraints = OFF")
    try:
        yield "CHECK constraint failed in backup_test_bad"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE backup_test_bad")


def test_a_backup_failing_verification_is_recorded_as_such_and_fails_the_run(
    sample_data: None, backup_dir: Path, tmp_path: Path, settings: Any
) -> None:
    older = backup_database(backup_dir)

    with (
        broken_source(tmp_path, settings) as problem,
        pytest.raises(BackupVerificationError, match="failed verification") as failed,
    ):
        backup_database(backup_dir)

    row = Backup.objects.get(pk=failed.value.backup_id)
    assert not row.verified
    assert problem in row.verification
    path = Path(row.path)  # kept for inspection, as private as any backup
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sha256(path) == row.sha256
    # It never counts as a backup: the older verified one is not pruned in its favour.
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 1, 0, 0
    assert apply_retention() == []
    assert set(Backup.objects.values_list("pk", flat=True)) == {older.backup_id, row.pk}
    assert older.path.is_file()


def test_leftovers_of_a_killed_run_are_removed_by_the_next_one_unless_still_in_use(
    backup_dir: Path,
) -> None:
    backup_dir.mkdir(mode=0o700)
    killed = backup_dir / f".nightshift-{ENGINE}-0a1b2c3d4e5f.partial"
    killed.write_bytes(b"half a dump")  # SIGKILL leaves this behind: nobody holds its lock
    running = backup_dir / f".nightshift-{ENGINE}-ffffffffffff.partial"
    running.write_bytes(b"being written")
    other = backup_dir / "notes.partial"
    other.write_text("not ours")

    with open(running, "rb") as held:  # a backup still writing holds an exclusive flock
        fcntl.flock(held, fcntl.LOCK_EX)
        result = backup_database(backup_dir)

    assert sorted(os.listdir(backup_dir)) == sorted([result.path.name, running.name, other.name])
    assert running.read_bytes() == b"being written"


@time_machine.travel(datetime(2025, 1, 1, 2, 30, tzinfo=SHANGHAI), tick=False)
def test_names_use_shanghai_time_and_never_overwrite_a_backup_of_the_same_second(
    backup_dir: Path,
) -> None:
    first = backup_database(backup_dir)
    first_bytes = first.path.read_bytes()
    second = backup_database(backup_dir)

    stem = f"nightshift-{ENGINE}-20250101-023000+0800"
    assert (first.path.name, second.path.name) == (f"{stem}{EXTENSION}", f"{stem}-2{EXTENSION}")
    assert first.path.read_bytes() == first_bytes
    assert [b.created_at for b in Backup.objects.all()] == [timezone.now()] * 2


def test_the_task_backs_up_then_prunes_to_the_policy(backup_dir: Path, settings: Any) -> None:
    from jobs.tasks import backup_database_task

    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 2, 0, 0
    backup_dir.mkdir(mode=0o700)
    old = []
    for days in (3, 2, 1):
        path = backup_dir / f"old-{days}{EXTENSION}"
        path.write_bytes(b"x")
        created = timezone.now() - timedelta(days=days)
        old.append(create_backup(created, str(path), ENGINE))

    result = backup_database_task.run()

    assert result["pruned"] == 2
    kept = {old[2].pk, result["backup_id"]}  # today's new backup and yesterday's
    assert set(Backup.objects.values_list("pk", flat=True)) == kept
    assert sorted(os.listdir(backup_dir)) == sorted(
        [Path(str(result["path"])).name, "old-1" + EXTENSION]
    )
