"""Pytest plugin (loaded with `-p tests.drills`): what the fault drills share.

A drill is an end-to-end test, marked `drill`, that breaks something as an operator's bad day
would (a process SIGKILLed, PostgreSQL or Redis stopped, a full disk, a missing binary, a flood
of bad admin input) and then counts what a user would count. It calls `record(...)` with those
counts; after the run, pytest prints all of them as one table (`make drills` runs only the
drills). The must-be values (lost 0, run twice 0, partial backups 0, one Sentry event per
final failure, every bad input refused) are asserted by each drill itself: the table is the
account, the assertions are the gate.

The services a drill stops are its own (`private_redis`, `private_postgres`: started here on
free ports), never the suite's or the shared ones.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from devtools import redis_server


@dataclass(frozen=True)
class Count:
    """One drill's account. None: the column does not apply to this drill."""

    drill: str
    owed: int | None = None  # runs (or slots) owed
    rows: int | None = None  # rows written for them
    lost: int | None = None  # owed with no row
    twice: int | None = None  # owed that ran twice
    partial: int | None = None  # partial backup files left
    events_per_failure: float | None = None  # Sentry events per final failure
    refused: tuple[int, int] | None = None  # (refused with a message, nothing saved; of total)
    note: str = ""


_COUNTS: list[Count] = []


def record(drill: str, **counts: Any) -> Count:
    """Add a drill's count to the table printed at the end of the run."""
    count = Count(drill, **counts)
    _COUNTS.append(count)
    return count


def record_ledgers(drill: str, books: Iterable[Any], **counts: Any) -> Count:
    """Add the count of schedules' ledgers (tests.processes.Ledger): slots owed, their rows,
    slots with no row, slots that ran twice."""
    books = list(books)
    owed = sum(len(book.owed) for book in books)
    rows = sum(len(book.rows.get(slot, [])) for book in books for slot in book.owed)
    lost = sum(len(book.lost) for book in books)
    twice = sum(len(book.ran_twice) for book in books)
    return record(drill, owed=owed, rows=rows, lost=lost, twice=twice, **counts)


COLUMNS = [
    ("drill", 58),
    ("owed", 5),
    ("rows", 5),
    ("lost", 5),
    ("twice", 6),
    ("partial", 8),
    ("events/fail", 12),
    ("bad input refused", 18),
]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        refused, total = value
        return f"{refused}/{total}"
    return str(value)


def table(counts: list[Count]) -> list[str]:
    header = "  ".join(name.ljust(width) for name, width in COLUMNS).rstrip()
    lines = [header, "-" * len(header)]
    for c in counts:
        values = [c.drill, c.owed, c.rows, c.lost, c.twice, c.partial]
        cells = [_cell(v) for v in [*values, c.events_per_failure, c.refused]]
        row = "  ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))
        lines.append(row.rstrip())
        if c.note:
            lines.append(f"    {c.note}")
    return lines


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "drill: a fault drill (real processes, a fault, then a count); `make drills`"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _COUNTS:
        return
    terminalreporter.section("fault drills: the count after each")
    for line in table(_COUNTS):
        terminalreporter.write_line(line)


class PrivateRedis:
    """A redis-server of the test's own, which the test stops and starts again on the same port.

    It keeps an append-only file, as a production broker should, and is stopped with SIGTERM
    (Redis writes the file out), so a restart finds the queue, the unacknowledged messages and
    the leases where they were: the drill is an outage, not the loss of Redis's data (which
    would lose every queued job however beat behaves).
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.binary = binary
        self.port = redis_server.free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="nightshift-outage-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = redis_server.start(self.binary, self.port, self.directory, durable=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (never the shared server): initdb in a temporary
    directory, a free port, trust authentication, loopback only, fsync off. PostgreSQL refuses
    to run as root: as root, its programs run as the `postgres` user, who owns the directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = redis_server.free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="nightshift-pg-"))
        self.data = self.directory / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url(database))

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.directory / "postgres.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_owner, str(self.bin_dir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{program} failed: {done.stdout}{done.stderr}"


def postgres_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: PG_BIN_DIR, PATH, or Debian's versioned directories."""
    candidates = [Path(settings.PG_BIN_DIR)] if settings.PG_BIN_DIR else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)  # often a link to the versioned one
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next(
        (d for d in candidates if (d / "initdb").exists() and (d / "pg_ctl").exists()), None
    )


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (or set PG_BIN_DIR)")
    server = PrivatePostgres(bin_dir)
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)
