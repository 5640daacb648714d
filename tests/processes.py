"""Real worker and beat processes for end-to-end tests, with their logs kept under var/, and
the count a user makes of their runs afterwards: the slots owed, and the rows written for each."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from django.db import connection

from scheduler.models import JobRun

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "var" / "test-logs"
CELERY = str(Path(sys.executable).parent / "celery")

T = TypeVar("T")


def test_database_url() -> str:
    """DATABASE_URL of the database this test session uses, for child processes."""
    cfg = connection.settings_dict
    if cfg["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{cfg['NAME']}"
    if cfg["ENGINE"] == "django.db.backends.postgresql":
        auth = quote(cfg["USER"] or "", safe="")
        if cfg["PASSWORD"]:
            auth += ":" + quote(cfg["PASSWORD"], safe="")
        host = cfg["HOST"] or "localhost"
        port = f":{cfg['PORT']}" if cfg["PORT"] else ""
        return f"postgres://{auth}@{host}{port}/{quote(cfg['NAME'], safe='')}"
    raise NotImplementedError(cfg["ENGINE"])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The suite's environment pointed at the test database."""
    return {**os.environ, "DATABASE_URL": test_database_url(), **(extra or {})}


class Process:
    """A child process whose output goes to a log file the test can read and show."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a test can kill it whole
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the process and its children, as a crash or the OOM killer would."""
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


def manage(env: Mapping[str, str], *args: str) -> None:
    """Run `manage.py` in a child process with `env` (a private database's, say)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {args[0]} failed: {done.stdout}{done.stderr}"


def start_worker(
    name: str,
    env: Mapping[str, str],
    concurrency: int = 2,
    app: str = "config",
    options: Sequence[str] = (),
) -> Process:
    return Process(
        name,
        [
            CELERY,
            "-A",
            app,
            "worker",
            "--hostname",
            f"{name}@%h",
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            *options,
        ],
        env,
    )


def wait_until_ready(worker: Process, timeout: float = 60, broker_url: str | None = None) -> None:
    """Wait until the worker answers a ping (its pool is up and consuming); `broker_url` when
    the worker uses another broker than the suite's."""
    from celery import Celery

    from config.celery import app

    # Celery's control commands go through the app's producer pool, whatever connection they
    # are given: another broker needs an app of its own.
    pinger = app if broker_url is None else Celery("ping", broker=broker_url, set_as_current=False)
    hostname = f"{worker.name}@{socket.gethostname()}"
    try:
        wait_for(
            lambda: pinger.control.ping(destination=[hostname], timeout=0.5),
            timeout,
            f"{hostname} to answer a ping",
        )
    finally:
        if pinger is not app:
            pinger.close()


def start_beat(name: str, env: Mapping[str, str], app: str = "tests.e2e_app") -> Process:
    # The product's beat command; the pid file goes under var/ so two beats can coexist. Its app
    # is the workers' (the project's app plus the test jobs): beat knows the jobs it sends, as in
    # a deploy, where beat and workers run the same code.
    return Process(
        name,
        [CELERY, "-A", app, "beat", "-S", "django", "--pidfile", str(LOG_DIR / f"{name}.pid")],
        env,
    )


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# A run in these states has not ended yet; every other status is final.
UNFINISHED = (JobRun.Status.RUNNING, JobRun.Status.RETRYING)


def runs_of(task_id: str) -> list[JobRun]:
    """Every row of one Celery task id (its attempts), in order."""
    return list(JobRun.objects.filter(task_id=task_id).order_by("attempt", "id"))


def started_run(task_id: str, timeout: float = 30) -> JobRun:
    """The row of `task_id` once a worker has started it."""
    return wait_for(
        lambda: JobRun.objects.filter(task_id=task_id, status=JobRun.Status.RUNNING).first(),
        timeout,
        f"the run of {task_id} to start",
    )


def final_run(task_id: str, timeout: float = 30) -> JobRun:
    """The run of `task_id` once it has ended (the newest ended row, should there be several)."""
    return wait_for(
        lambda: JobRun.objects.filter(task_id=task_id).exclude(status__in=UNFINISHED).first(),
        timeout,
        f"the final run of {task_id}",
    )


def final_runs(task_id: str, count: int = 1, timeout: float = 30) -> list[JobRun]:
    """Every row of `task_id` once `count` of them have ended (the attempts of a retried job)."""

    def probe() -> list[JobRun] | None:
        found = runs_of(task_id)
        return found if sum(r.status not in UNFINISHED for r in found) >= count else None

    return wait_for(probe, timeout, f"{count} finished run(s) of {task_id}")


@dataclass
class Ledger:
    """One schedule's slots up to a moment, each with the rows written for it: what a user
    counts after an incident. Every slot owed should have exactly one row (it ran, or it was
    recorded as not run, with the reason); none lost, none twice."""

    schedule: str
    owed: list[datetime]
    rows: dict[datetime | None, list[JobRun]] = field(default_factory=dict)
    # Rows whose slot is not one of the schedule's own (off its phase, before its first slot,
    # or no slot at all).
    strays: list[JobRun] = field(default_factory=list)

    @property
    def lost(self) -> list[datetime]:
        return [slot for slot in self.owed if not self.rows.get(slot)]

    @property
    def twice(self) -> dict[datetime | None, list[str]]:
        """Slots with more than one row, and the rows' statuses."""
        return {slot: [r.status for r in rows] for slot, rows in self.rows.items() if len(rows) > 1}

    @property
    def ran_twice(self) -> list[datetime | None]:
        return [
            slot
            for slot, rows in self.rows.items()
            if sum(r.status == JobRun.Status.SUCCEEDED for r in rows) > 1
        ]

    @property
    def running(self) -> int:
        return sum(r.status == JobRun.Status.RUNNING for rows in self.rows.values() for r in rows)

    def outcome(self, slot: datetime) -> JobRun | None:
        """The row of an owed slot (None: lost; the first when there are several)."""
        rows = self.rows.get(slot)
        return rows[0] if rows else None

    def outcomes(self) -> Counter[str]:
        """How many owed slots ended in each status."""
        return Counter(r.status for r in map(self.outcome, self.owed) if r is not None)

    def summary(self) -> str:
        written = sum(len(self.rows.get(slot, [])) for slot in self.owed)
        return (
            f"{self.schedule}: {len(self.owed)} slots owed, {written} rows "
            f"({dict(self.outcomes())}), lost {len(self.lost)}, with two rows or more "
            f"{len(self.twice)}, ran twice {len(self.ran_twice)}, stray rows {len(self.strays)}"
        )


def ledger(
    schedule: str,
    first: datetime,
    every: timedelta,
    until: datetime,
    runs: Iterable[JobRun] | None = None,
) -> Ledger:
    """The ledger of a schedule whose slots are `first + k * every`: those up to `until` are
    owed; rows of later slots (sent just before the count) are kept but not owed. The rows are
    the test database's, unless `runs` gives them (read from another database)."""
    owed = []
    slot = first
    while slot <= until:
        owed.append(slot)
        slot += every
    book = Ledger(schedule, owed)
    if runs is None:
        runs = JobRun.objects.filter(schedule=schedule).order_by("slot", "id")
    for run in runs:
        if run.slot is None or run.slot < first or (run.slot - first) % every:
            book.strays.append(run)
        else:
            book.rows.setdefault(run.slot, []).append(run)
    return book


def settled(count: Callable[[], Iterable[Ledger]], timeout: float) -> list[Ledger]:
    """The ledgers once every owed slot has a row and no run is still going (or, after
    `timeout`, as they stand: the assertions that follow then say what is missing)."""
    deadline = time.monotonic() + timeout
    while True:
        books = list(count())
        done = all(not book.lost and not book.running for book in books)
        if done or time.monotonic() > deadline:
            return books
        time.sleep(0.5)
