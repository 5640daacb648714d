"""Redis leases: overlap locks, occurrence claims and run liveness, all expiring on their own.

A lease is a key holding its owner's token with a time to live. A worker that dies stops
renewing its leases, so they vanish after `NIGHTSHIFT_RUN_LEASE_SECONDS`; a live run keeps them
by a background thread that renews every lease of its process a few times per lease period.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# Delete each key still holding our token: one round trip for all of a run's leases.
_RELEASE = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('get', key) == ARGV[1] then released = released + redis.call('del', key) end
end
return released
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""

_client: redis.Redis | None = None
_client_pid: int | None = None
_registered: dict[str, Any] = {}


def _scripts(r: redis.Redis) -> dict[str, Any]:
    """Lua scripts, sent once and then called by their SHA."""
    if not _registered:
        _registered["release"] = r.register_script(_RELEASE)
        _registered["renew"] = r.register_script(_RENEW)
    return _registered


def client() -> redis.Redis:
    """This process's Redis client (a new one after a fork)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=5
        )
        _client_pid = os.getpid()
    return _client


def lease_ms() -> int:
    return int(settings.NIGHTSHIFT_RUN_LEASE_SECONDS * 1000)


def lock_key(job: str, schedule: str) -> str:
    return f"nightshift:lock:{job}:{schedule}"


def alive_key(task_id: str, attempt: int) -> str:
    """Liveness of one attempt; a redelivery of the same message shares it with the first."""
    return f"nightshift:alive:{task_id}:{attempt}"


def occurrence_key(schedule: str, slot: datetime) -> str:
    return f"nightshift:occurrence:{schedule}:{slot.isoformat()}"


def _is_ours(holder: bytes | str | None, token: str) -> bool:
    if isinstance(holder, bytes):
        holder = holder.decode()
    return holder == token


def claim_occurrence(schedule: str, slot: datetime, token: str, ttl_seconds: int) -> bool:
    """Claim one scheduled occurrence; True for the first claimant and for its redeliveries."""
    key = occurrence_key(schedule, slot)
    r = client()
    if r.set(key, token, nx=True, ex=max(ttl_seconds, 60)):
        return True
    return _is_ours(r.get(key), token)


def acquire(key: str, token: str) -> bool:
    """Take the lease `key`; a redelivery of the same message (same token) takes it over."""
    r = client()
    if not r.set(key, token, nx=True, px=lease_ms()):
        if not _is_ours(r.get(key), token):
            return False
        r.pexpire(key, lease_ms())
    _keeper.track(key, token)
    return True


def hold(key: str, token: str) -> None:
    """Set a lease unconditionally (the liveness of a run) and keep it renewed."""
    client().set(key, token, px=lease_ms())
    _keeper.track(key, token)


def release_begin(token: str, *keys: str) -> Callable[[], None]:
    """Send the release of `keys` now; the returned function waits for Redis's answer.

    A run ends with two writes, its row and its leases: sending one before doing the other
    overlaps their round trips (the cost of every run, see bench/run_overhead.py).
    """
    for key in keys:
        _keeper.forget(key)
    r = client()
    script = _scripts(r)["release"]
    pool = r.connection_pool
    conn: Any = pool.get_connection()  # redis-py's Connection is untyped
    try:
        conn.send_command("EVALSHA", script.sha, len(keys), *keys, token)
    except BaseException:
        conn.disconnect()
        pool.release(conn)
        raise

    def wait() -> None:
        try:
            try:
                conn.read_response()
            except redis.exceptions.NoScriptError:  # Redis restarted: scripts are gone
                conn.send_command("EVAL", script.script, len(keys), *keys, token)
                conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    return wait


def is_alive(keys: list[str]) -> list[bool]:
    """Which of `keys` still exist (one round trip)."""
    if not keys:
        return []
    pipe = client().pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [bool(found) for found in pipe.execute()]


class _Keeper:
    """Renews this process's leases in the background while their runs last."""

    def __init__(self) -> None:
        self._leases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def track(self, key: str, token: str) -> None:
        with self._lock:
            self._leases[key] = token
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # After a fork the parent's thread does not exist in the child.
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="nightshift-lease-keeper", daemon=True
                )
                self._thread.start()

    def forget(self, key: str) -> None:
        with self._lock:
            self._leases.pop(key, None)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.NIGHTSHIFT_RUN_LEASE_SECONDS / 3):
            with self._lock:
                leases = list(self._leases.items())
            if not leases:
                continue
            try:
                r = client()
                renew = _scripts(r)["renew"]
                pipe = r.pipeline(transaction=False)
                for key, token in leases:
                    renew(keys=[key], args=[token, lease_ms()], client=pipe)
                pipe.execute()
            except redis.RedisError:
                logger.warning("could not renew %d run leases in Redis", len(leases), exc_info=True)


_keeper = _Keeper()
