"""Run admission and release against the suite's real Redis: one round trip in, one out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from scheduler.recording import leases, rows
from scheduler.redis_client import client

SLOT = datetime(2026, 12, 2, 2, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
OCCURRENCE = ("nightly", SLOT, 3600)
OCCURRENCE_KEY = "nightshift:occurrence:nightly:2026-12-02T02:30:00+08:00"
LOCK = "nightshift:lock:jobs.backup_database:nightly"


@pytest.fixture(autouse=True)
def empty_redis() -> Iterator[None]:
    client().flushdb()
    yield
    client().flushdb()


def test_the_first_message_of_an_occurrence_is_admitted_and_the_second_is_a_duplicate() -> None:
    assert leases.admit("task-a", OCCURRENCE, LOCK)[0] == "ok"
    assert leases.admit("task-b", OCCURRENCE, LOCK) == ("duplicate", None)
    # A redelivery of the admitted message (same task id: its worker died) is admitted again.
    verdict, lock = leases.admit("task-a", OCCURRENCE, LOCK)
    assert verdict == "ok" and lock is not None
    r = client()
    assert r.get(OCCURRENCE_KEY) == b"task-a"
    assert 3500 < r.ttl(OCCURRENCE_KEY) <= 3600
    assert r.get(LOCK) == b"task-a"
    assert 0 < r.pttl(LOCK) <= leases.lease_seconds() * 1000


def test_a_held_lock_is_an_overlap_until_its_run_releases_it() -> None:
    verdict, lock = leases.admit("task-a", None, LOCK)
    assert verdict == "ok" and lock is not None
    assert leases.admit("task-b", None, LOCK) == ("overlap", None)
    leases.release([lock])
    verdict, lock_b = leases.admit("task-b", None, LOCK)
    assert verdict == "ok" and lock_b is not None
    assert client().get(LOCK) == b"task-b"


def test_a_lapsed_lock_taken_by_another_run_is_not_released_by_the_first() -> None:
    _, lock = leases.admit("task-a", None, LOCK)
    assert lock is not None
    client().set(LOCK, "task-b")  # task-a's lease lapsed; task-b took the lock
    leases.release([lock])
    assert client().get(LOCK) == b"task-b"


def test_the_keeper_extends_a_lock_with_its_token_only() -> None:
    _, lock = leases.admit("task-a", None, LOCK)
    assert lock is not None
    client().pexpire(LOCK, 500)
    lock.extend(leases.lease_seconds(), replace_ttl=True)
    assert client().pttl(LOCK) > 500
    client().set(LOCK, "task-b", px=500)
    with pytest.raises(Exception, match="no longer owned"):
        lock.extend(leases.lease_seconds(), replace_ttl=True)
    assert client().pttl(LOCK) <= 500


def test_a_lease_that_lapsed_while_redis_was_away_is_taken_back_unless_another_holds_it() -> None:
    _, lock = leases.admit("task-a", None, LOCK)
    assert lock is not None
    client().delete(LOCK)  # what a Redis back after more than a lease period has
    assert leases.extend(lock)
    assert client().get(LOCK) == b"task-a"
    assert client().pttl(LOCK) > 1000
    client().set(LOCK, "task-b", px=5000)  # another run took it meanwhile
    assert not leases.extend(lock)
    assert client().get(LOCK) == b"task-b"


def test_a_restarted_redis_without_scripts_or_connection_still_admits_a_redelivery() -> None:
    r = client()
    assert leases.admit("task-a", None, LOCK)[0] == "ok"
    # What a Redis restart does: the script cache is empty and every connection is gone.
    r.script_flush()
    r.client_kill_filter(_type="normal", skipme=False)
    assert leases.admit("task-a", OCCURRENCE, LOCK)[0] == "ok"  # takes its own lock back
    assert r.get(OCCURRENCE_KEY) == b"task-a"


def test_the_release_keeps_the_row_in_the_same_round_trip() -> None:
    from scheduler.models import JobRun

    _, lock = leases.admit("task-a", None, LOCK)
    assert lock is not None
    run = JobRun(task_id="task-a", job="jobs.x", trigger="manual", status="succeeded")
    leases.release([lock], lambda pipe: rows.keep(pipe, "task-a:1:x", run))
    r = client()
    assert not r.exists(LOCK)
    assert r.hkeys(rows.UNWRITTEN_ROWS_KEY) == [b"task-a:1:x"]
    kept = r.hget(rows.UNWRITTEN_ROWS_KEY, "task-a:1:x")
    assert isinstance(kept, bytes) and rows.from_json(kept.decode()).job == "jobs.x"
    rows.forget(["task-a:1:x"])
    assert not r.exists(rows.UNWRITTEN_ROWS_KEY)


def test_an_attempt_sent_again_after_it_was_lost_refuses_its_late_copy() -> None:
    message = '{"args": [], "kwargs": {}, "headers": {}}'
    alive = leases.live_unless_superseded("task-a", 1, message)
    assert alive is not None
    assert leases.kept_messages([("task-a", 1), ("task-b", 1)]) == [message, None]
    # While a delivery holds the attempt's liveness, the lost-run check leaves it alone.
    assert not leases.supersede("task-a", 1)
    # A redelivery of the same message (its worker died) takes the liveness over.
    assert leases.live_unless_superseded("task-a", 1, message) is not None
    leases.release([alive])

    # The attempt is lost and sent again: a late copy of it is refused, whoever brings it.
    assert leases.supersede("task-a", 1)
    assert client().ttl(leases.alive_key("task-a", 1)) > leases.redelivery_seconds()
    assert leases.live_unless_superseded("task-a", 1, message) is None
    assert leases.live_unless_superseded("task-a", 2, message) is not None  # the next attempt

    # Sending it again failed: the mark goes, and the late copy will run instead.
    leases.unsupersede("task-a", 1)
    assert leases.live_unless_superseded("task-a", 1, message) is not None
