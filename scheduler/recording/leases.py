"""Redis leases of runs: occurrence claims, overlap locks and liveness, all expiring on their own.

The overlap lock and the liveness of a long run are redis-py `Lock`s holding the run's task id
as their token, so that a redelivery of the same message (its worker died) finds them its own.
The process's keeper thread (scheduler.recording.keeper) extends them while their runs last. A
worker that dies stops extending, so its leases lapse after NIGHTSHIFT_RUN_LEASE_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from redis.lock import Lock

from scheduler.redis_client import client

logger = logging.getLogger(__name__)


def lease_seconds() -> float:
    return float(settings.NIGHTSHIFT_RUN_LEASE_SECONDS)


def lock_key(job: str, schedule: str) -> str:
    return f"nightshift:lock:{job}:{schedule}"


def alive_key(task_id: str, attempt: int) -> str:
    """Liveness of one attempt; a redelivery of the same message shares it with the first."""
    return f"nightshift:alive:{task_id}:{attempt}"


def occurrence_key(schedule: str, slot: datetime) -> str:
    return f"nightshift:occurrence:{schedule}:{slot.isoformat()}"


def claim_occurrences(claims: list[tuple[str, datetime, str]], ttl: int) -> list[bool]:
    """Claim each (schedule, slot) for its token for `ttl` seconds, in one round trip: True
    where the claim is new, False where another message already has it."""
    pipe = client().pipeline(transaction=False)
    for schedule, slot, token in claims:
        pipe.set(occurrence_key(schedule, slot), token, nx=True, ex=max(ttl, 60))
    return [bool(ok) for ok in pipe.execute()]


def _lease(key: str, token: str) -> Lock:
    # Not thread-local: the keeper thread extends what the run's thread took.
    lock = Lock(client(), key, timeout=lease_seconds(), thread_local=False)
    lock.local.token = token.encode()
    return lock


def _ours(lock: Lock) -> bool:
    """A lease already holding our token is a redelivery's (the first delivery's worker died):
    take it back for a full lease period."""
    try:
        return bool(lock.reacquire())
    except redis.exceptions.LockNotOwnedError:
        return False


def admit(
    token: str, occurrence: tuple[str, datetime, int] | None, lock_key: str | None
) -> tuple[str, Lock | None]:
    """Claim an occurrence (schedule, slot, ttl in seconds) and take an overlap lock for
    `token`, in one round trip: ("ok", the lock or None), ("duplicate", None) when another
    message has the occurrence, ("overlap", None) when another run holds the lock.

    The lock is a redis-py `Lock` (token, extend, Lua release); its acquisition is the same
    SET NX PX that `Lock.acquire` sends, pipelined with the claim."""
    if occurrence is None and lock_key is None:
        return "ok", None
    pipe = client().pipeline(transaction=False)
    if occurrence is not None:
        schedule, slot, ttl = occurrence
        key = occurrence_key(schedule, slot)
        pipe.set(key, token, nx=True, ex=max(ttl, 60), get=True)
    if lock_key is not None:
        pipe.set(lock_key, token, nx=True, px=int(lease_seconds() * 1000))
    replies = pipe.execute()
    if occurrence is not None:
        previous = replies.pop(0)
        if previous is not None and previous != token.encode():
            return "duplicate", None
    if lock_key is None:
        return "ok", None
    lock = _lease(lock_key, token)
    if not replies[0] and not _ours(lock):
        return "overlap", None
    return "ok", lock


def hold(key: str, token: str) -> Lock:
    """Set the lease `key` for `token` whoever held it (the liveness of a run)."""
    client().set(key, token, px=int(lease_seconds() * 1000))
    return _lease(key, token)


def release(locks: list[Lock], then: Callable[[Any], None] | None = None) -> None:
    """Release the leases still holding their token (one that lapsed may be someone else's
    now), and run `then(pipeline)` in the same round trip."""
    if not locks and then is None:
        return
    pipe = client().pipeline(transaction=False)
    for lock in locks:
        # Lock.release's own Lua script, as an EVAL: a pipeline running a registered Script
        # would first ask Redis whether it knows it, a round trip of its own.
        pipe.eval(Lock.LUA_RELEASE_SCRIPT, 1, lock.name, lock.local.token)
    if then is not None:
        then(pipe)
    pipe.execute()


def is_alive(keys: list[str]) -> list[bool]:
    """Which of `keys` still exist (one round trip)."""
    if not keys:
        return []
    pipe = client().pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [bool(found) for found in pipe.execute()]
