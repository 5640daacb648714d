"""Fault drills of the backup job, on a real worker running a real pg_dump: the worker's pool
process SIGKILLed mid-dump, the whole worker SIGKILLed mid-dump, the disk full, no pg_dump.
Each counts the backups asked, the rows written, backups lost or completed twice, and the
partial files left.

The database backed up is a PostgreSQL cluster of the test's own (never the shared one): the
worker's DATABASE_URL names it, so it holds the run rows too. A dump is caught mid-way by a
lock the test holds on one table: pg_dump has started, opened its partial file and waits for
that table until the test lets it go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from config.celery import app
from scheduler.models import JobRun
from tests.drills import PrivatePostgres, record
from tests.processes import (
    UNFINISHED,
    Process,
    child_env,
    manage,
    start_worker,
    wait_for,
    wait_until_ready,
)
from tests.sentry_server import SentryServer

pytestmark = [pytest.mark.e2e, pytest.mark.drill]

S = JobRun.Status
DB = "nightshift_site"
LEASE = 2  # seconds; production default is 60
PARTIALS = ".nightshift-*.partial"
RECOVER = "from scheduler.recording import recover; print('closed', len(recover().closed))"


@dataclass(frozen=True)
class Run:
    id: int
    attempt: int
    status: str
    trigger: str
    schedule: str
    slot: datetime | None
    error_message: str


@dataclass(frozen=True)
class Site:
    """The private database a worker backs up, and the backup directory it writes to."""

    pg: PrivatePostgres
    backups: Path

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            {
                "DATABASE_URL": self.pg.url(DB),
                "BACKUP_DIR": str(self.backups),
                "NIGHTSHIFT_RUN_LEASE_SECONDS": str(LEASE),
                **extra,
            }
        )

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.pg.connect(DB) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def runs(self, task_id: str) -> list[Run]:
        return [
            Run(*row)
            for row in self.sql(
                "SELECT id, attempt, status, trigger, schedule, slot, error_message "
                "FROM scheduler_jobrun WHERE task_id = %s ORDER BY attempt, id",
                (task_id,),
            )
        ]

    def final_run(self, task_id: str, timeout: float = 120) -> Run:
        return wait_for(
            lambda: next((r for r in self.runs(task_id) if r.status not in UNFINISHED), None),
            timeout,
            f"the final run of {task_id}",
        )

    def backup_rows(self) -> list[str]:
        return [path for (path,) in self.sql("SELECT path FROM jobs_backup ORDER BY id")]

    def partials(self) -> list[str]:
        return sorted(p.name for p in self.backups.glob(PARTIALS))

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.backups.glob("*")) if p.is_file()}

    def recover(self) -> None:
        """The lost-run check beat runs every minute."""
        manage(self.env(), "shell", "-c", RECOVER)


def events_of_failure(server: SentryServer, run: Run) -> list[dict[str, Any]]:
    """The Sentry events a final failure sent: at least one, then a moment for any second."""
    wait_for(server.events, 30, "the failure's Sentry event")
    time.sleep(3)  # a duplicate would follow within the worker's flush
    events = server.events()
    about = [e for e in events if e.get("tags", {}).get("run_id") == str(run.id)]
    assert about, f"no event names run {run.id}: {[e.get('tags') for e in events]}"
    return events


@pytest.fixture
def site(private_postgres: PrivatePostgres, tmp_path: Path) -> Site:
    private_postgres.start()
    private_postgres.create_database(DB)
    site = Site(private_postgres, tmp_path / "backups")
    manage(site.env(), "migrate", "--no-input", "-v0")
    site.sql("CREATE TABLE ballast (id serial PRIMARY KEY, filler text NOT NULL)")
    site.sql("INSERT INTO ballast (filler) SELECT md5(g::text) FROM generate_series(1, 1000) g")
    return site


@contextmanager
def dump_held(site: Site) -> Iterator[None]:
    """A pg_dump started in this block waits for the table `ballast` until the block ends."""
    with site.pg.connect(DB) as conn:
        conn.execute("LOCK TABLE ballast IN ACCESS EXCLUSIVE MODE")
        yield
    # Leaving the connection's block commits: the lock goes.


def pg_dumps(port: int) -> list[int]:
    """Live (not zombie) pg_dump processes connecting to the server on `port`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "pg_dump":
                continue
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if f"PGPORT={port}".encode() in environ and state != "Z":
            found.append(int(proc.name))
    return found


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def caught_mid_dump(site: Site, task_id: str) -> int:
    """The pid of the backup's pg_dump, once it runs and the run has its `running` row."""
    [dump] = wait_for(lambda: pg_dumps(site.pg.port), 60, "pg_dump to start")
    wait_for(
        lambda: [r for r in site.runs(task_id) if r.status == S.RUNNING], 30, "the running row"
    )
    assert site.partials(), "pg_dump has no partial file open"
    return dump


def completed(runs: list[Run]) -> int:
    return sum(r.status == S.SUCCEEDED for r in runs)


def record_backup(
    drill: str, runs: list[Run], partials: list[str], lost: int, **counts: Any
) -> None:
    """A backup drill's count: one backup owed, the rows of its task, backups completed more
    than once, partial files left."""
    twice = max(0, completed(runs) - 1)
    record(drill, owed=1, rows=len(runs), lost=lost, twice=twice, partial=len(partials), **counts)


def test_a_pool_process_killed_mid_backup_takes_its_pg_dump_along_and_the_backup_runs_once(
    site: Site, processes: list[Process]
) -> None:
    worker = start_worker("backup-pool-kill", site.env(), concurrency=1)
    processes.append(worker)
    wait_until_ready(worker, 120)

    with dump_held(site):
        task_id = app.send_task("jobs.backup_database").id
        dump = caught_mid_dump(site, task_id)
        pool_process = parent_of(dump)
        assert pool_process != worker.popen.pid, "pg_dump is not the pool process's child"
        os.kill(pool_process, signal.SIGKILL)
        # Its pg_dump dies with it (not re-parented to PID 1, writing on).
        wait_for(lambda: dump not in pg_dumps(site.pg.port), 20, f"pg_dump {dump} to die")

    # The worker put the message back (task_reject_on_worker_lost): it runs again, once. The
    # dead run's row is closed as lost by the lost-run check, and not sent again: its message
    # already came back.
    wait_for(lambda: completed(site.runs(task_id)), 120, "the backup to succeed")
    time.sleep(2 * LEASE + 1)
    site.recover()
    runs = site.runs(task_id)
    partials = site.partials()
    record_backup(
        "worker pool process SIGKILLed mid-backup",
        runs,
        partials,
        lost=int(not completed(runs)),
        note=", ".join(f"attempt {r.attempt} {r.status}" for r in runs),
    )
    assert completed(runs) == 1, runs
    assert [(r.attempt, r.status) for r in runs] == [(1, S.LOST), (1, S.SUCCEEDED)], runs
    assert "sent again" not in runs[0].error_message
    assert partials == []
    assert pg_dumps(site.pg.port) == []
    assert len(site.backup_rows()) == 1
    assert sorted(site.files()) == sorted(Path(p).name for p in site.backup_rows())


@pytest.mark.parametrize("scheduled", [True, False], ids=["scheduled", "run by hand"])
def test_a_whole_worker_killed_mid_backup_is_sent_again_at_once_and_its_late_copy_is_a_duplicate(
    site: Site, processes: list[Process], scheduled: bool
) -> None:
    doomed = start_worker("backup-doomed", site.env(), concurrency=1)
    processes.append(doomed)
    wait_until_ready(doomed, 120)
    # As beat sends it (schedule and slot), or as `celery call` does (neither).
    slot = timezone.now().replace(microsecond=0) if scheduled else None
    schedule = "nightly-backup" if scheduled else ""
    headers = {"periodic_task_name": schedule, "nightshift_slot": slot.isoformat()} if slot else {}

    with dump_held(site):
        task_id = app.send_task("jobs.backup_database", headers=headers).id
        dump = caught_mid_dump(site, task_id)
        doomed.kill()  # main process and pool processes, as the OOM killer or a crash would
        wait_for(lambda: dump not in pg_dumps(site.pg.port), 20, f"pg_dump {dump} to die")

    # Redis would hand the message out again only after its visibility timeout (hours): the
    # lost-run check sends it again at once, as attempt 2 of the same task.
    time.sleep(2 * LEASE + 1)
    site.recover()
    [lost] = site.runs(task_id)
    assert lost.status == S.LOST, lost
    assert "sent again as attempt 2" in lost.error_message, lost.error_message

    # A new worker, whose Redis hands out the dead worker's message again after 20 s.
    survivor = start_worker(
        "backup-survivor", site.env(), concurrency=1, app="tests.e2e_redelivery_app"
    )
    processes.append(survivor)
    wait_for(lambda: completed(site.runs(task_id)), 120, "attempt 2 to succeed")
    wait_for(
        lambda: [r for r in site.runs(task_id) if r.status == S.SKIPPED_DUPLICATE],
        120,
        "the late copy of attempt 1 to be refused",
    )
    runs = site.runs(task_id)
    partials = site.partials()
    record_backup(
        f"whole worker SIGKILLed mid-backup ({'scheduled' if scheduled else 'run by hand'})",
        runs,
        partials,
        lost=int(not completed(runs)),
        note=", ".join(f"attempt {r.attempt} {r.status}" for r in runs),
    )
    assert completed(runs) == 1, runs
    statuses = sorted((r.attempt, r.status) for r in runs)
    assert statuses == [(1, S.LOST), (1, S.SKIPPED_DUPLICATE), (2, S.SUCCEEDED)], runs
    retry = next(r for r in runs if r.attempt == 2)
    assert (retry.trigger, retry.schedule, retry.slot) == ("retry", schedule, slot)
    duplicate = next(r for r in runs if r.status == S.SKIPPED_DUPLICATE)
    assert "lost and has been sent again as attempt 2" in duplicate.error_message
    assert partials == []
    assert pg_dumps(site.pg.port) == []
    assert len(site.backup_rows()) == 1
    assert sorted(site.files()) == sorted(Path(p).name for p in site.backup_rows())


@pytest.fixture
def small_disk(site: Site) -> Iterator[Path]:
    """The backup directory on a 2 MB file system of its own."""
    assert os.geteuid() == 0, "the disk-full drill mounts a tmpfs: run the suite as root (CI does)"
    site.backups.mkdir(mode=0o700)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(site.backups)],
        check=True,
    )
    try:
        yield site.backups
    finally:
        subprocess.run(["umount", "--lazy", str(site.backups)], check=False)


def test_a_full_disk_fails_the_backup_clearly_and_leaves_older_backups_untouched(
    site: Site, small_disk: Path, processes: list[Process], sentry_server: SentryServer
) -> None:
    env = site.env(SENTRY_DSN=sentry_server.dsn)
    worker = start_worker("backup-disk-full", env, concurrency=1)
    processes.append(worker)
    older = site.final_run(app.send_task("jobs.backup_database").id)
    assert older.status == S.SUCCEEDED, older.error_message
    before = site.files()
    # Enough data that its compressed dump (several MB) cannot fit.
    site.sql(
        "INSERT INTO ballast (filler) SELECT md5(g::text) || md5((-g)::text) "
        "FROM generate_series(1, 200000) g"
    )

    task_id = app.send_task("jobs.backup_database").id
    run = site.final_run(task_id)
    runs = site.runs(task_id)
    partials = site.partials()
    events = events_of_failure(sentry_server, run)
    record_backup(
        "disk full during a backup",
        runs,
        partials,
        lost=0 if runs else 1,
        events_per_failure=float(len(events)),
        note=run.error_message[:110],
    )
    assert run.status == S.FAILED, run
    assert "No space left on device" in run.error_message, run.error_message
    assert len(events) == 1, [e.get("exception") or e.get("logentry") for e in events]
    assert partials == []
    assert site.files() == before  # the older backup, byte for byte, and nothing else
    assert len(site.backup_rows()) == 1


def test_a_missing_pg_dump_fails_the_backup_naming_it_and_leaves_nothing(
    site: Site, tmp_path: Path, processes: list[Process], sentry_server: SentryServer
) -> None:
    empty = tmp_path / "no-postgresql-here"
    empty.mkdir()
    env = site.env(PG_BIN_DIR=str(empty), SENTRY_DSN=sentry_server.dsn)
    worker = start_worker("backup-no-pg-dump", env, concurrency=1)
    processes.append(worker)

    task_id = app.send_task("jobs.backup_database").id
    run = site.final_run(task_id)
    runs = site.runs(task_id)
    partials = site.partials() if site.backups.exists() else []
    events = events_of_failure(sentry_server, run)
    record_backup(
        "pg_dump missing",
        runs,
        partials,
        lost=0 if runs else 1,
        events_per_failure=float(len(events)),
        note=run.error_message[:110],
    )
    assert run.status == S.FAILED, run
    assert f"pg_dump not found in PG_BIN_DIR ({empty})" in run.error_message, run.error_message
    assert len(events) == 1, [e.get("exception") or e.get("logentry") for e in events]
    assert partials == []
    assert not site.backups.exists() or site.files() == {}
    assert site.backup_rows() == []
