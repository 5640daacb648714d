"""Database backups: a consistent, verified copy in BACKUP_DIR; retention; restore.

A backup is written under a temporary `.nightshift-*.partial` name (mode 0600 from creation,
flock-ed while in use), fsync-ed, verified, then linked to its final name; only then does a
`Backup` row record it. Whatever fails or interrupts a run removes its partial files; a run
killed outright (SIGKILL) leaves one that the next run removes, at its start and again at its
end, since nobody holds its lock any more: pg_dump and pg_restore, which share the lock through
the file they write, die with the process that started them (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gzip
import hashlib
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, Self
from urllib.parse import quote

import environ
from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from jobs.models import Backup

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
PARTIAL_PREFIX = ".nightshift-"
PARTIAL_SUFFIX = ".partial"
GZIP_LEVEL = 6
# Tables may be locked by a migration; a dump that cannot start soon fails instead of hanging.
PG_LOCK_WAIT = "5min"
PG_MAGIC = b"PGDMP"
GZIP_MAGIC = b"\x1f\x8b"
EXTENSIONS = {Backup.Engine.POSTGRESQL: ".dump", Backup.Engine.SQLITE: ".sqlite3.gz"}
# libpq settings Django accepts in OPTIONS, passed to pg_dump/pg_restore as libpq reads them.
PG_OPTION_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "options": "PGOPTIONS",
}


class BackupError(Exception):
    """A backup or restore failed or was refused; what existed before is untouched."""


class BackupVerificationError(BackupError):
    """The backup was written but failed verification; its row is saved with verified=False."""

    def __init__(self, message: str, backup_id: int) -> None:
        super().__init__(message)
        self.backup_id = backup_id


@dataclass(frozen=True)
class BackupResult:
    backup_id: int
    path: Path
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str


class RetentionItem(NamedTuple):
    id: int
    created_at: datetime
    verified: bool


@dataclass(frozen=True)
class RestoreSource:
    """A backup file to restore, with the row that records it (None for an unknown file)."""

    path: Path
    backup: Backup | None
    engine: Backup.Engine
    note: str = ""


@dataclass(frozen=True)
class RestoreResult:
    path: Path
    target: str
    sha256: str


# --- Backup ---------------------------------------------------------------------------------


def backup_database(target_dir: Path) -> BackupResult:
    """Back up the default database into target_dir; the file appears only when complete."""
    db = connection.settings_dict
    engine = database_engine(db)
    started_at = timezone.now()
    clock = time.monotonic()
    target_dir = prepare_backup_dir(target_dir)
    remove_stale_partials(target_dir)
    with _PartialFile(target_dir, engine.value) as part:
        if engine == Backup.Engine.POSTGRESQL:
            _dump_postgresql(db, part.fd)
            os.fsync(part.fd)
            sha256, size = file_sha256(part.path)
            verification = verify_postgresql(part.path)
        else:
            sha256, size = _dump_sqlite(Path(db["NAME"]), part.fd, target_dir)
            verification = verify_sqlite(part.path, target_dir, sha256)
        stem = backup_file_stem(engine.value, started_at)
        final = part.publish(target_dir, stem, EXTENSIONS[engine])
    # Again at the end: a run killed just before this one started may have left a pg_dump
    # that was still dying (and holding its file's lock) when the first sweep looked.
    remove_stale_partials(target_dir)
    try:
        backup = Backup.objects.create(
            created_at=started_at,
            path=str(final),
            size_bytes=size,
            sha256=sha256,
            duration_seconds=time.monotonic() - clock,
            engine=engine,
            verified=verification.ok,
            verification=verification.message,
        )
    except BaseException:
        # A file without its row would never be pruned nor offered for restore.
        final.unlink(missing_ok=True)
        raise
    if not verification.ok:
        logger.error("backup %s failed verification: %s", final, verification.message)
        raise BackupVerificationError(
            f"backup #{backup.pk} ({final.name}) failed verification: {verification.message}",
            backup.pk,
        )
    logger.info(
        "backup #%s: %s, %d bytes, sha256 %s, %.1f s; %s",
        backup.pk,
        final,
        size,
        sha256,
        backup.duration_seconds,
        verification.message,
    )
    return BackupResult(backup_id=backup.pk, path=final, size_bytes=size, sha256=sha256)


def database_engine(db: Mapping[str, Any]) -> Backup.Engine:
    """PostgreSQL or SQLite, from a DATABASES entry; anything else cannot be backed up."""
    engine = str(db.get("ENGINE", ""))
    if engine.endswith((".postgresql", ".postgis")):
        return Backup.Engine.POSTGRESQL
    if engine.endswith((".sqlite3", ".spatialite")):
        return Backup.Engine.SQLITE
    raise BackupError(f"backups support PostgreSQL and SQLite databases, not {engine or '?'}")


def prepare_backup_dir(target_dir: Path) -> Path:
    """Create the backup directory (mode 0700) if missing; return it as an absolute path."""
    target_dir = target_dir.expanduser().absolute()
    target_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return target_dir


def backup_file_stem(engine: str, started_at: datetime) -> str:
    """`nightshift-<engine>-YYYYMMDD-HHMMSS+0800`, in the site's time zone (Asia/Shanghai)."""
    local = timezone.localtime(started_at, timezone.get_default_timezone())
    return f"nightshift-{engine}-{local:%Y%m%d-%H%M%S%z}"


def remove_stale_partials(target_dir: Path) -> list[Path]:
    """Remove partial files whose writer is gone (their lock is free); return them."""
    removed = []
    for path in target_dir.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or a symlink: not ours to follow
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a running backup or its pg_dump still writes it
            path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    if removed:
        logger.warning(
            "removed %d partial file(s) left by an interrupted backup: %s",
            len(removed),
            ", ".join(p.name for p in removed),
        )
    return removed


def file_sha256(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256")
        return digest.hexdigest(), f.tell()


class _PartialFile:
    """A new file `.nightshift-<label>-<random>.partial`, mode 0600, locked until closed."""

    def __init__(self, directory: Path, label: str) -> None:
        self.directory = directory
        self.label = label
        self.path = directory
        self.fd = -1

    def __enter__(self) -> Self:
        while True:
            path = self.directory / f"{PARTIAL_PREFIX}{self.label}-{secrets.token_hex(6)}"
            path = path.with_name(path.name + PARTIAL_SUFFIX)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # Another run's clean-up may have taken the lock between create and flock, and
            # removed the name: start again with a fresh one.
            if os.fstat(fd).st_nlink:
                self.path, self.fd = path, fd
                return self
            os.close(fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)

    def publish(self, directory: Path, stem: str, extension: str) -> Path:
        """Give the (complete, fsync-ed) file its final name; never replace an existing file."""
        for n in range(1, 1000):
            final = directory / f"{stem}{'' if n == 1 else f'-{n}'}{extension}"
            if Backup.objects.filter(path=str(final)).exists():
                continue
            try:
                os.link(self.path, final)  # unlike rename, fails if the name is taken
            except FileExistsError:
                continue
            except OSError as error:
                if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # A file system without hard links: check, then rename (one writer at a time).
                if final.exists():
                    continue
                os.rename(self.path, final)
            try:
                self.path.unlink(missing_ok=True)  # already gone after a rename
                _fsync_dir(directory)
            except BaseException:
                final.unlink(missing_ok=True)
                raise
            return final
        raise BackupError(f"no free file name for {stem}{extension} in {directory}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- PostgreSQL -----------------------------------------------------------------------------


def pg_binary(name: str) -> str:
    """Path of a PostgreSQL client program, from PG_BIN_DIR when set, else from PATH."""
    bin_dir = settings.PG_BIN_DIR
    if bin_dir:
        path = Path(bin_dir) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise BackupError(
            f"{name} not found in PG_BIN_DIR ({bin_dir}): point PG_BIN_DIR at the directory "
            f"that holds {name} (e.g. /usr/lib/postgresql/16/bin), or unset it to use PATH"
        )
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} not found on PATH and PG_BIN_DIR is not set: install the PostgreSQL "
            f"client tools (e.g. apt-get install postgresql-client) or set PG_BIN_DIR"
        )
    return found


def pg_env(db: Mapping[str, Any]) -> dict[str, str]:
    """Environment that makes libpq tools connect as Django does; the password never in argv."""
    env = dict(os.environ)
    for key, var in (
        ("NAME", "PGDATABASE"),
        ("USER", "PGUSER"),
        ("PASSWORD", "PGPASSWORD"),
        ("HOST", "PGHOST"),
        ("PORT", "PGPORT"),
    ):
        if db.get(key):
            env[var] = str(db[key])
    for option, var in PG_OPTION_ENV.items():
        value = (db.get("OPTIONS") or {}).get(option)
        if value is not None and value != "":
            env[var] = str(value)
    return env


PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter links
_prctl = getattr(_libc, "prctl", None)  # Linux only


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGKILL when the thread that started it ends, so a job
    killed outright (SIGKILL, the hard time limit) leaves no pg_dump writing on (re-parented
    to PID 1, holding its partial file). None where prctl does not exist."""
    if _prctl is None:
        return None
    prctl = _prctl

    def preexec() -> None:
        # Runs in the forked child before exec: nothing but these two calls (already resolved).
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: it would never fire
            os._exit(1)

    return preexec


def _run_pg_tool(
    args: list[str], env: Mapping[str, str] | None, stdout: int | IO[bytes]
) -> tuple[int, str]:
    """Run a PostgreSQL tool; return its exit status and the end of its stderr.

    An exception while it runs (a soft time limit, Ctrl-C) kills it before propagating; if the
    process running it dies outright, the tool dies with it. The tool has its own process
    group, so a Ctrl-C meant for the worker (which finishes its jobs) does not reach it.
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=err,
            env=env,
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        try:
            status = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return status, _tail(err)


def _tail(f: IO[bytes], limit: int = 4000) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    return f.read().decode("utf-8", "replace").strip()


def _describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def _dump_postgresql(db: Mapping[str, Any], out_fd: int) -> None:
    # pg_dump writes straight into our file, at pg_dump's own speed; the file being seekable,
    # it also records data offsets in the table of contents (faster selective restores).
    args = [pg_binary("pg_dump"), "--format=custom", "--no-password"]
    args.append(f"--lock-wait-timeout={PG_LOCK_WAIT}")
    status, stderr = _run_pg_tool(args, pg_env(db), out_fd)
    if status != 0:
        raise BackupError(f"pg_dump failed ({_describe_exit(status)}): {stderr or 'no message'}")


def verify_postgresql(path: Path) -> Verification:
    """`pg_restore --list` must read the whole table of contents of the dump."""
    try:
        pg_restore = pg_binary("pg_restore")
    except BackupError as error:
        return Verification(False, str(error))
    with tempfile.TemporaryFile() as listing:
        status, stderr = _run_pg_tool([pg_restore, "--list", str(path)], None, listing)
        if status != 0:
            return Verification(
                False, f"pg_restore --list failed ({_describe_exit(status)}): {stderr}"
            )
        listing.seek(0)
        entries = tables = 0
        for line in listing:
            if line.strip() and not line.startswith(b";"):
                entries += 1
                tables += b" TABLE DATA " in line
    if not entries:
        return Verification(False, "pg_restore --list found no entries in the dump")
    return Verification(True, f"pg_restore --list: {entries} entries, {tables} tables with data")


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite_uri(path: Path, mode: str) -> str:
    """URI that opens an existing file only (`mode` ro or rw), whatever its name holds."""
    return f"file:{quote(str(path))}?mode={mode}"


def _sqlite_rollback_mode(fd: int) -> None:
    """Mark a copy of a WAL-mode database as rollback-journal mode (header bytes 18-19).

    What `PRAGMA journal_mode=DELETE` would write, minus the -wal/-shm files it creates on the
    way: opening the copy later (verification, restore, the sqlite3 shell) then leaves no
    side files, and the backup API keeps a WAL-mode target in WAL mode when restoring.
    """
    header = os.pread(fd, 20, 0)
    if header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02":
        os.pwrite(fd, b"\x01\x01", 18)


class _HashingWriter:
    """Writes to a file descriptor, hashing and counting the bytes on the way."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        self.digest.update(view)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class _HashingReader:
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data


def _dump_sqlite(source: Path, out_fd: int, work_dir: Path) -> tuple[str, int]:
    """Online-backup `source` into a private copy, then gzip it into out_fd; return hash, size."""
    if not source.is_file():
        raise BackupError(f"the SQLite database {source.absolute()} does not exist")
    try:
        with _PartialFile(work_dir, "sqlite-copy") as copy:
            # One step: a single read transaction, so a consistent snapshot while the site
            # writes (in WAL mode writers are not blocked); a stepped backup would restart.
            with (
                closing(sqlite3.connect(_sqlite_uri(source, "ro"), uri=True, timeout=30)) as src,
                closing(sqlite3.connect(copy.path)) as dst,
            ):
                dst.execute("PRAGMA journal_mode=OFF")  # no -journal file beside the copy
                dst.execute("PRAGMA synchronous=OFF")  # a scratch file: fsync the .gz only
                src.backup(dst)
            _sqlite_rollback_mode(copy.fd)
            writer = _HashingWriter(out_fd)
            with (
                open(copy.fd, "rb", closefd=False) as raw,
                gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=GZIP_LEVEL) as gz,
            ):
                shutil.copyfileobj(raw, gz, CHUNK)
        os.fsync(out_fd)
    except (sqlite3.Error, OSError) as error:
        raise BackupError(f"SQLite backup of {source.absolute()} failed: {error}") from error
    return writer.digest.hexdigest(), writer.size


def _gunzip_into(path: Path, out_fd: int) -> str:
    """Decompress a .gz file into out_fd; return the SHA-256 of the compressed bytes."""
    with path.open("rb") as raw:
        reader = _HashingReader(raw)
        with (
            gzip.GzipFile(fileobj=reader, mode="rb") as gz,  # type: ignore[call-overload]
            open(out_fd, "wb", closefd=False) as out,
        ):
            shutil.copyfileobj(gz, out, CHUNK)
        reader.read()  # anything after the gzip stream still counts for the hash
    return reader.digest.hexdigest()


def _sqlite_integrity(path: Path) -> Verification:
    try:
        # Read-write: SQLite skips CHECK constraints when checking a read-only database.
        with closing(sqlite3.connect(_sqlite_uri(path, "rw"), uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check(20)")]
            if problems != ["ok"]:
                return Verification(False, "integrity_check: " + "; ".join(problems))
            (migrations,) = db.execute("SELECT count(*) FROM django_migrations").fetchone()
    except sqlite3.Error as error:
        return Verification(False, f"the restored copy cannot be read: {error}")
    return Verification(True, f"integrity_check ok, {migrations} migrations recorded")


def verify_sqlite(path: Path, work_dir: Path, sha256: str) -> Verification:
    """Decompress the backup into a scratch copy and check the copy's integrity."""
    with _PartialFile(work_dir, "sqlite-verify") as copy:
        try:
            actual = _gunzip_into(path, copy.fd)
        except (OSError, EOFError, zlib.error) as error:
            return Verification(False, f"cannot decompress: {error}")
        if actual != sha256:
            return Verification(False, f"SHA-256 on disk is {actual}, {sha256} was written")
        result = _sqlite_integrity(copy.path)
        size = os.fstat(copy.fd).st_size
    return Verification(result.ok, f"{result.message}; {size} bytes uncompressed")


# --- Retention ------------------------------------------------------------------------------


def backups_to_keep(
    backups: Iterable[RetentionItem], *, daily: int, weekly: int, monthly: int
) -> set[int]:
    """Ids kept by the policy: among verified backups, the newest of each of the last
    `daily` days, `weekly` ISO weeks and `monthly` months (site time zone); always the newest
    verified one and every unverified one newer than it. Without a verified backup: all."""
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)
    verified = [b for b in ordered if b.verified]
    if not verified:
        return {b.id for b in ordered}
    newest = verified[0]
    keep = {newest.id}
    keep.update(
        b.id
        for b in ordered
        if not b.verified and (b.created_at, b.id) > (newest.created_at, newest.id)
    )
    tz = timezone.get_default_timezone()
    periods: list[tuple[int, Callable[[datetime], object]]] = [
        (daily, lambda d: d.date()),
        (weekly, lambda d: d.isocalendar()[:2]),
        (monthly, lambda d: (d.year, d.month)),
    ]
    for count, period_of in periods:
        seen: set[object] = set()
        for b in verified:
            period = period_of(timezone.localtime(b.created_at, tz))
            if period in seen:
                continue  # an older backup of a period already kept
            if len(seen) >= count:
                break
            seen.add(period)
            keep.add(b.id)
    return keep


def apply_retention() -> list[Backup]:
    """Delete backups outside the retention policy; returns the removed rows."""
    rows = list(Backup.objects.only("id", "created_at", "verified", "path"))
    # A verified backup whose file has gone cannot be restored: it does not count as one.
    items = [RetentionItem(r.pk, r.created_at, r.verified and Path(r.path).is_file()) for r in rows]
    keep = backups_to_keep(
        items,
        daily=settings.BACKUP_KEEP_DAILY,
        weekly=settings.BACKUP_KEEP_WEEKLY,
        monthly=settings.BACKUP_KEEP_MONTHLY,
    )
    removed: list[Backup] = []
    for row in rows:
        if row.pk in keep:
            continue
        try:
            Path(row.path).unlink(missing_ok=True)
        except OSError as error:
            logger.error("cannot delete backup file %s (%s); its row stays", row.path, error)
            continue
        removed.append(row)
    pks = [row.pk for row in removed]
    batch = max(1, settings.HOUSEKEEPING_BATCH_SIZE)
    for start in range(0, len(pks), batch):
        Backup.objects.filter(pk__in=pks[start : start + batch]).delete()
    if removed:
        logger.info(
            "retention removed %d backup(s), kept %d: %s",
            len(removed),
            len(keep),
            ", ".join(Path(r.path).name for r in removed),
        )
    return removed


# --- Restore --------------------------------------------------------------------------------


def parse_database_url(url: str) -> dict[str, Any]:
    """A DATABASES entry from a URL, as settings reads DATABASE_URL."""
    try:
        db: dict[str, Any] = environ.Env.db_url_config(url)
    except Exception as error:  # never echo the URL: it may hold a password
        raise BackupError(f"cannot parse --database-url: {error.__class__.__name__}") from None
    database_engine(db)
    if not db.get("NAME"):
        raise BackupError("--database-url names no database")
    return db


def describe_database(db: Mapping[str, Any]) -> str:
    """Which database this is, for people; never the password."""
    if database_engine(db) == Backup.Engine.SQLITE:
        return f"the SQLite database {Path(db['NAME']).absolute()}"
    host = db.get("HOST") or "the local socket"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    user = f" as {db['USER']}" if db.get("USER") else ""
    return f'the PostgreSQL database "{db["NAME"]}" on {host}{port}{user}'


def find_backup(reference: str) -> RestoreSource:
    """The backup a `restore_backup` argument names: a Backup id, or a file path."""
    backup: Backup | None
    note = ""
    if reference.isdigit():
        try:
            backup = Backup.objects.filter(pk=int(reference)).first()
        except DatabaseError as error:
            raise BackupError(
                f"cannot look up backup #{reference} ({error}); give the file's path instead"
            ) from error
        if backup is None:
            raise BackupError(f"there is no backup #{reference} (to restore a file, give its path)")
        path = Path(backup.path)
        if not path.is_file():
            raise BackupError(f"backup #{backup.pk}: its file {path} is missing")
    else:
        path = Path(reference).expanduser().absolute()
        if not path.is_file():
            raise BackupError(f"{reference}: no such file")
        try:
            backup = Backup.objects.filter(path__in={str(path), str(path.resolve())}).first()
        except DatabaseError:
            # Restoring into a fresh, empty database: there are no Backup rows to look at.
            connection.close()
            backup = None
        if backup is None:
            note = "no Backup row records this file, so its SHA-256 cannot be checked"
    with path.open("rb") as f:
        magic = f.read(5)
    if magic.startswith(PG_MAGIC):
        engine = Backup.Engine.POSTGRESQL
    elif magic.startswith(GZIP_MAGIC):
        engine = Backup.Engine.SQLITE
    else:
        raise BackupError(f"{path} is neither a pg_dump archive nor a gzipped SQLite backup")
    return RestoreSource(path=path, backup=backup, engine=engine, note=note)


def check_restorable(source: RestoreSource, target: Mapping[str, Any]) -> str:
    """Refuse a backup of another engine or one whose SHA-256 differs from its row's."""
    target_engine = database_engine(target)
    if source.engine != target_engine:
        raise BackupError(
            f"{source.path.name} is a {source.engine.label} backup; "
            f"{describe_database(target)} is {target_engine.label}"
        )
    digest, _ = file_sha256(source.path)
    _check_digest(source, digest)
    return digest


def _check_digest(source: RestoreSource, digest: str) -> None:
    if source.backup is not None and digest != source.backup.sha256:
        raise BackupError(
            f"SHA-256 mismatch for backup #{source.backup.pk} ({source.path}): the file has "
            f"{digest}, {source.backup.sha256} was recorded. The file is damaged or not the "
            "one backed up; nothing was restored."
        )


def restore_backup(source: RestoreSource, target: Mapping[str, Any] | None = None) -> RestoreResult:
    """Replace the contents of `target` (default: the configured database) with a backup."""
    db = dict(target if target is not None else connection.settings_dict)
    digest = check_restorable(source, db)
    # Our own idle connection must not hold locks (PostgreSQL) or a stale page cache (SQLite).
    connections.close_all()
    if source.engine == Backup.Engine.POSTGRESQL:
        _restore_postgresql(source.path, db)
    else:
        _restore_sqlite(source, Path(db["NAME"]))
    logger.info("restored %s into %s", source.path, describe_database(db))
    return RestoreResult(path=source.path, target=describe_database(db), sha256=digest)


def _restore_postgresql(path: Path, db: Mapping[str, Any]) -> None:
    name = str(db["NAME"]).replace("\\", "\\\\").replace("'", "\\'")
    args = [
        pg_binary("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",  # all or nothing: a failed restore leaves the database as it was
        "--no-password",
        f"--dbname=dbname='{name}'",  # a connection string: a name can never read as options
        str(path),
    ]
    status, stderr = _run_pg_tool(args, pg_env(db), subprocess.DEVNULL)
    if status != 0:
        raise BackupError(
            f"pg_restore failed ({_describe_exit(status)}); the transaction was rolled back, "
            f"the database is unchanged: {stderr or 'no message'}"
        )


def _restore_sqlite(source: RestoreSource, target: Path) -> None:
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)  # scratch copies of an earlier, killed restore
    # The scratch copy sits beside the target: it needs that much room there anyway.
    with _PartialFile(target.parent, "restore") as copy:
        try:
            digest = _gunzip_into(source.path, copy.fd)
        except (OSError, EOFError, zlib.error) as error:
            raise BackupError(f"cannot decompress {source.path}: {error}") from error
        _check_digest(source, digest)
        check = _sqlite_integrity(copy.path)
        if not check.ok:
            raise BackupError(f"{source.path} is damaged, nothing was restored: {check.message}")
        try:
            with (
                closing(sqlite3.connect(_sqlite_uri(copy.path, "ro"), uri=True)) as src,
                closing(sqlite3.connect(target, timeout=30)) as dst,
            ):
                src.backup(dst)
        except sqlite3.Error as error:
            raise BackupError(f"restoring into {target} failed: {error}") from error
