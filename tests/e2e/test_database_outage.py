"""Fault drill: PostgreSQL stopped for 30 s while jobs run. Jobs are dispatched before, during
and after the outage to a real worker whose database is a private PostgreSQL cluster; once the
database is back, every dispatch ends with its final row there, none lost, none run twice.

The database stopped is the test's own (a cluster started here on a free port), never the
suite's or the shared one. Redis (the broker) stays up.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

from config.celery import app
from scheduler.models import JobRun
from scheduler.recording import leases
from scheduler.redis_client import client as redis_client
from tests.drills import PrivatePostgres, record
from tests.processes import Process, child_env, manage, start_worker, wait_for, wait_until_ready

pytestmark = [pytest.mark.e2e, pytest.mark.drill]

S = JobRun.Status
OUTAGE = 30  # seconds
LEASE = "6"  # NIGHTSHIFT_RUN_LEASE_SECONDS: kept rows are written this long after their run


@dataclass
class Dispatches:
    """The jobs sent, by task id: the key each counts its executions under (None: the job
    counts nothing) and the phase of the outage it was sent in."""

    keys: dict[str, str | None] = field(default_factory=dict)
    phase: dict[str, str] = field(default_factory=dict)

    def send(self, name: str, key: str | None, phase: str, **kwargs: object) -> str:
        task_id = app.send_task(name, kwargs={"key": key, **kwargs} if key else kwargs).id
        self.keys[task_id] = key
        self.phase[task_id] = phase
        return task_id

    def send_nth(self, n: int, phase: str) -> None:
        key = f"db-outage-{n}"
        if n % 3 == 0:  # asks the database, then runs 2.5 s: its `running` row comes first
            self.send("tests.count_in_db", key, phase, seconds=2.5)
        elif n % 3 == 1:  # asks the database
            self.send("tests.count_in_db", key, phase)
        else:  # never touches the database itself: only its row does
            self.send("tests.count", key, phase)


def rows_of(postgres: PrivatePostgres, task_ids: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Each task id's rows in the private database: (attempt, status), in attempt order."""
    with postgres.connect("nightshift") as conn:
        found = conn.execute(
            "SELECT task_id, attempt, status FROM scheduler_jobrun WHERE task_id = ANY(%s) "
            "ORDER BY task_id, attempt, id",
            [task_ids],
        ).fetchall()
    rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for task_id, attempt, status in found:
        rows[task_id].append((attempt, status))
    return rows


def is_final(attempts: list[tuple[int, str]]) -> bool:
    return bool(attempts) and attempts[-1][1] not in (S.RUNNING, S.RETRYING)


def test_postgres_stopped_for_30_s_while_jobs_run_loses_no_run(
    private_postgres: PrivatePostgres, processes: list[Process]
) -> None:
    private_postgres.start()
    private_postgres.create_database("nightshift")
    env = child_env(
        {
            "DATABASE_URL": private_postgres.url("nightshift"),
            "NIGHTSHIFT_RUN_LEASE_SECONDS": LEASE,
        }
    )
    manage(env, "migrate", "--no-input", "-v0")
    worker = start_worker("db-outage-worker", env, concurrency=2, app="tests.e2e_app")
    processes.append(worker)
    wait_until_ready(worker)

    sent = Dispatches()
    n = 0

    def dispatch_for(seconds: float, phase: str) -> None:
        nonlocal n
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            sent.send_nth(n, phase)
            n += 1
            time.sleep(1)

    dispatch_for(6, "before")
    # A long run whose `running` row is written before the outage and that ends in it.
    long_run = sent.send("tests.count_in_db", "db-outage-long", "before", seconds=6)
    wait_for(lambda: rows_of(private_postgres, [long_run]), 30, "the long run's running row")
    private_postgres.stop()
    # The reproduction: the heartbeat sent while the database is down.
    for _ in range(2):
        sent.send("jobs.heartbeat", None, "during")
    # A run that overlaps another of its job is skipped: its row too waits for the database.
    holder = sent.send("tests.sleep", None, "during", seconds=8)
    lock = leases.lock_key("tests.sleep", "")
    wait_for(lambda: redis_client().get(lock) == holder.encode(), 30, "the first sleep to run")
    skipped = sent.send("tests.sleep", None, "during", seconds=0)
    dispatch_for(OUTAGE - 2, "during")
    private_postgres.start()
    dispatch_for(6, "after")

    # Kept rows are written by the lost-run check (beat sends it every minute): sent here
    # until every dispatch has its final row, or for three minutes.
    task_ids = list(sent.keys)
    deadline = time.monotonic() + 180
    while True:
        app.send_task("scheduler.mark_lost_runs")
        time.sleep(3)
        rows = rows_of(private_postgres, task_ids)
        if all(is_final(rows.get(t, [])) for t in task_ids) or time.monotonic() > deadline:
            break
    time.sleep(3)  # a run that might still end twice would show by now
    rows = rows_of(private_postgres, task_ids)
    # How many times each ran to its end: the job's own count, else its succeeded rows.
    executions = {
        t: int(redis_client().get(f"tests:count:{k}") or 0)
        if k
        else sum(status == S.SUCCEEDED for _, status in rows.get(t, []))
        for t, k in sent.keys.items()
    }

    final = [t for t in task_ids if is_final(rows.get(t, []))]
    lost = [t for t in task_ids if t not in final]
    twice = [t for t in task_ids if executions[t] > 1]
    same_attempt_twice = {
        t: attempts for t, attempts in rows.items() if len({a for a, _ in attempts}) < len(attempts)
    }
    record(
        "PostgreSQL stopped for 30 s while jobs run",
        owed=len(task_ids),
        rows=len(final),
        lost=len(lost),
        twice=len(twice),
        note=(
            f"{sum(sent.phase[t] == 'during' for t in task_ids)} sent during the outage; "
            f"{sum(len(a) for a in rows.values())} rows with the retries"
        ),
    )
    statuses = Counter(rows[t][-1][1] for t in final)
    summary = (
        f"{len(task_ids)} dispatched, final {len(final)} ({dict(statuses)}); lost "
        f"{[(sent.phase[t], t, rows.get(t)) for t in lost]}; ran twice {twice}"
    )
    assert not lost, summary
    assert not twice, summary
    assert not same_attempt_twice, f"attempts with two rows: {same_attempt_twice}"
    # Every dispatch ran once in the end, its last row saying so; or it met another run of
    # its job and was skipped (the overlap policy of all but tests.count_in_db), running
    # none; or, the heartbeat, its retries ran out in the outage: failed.
    assert set(statuses) <= {S.SUCCEEDED, S.SKIPPED_OVERLAP, S.FAILED}, summary
    for t in task_ids:
        last = rows[t][-1][1]
        assert last != S.FAILED or sent.keys[t] is None, f"{t}: {rows[t]}"
        assert executions[t] == (last == S.SUCCEEDED), f"{t}: {executions[t]} runs, {rows[t]}"
    # The long run's `running` row got its final status from Redis; the skip its row.
    assert rows[long_run] == [(1, S.SUCCEEDED)], rows[long_run]
    assert rows[skipped] == [(1, S.SKIPPED_OVERLAP)], rows[skipped]
    # Some really met the outage: the database refused them and they were retried.
    assert any(len(attempts) > 1 for attempts in rows.values()), summary
