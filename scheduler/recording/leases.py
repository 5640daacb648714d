"""Redis leases of runs: occurrence claims, overlap locks and liveness, all expiring on their own.

The overlap lock and the liveness of a long run are redis-py `Lock`s holding the run's task id
as their token, so that a redelivery of the same message (its worker died) finds them its own.
The process's keeper thread (scheduler.recording.keeper) extends them while their runs last. A
worker that dies stops extending, so its leases lapse after NIGHTSHIFT_RUN_LEASE_SECONDS.

A job that is safe to run again after dying midway (`retry_when_lost`) takes its attempt's
liveness lease at admission and keeps its message (`resend_key`) for as long as Redis would
keep it unacknowledged. When the lost-run check finds the attempt lost, it marks the liveness
key SUPERSEDED (only if no delivery holds it) and sends the message again as the next attempt;
a later delivery of the lost attempt (Redis hands it out again after its visibility timeout)
then finds the mark and is a duplicate.

A run cancelled in the admin leaves a mark under its task id (`cancel_key`, holding who
cancelled it) for as long as its message could come back: admission reads it in the same
round trip and refuses any later delivery (Celery's own list of revoked ids lives in the
memory of the workers that were running, and a restarted worker forgets it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from celery import current_app
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


def resend_key(task_id: str, attempt: int) -> str:
    """The message of an attempt to send again should it be lost."""
    return f"nightshift:resend:{task_id}:{attempt}"


# The liveness key of an attempt that was lost and sent again (never a task id).
SUPERSEDED = "superseded: sent again"


def redelivery_seconds() -> int:
    """How long Redis keeps a message whose worker died before handing it out again (the
    broker's visibility timeout); past it, the message itself comes back."""
    options = current_app.conf.broker_transport_options or {}
    return int(options.get("visibility_timeout", 3600))


def cancel_key(task_id: str) -> str:
    """The mark of a task id cancelled in the admin; it holds who cancelled which run."""
    return f"nightshift:cancelled:{task_id}"


def mark_cancelled(task_id: str, note: str) -> bool:
    """Mark `task_id` cancelled (`note`: by whom, which run) until any late delivery of its
    message has come; False if it already was."""
    ttl = redelivery_seconds() + 86400
    return bool(client().set(cancel_key(task_id), note, nx=True, ex=ttl))


def cancelled_note(task_id: str) -> str | None:
    """Who cancelled `task_id` and which run, if it was cancelled in the admin."""
    note = client().get(cancel_key(task_id))
    return note.decode() if isinstance(note, bytes) else note


def unmark_cancelled(task_id: str) -> None:
    client().delete(cancel_key(task_id))


def release_for(token: str, keys: list[str]) -> None:
    """Release the leases `keys` where `token` still holds them (one round trip)."""
    pipe = client().pipeline(transaction=False)
    for key in keys:
        pipe.eval(Lock.LUA_RELEASE_SCRIPT, 1, key, token)
    pipe.execute()


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
    message has the occurrence, ("overlap", None) when another run holds the lock,
    ("cancelled: NOTE", None) when the task id was cancelled in the admin.

    The lock is a redis-py `Lock` (token, extend, Lua release); its acquisition is the same
    SET NX PX that `Lock.acquire` sends, pipelined with the claim."""
    pipe = client().pipeline(transaction=False)
    pipe.get(cancel_key(token))
    if occurrence is not None:
        schedule, slot, ttl = occurrence
        key = occurrence_key(schedule, slot)
        pipe.set(key, token, nx=True, ex=max(ttl, 60), get=True)
    if lock_key is not None:
        pipe.set(lock_key, token, nx=True, px=int(lease_seconds() * 1000))
    replies = pipe.execute()
    cancelled = replies.pop(0)
    if cancelled is not None:
        if lock_key is not None:  # taken by this delivery, or still by the cancelled one
            release_for(token, [lock_key])
        note = cancelled.decode() if isinstance(cancelled, bytes) else str(cancelled)
        return f"cancelled: {note}", None
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


def extend(lock: Lock) -> bool:
    """Extend a lease for a full period; one that lapsed (Redis was away longer than a lease, or
    restarted without it) is taken back for its token unless someone else holds it now (then
    False: a lost-run check or another run has it)."""
    try:
        lock.extend(lease_seconds(), replace_ttl=True)
        return True
    except redis.exceptions.LockNotOwnedError:
        taken = client().set(lock.name, lock.local.token, nx=True, px=int(lease_seconds() * 1000))
        return bool(taken) or _ours(lock)


def live_unless_superseded(token: str, attempt: int, message: str) -> Lock | None:
    """Take the liveness lease of an attempt that may be sent again if lost, and keep its
    `message` (one round trip); None when the attempt was lost and already sent again."""
    key = alive_key(token, attempt)
    pipe = client().pipeline(transaction=False)
    pipe.set(key, token, nx=True, px=int(lease_seconds() * 1000))
    pipe.get(key)
    pipe.set(resend_key(token, attempt), message, ex=max(redelivery_seconds(), 60))
    fresh, holder, _ = pipe.execute()
    if fresh:
        return _lease(key, token)
    if holder is None or holder == token.encode():
        # An earlier delivery of this message held it (its worker died): ours now.
        return hold(key, token)
    return None


def kept_messages(attempts: list[tuple[str, int]]) -> list[str | None]:
    """The kept message of each (task id, attempt); None where none is kept (one round trip)."""
    if not attempts:
        return []
    found = client().mget([resend_key(task_id, attempt) for task_id, attempt in attempts])
    return [value.decode() if isinstance(value, bytes) else value for value in found]


def supersede(task_id: str, attempt: int) -> bool:
    """Mark a lost attempt as sent again, unless a delivery of it holds its liveness (then
    that delivery is its retry); True if marked. Lasts until any late delivery has come."""
    ttl = redelivery_seconds() + 86400
    return bool(client().set(alive_key(task_id, attempt), SUPERSEDED, nx=True, ex=ttl))


def unsupersede(task_id: str, attempt: int) -> None:
    """Take the mark back (sending again failed): a late delivery of the attempt then runs."""
    client().eval(Lock.LUA_RELEASE_SCRIPT, 1, alive_key(task_id, attempt), SUPERSEDED)


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
