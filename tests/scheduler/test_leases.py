"""Run admission and release against the suite's real Redis: one round trip in, none waited out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler import leases

OCCURRENCE = "nightshift:occurrence:nightly:2026-12-02T02:30:00+08:00"
LOCK = "nightshift:lock:jobs.backup_database:nightly"


@pytest.fixture(autouse=True)
def empty_redis() -> Iterator[None]:
    leases.client().flushdb()
    yield
    leases.drain()
    leases.client().flushdb()


def test_the_first_message_of_an_occurrence_is_admitted_and_the_second_is_a_duplicate() -> None:
    assert leases.admit("task-a", (OCCURRENCE, 3600), LOCK) == "ok"
    assert leases.admit("task-b", (OCCURRENCE, 3600), LOCK) == "duplicate"
    # A redelivery of the admitted message (same task id) is admitted again.
    assert leases.admit("task-a", (OCCURRENCE, 3600), LOCK) == "ok"
    r = leases.client()
    assert r.get(OCCURRENCE) == b"task-a"
    assert 3500 < r.ttl(OCCURRENCE) <= 3600
    assert 0 < r.pttl(LOCK) <= leases.lease_ms()


def test_a_held_lock_makes_the_next_run_an_overlap_until_it_is_released() -> None:
    assert leases.admit("task-a", None, LOCK) == "ok"
    assert leases.admit("task-b", None, LOCK) == "overlap"
    leases.release("task-a", [LOCK])  # not waited for ...
    # ... yet the next admission on this connection runs after it.
    assert leases.admit("task-b", None, LOCK) == "ok"
    assert leases.client().get(LOCK) == b"task-b"


def test_a_release_leaves_a_lock_that_another_run_took_over() -> None:
    leases.client().set(LOCK, "task-b")
    leases.release("task-a", [LOCK])
    leases.drain()
    assert leases.client().get(LOCK) == b"task-b"


def test_a_release_keeps_the_row_until_it_is_unstashed() -> None:
    assert leases.admit("task-a", None, LOCK) == "ok"
    leases.release("task-a", [LOCK], stash=("task-a:1:x", '{"job": "jobs.x"}'))
    leases.drain()
    r = leases.client()
    assert not r.exists(LOCK)
    assert r.hgetall(leases.UNWRITTEN_ROWS_KEY) == {b"task-a:1:x": b'{"job": "jobs.x"}'}
    leases.unstash(["task-a:1:x"])
    leases.drain()
    assert not r.exists(leases.UNWRITTEN_ROWS_KEY)


def test_a_restarted_redis_without_scripts_or_connection_still_admits() -> None:
    r = leases.client()
    assert leases.admit("task-a", None, LOCK) == "ok"  # the connection is up, the script known
    # What a Redis restart does: the script cache is empty and every connection is gone.
    r.script_flush()
    r.client_kill_filter(_type="normal", skipme=True)
    assert leases.admit("task-a", (OCCURRENCE, 60), LOCK) == "ok"
    assert r.get(OCCURRENCE) == b"task-a"


def test_a_redis_without_the_release_script_keeps_the_order_of_release_and_unstash() -> None:
    r = leases.client()
    assert leases.admit("task-a", None, LOCK) == "ok"
    r.script_flush()  # a new or restarted Redis knows no script
    leases.release("task-a", [LOCK], stash=("task-a:1:x", "{}"))
    leases.unstash(["task-a:1:x"])  # what the row writer sends once the row is inserted
    leases.drain()
    assert not r.exists(LOCK)
    assert not r.exists(leases.UNWRITTEN_ROWS_KEY), "the row came back after its unstash"


def test_stashed_rows_come_in_chunks() -> None:
    for i in range(7):
        leases.release(f"t{i}", [], stash=(f"t{i}:1:x", f'{{"n": {i}}}'))
    leases.drain()
    chunks = list(leases.stashed_rows(chunk=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert sorted(field for chunk in chunks for field, _ in chunk) == [
        f"t{i}:1:x" for i in range(7)
    ]
    leases.delete_stashed([f"t{i}:1:x" for i in range(7)])
    assert list(leases.stashed_rows()) == []
