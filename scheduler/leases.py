"""Redis leases: overlap locks, occurrence claims and run liveness, all expiring on their own.

A lease is a key holding its owner's token with a time to live. A worker that dies stops
renewing its leases, so they vanish after `NIGHTSHIFT_RUN_LEASE_SECONDS`; a live run keeps them
by a background thread that renews every lease of its process a few times per lease period.

A run's bookkeeping goes over one connection per process (`_Channel`): the admission of a run
is one round trip, and its end (releasing its leases, keeping its row until the database has
it) is sent without waiting, its reply read by the next admission.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from redis.commands.core import Script

logger = logging.getLogger(__name__)

# Admit a run: claim its occurrence (when it has one), then take its overlap lock (when its
# policy asks for one). A key already holding our token is ours: a redelivery of the same
# message. ARGV: token, occurrence ttl in ms or '', lock ttl in ms or ''.
_ADMIT = """
local i = 1
if ARGV[2] ~= '' then
  if not redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2])
      and redis.call('get', KEYS[i]) ~= ARGV[1] then
    return 'duplicate'
  end
  i = i + 1
end
if ARGV[3] ~= '' then
  if not redis.call('set', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[3]) then
    if redis.call('get', KEYS[i]) ~= ARGV[1] then return 'overlap' end
    redis.call('pexpire', KEYS[i], ARGV[3])
  end
end
return 'ok'
"""
# Delete each lease still holding our token; with ARGV[2] (a field) and ARGV[3] (a row), also
# keep the row in the hash that is the last key.
_RELEASE = """
local leases = #KEYS
if ARGV[2] ~= '' then
  redis.call('hset', KEYS[leases], ARGV[2], ARGV[3])
  leases = leases - 1
end
for i = 1, leases do
  if redis.call('get', KEYS[i]) == ARGV[1] then redis.call('del', KEYS[i]) end
end
return leases
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Scripts (see _Channel.script); the keeper's renewal goes by its SHA through a pipeline.
_SCRIPTS = {
    name: Script(None, text.encode())  # type: ignore[arg-type]  # no client: called with one
    for name, text in (("admit", _ADMIT), ("release", _RELEASE), ("renew", _RENEW))
}

# Rows of finished runs that the database may not have yet (see scheduler.runs).
UNWRITTEN_ROWS_KEY = "nightshift:unwritten-runs"

_client: redis.Redis | None = None
_client_pid: int | None = None


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


class _Channel:
    """One Redis connection per process for run bookkeeping, whose replies can wait.

    `send` writes a command and returns; its reply is read by the next `call` (which reads
    every earlier reply first) or by `drain`. Redis executes the commands of one connection in
    order, so a call sees the effect of everything sent before it: a run admitted right after
    another run of the same schedule ended finds its lock released.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: Any = None  # redis-py's Connection is untyped
        self._pid: int | None = None
        self._pending = 0  # replies sent for and not yet read

    def _connection(self) -> Any:
        if self._conn is None or self._pid != os.getpid():
            # After a fork the parent's socket and its unread replies are not ours.
            self._conn = redis.Redis.from_url(
                settings.REDIS_URL,
                socket_connect_timeout=5,
                socket_timeout=5,
                single_connection_client=True,
            ).connection
            self._pid = os.getpid()
            self._pending = 0
        return self._conn

    def _send(self, args: tuple[Any, ...]) -> None:
        try:
            self._connection().send_command(*args)
        except redis.RedisError:
            self._pending = 0  # their replies went with the connection
            raise

    def _read(self) -> Any:
        try:
            return self._connection().read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            self._pending = 0
            raise

    def _read_pending(self) -> None:
        while self._pending:
            self._pending -= 1
            try:
                self._read()
            except redis.ResponseError as exc:
                logger.warning("Redis refused a run bookkeeping command: %s", exc)

    def send(self, *args: Any) -> None:
        """Send a command now and read its reply later (an error reply is logged)."""
        with self._lock:
            self._send(args)
            self._pending += 1

    def call(self, *args: Any) -> Any:
        """Send a command and return its reply, after the replies still pending (normally
        already arrived).

        A connection found broken (Redis restarted) is replaced once: the bookkeeping
        commands are idempotent, so sending one again is safe."""
        with self._lock:
            try:
                self._read_pending()
                self._send(args)
                return self._read()
            except redis.ConnectionError:
                self._send(args)
                return self._read()

    def drain(self) -> None:
        """Read the replies still pending (errors are logged)."""
        with self._lock:
            try:
                self._read_pending()
            except redis.RedisError:
                logger.warning("lost the replies of run bookkeeping commands", exc_info=True)

    def script(self, name: str, keys: list[str], args: list[Any], wait: bool) -> Any:
        """Run one of _SCRIPTS. Waited for: by its SHA, in full only if Redis does not know
        it. Not waited for: in full, so that no reply read later can ask for it again while
        commands sent after it have already run (Redis caches it by its SHA either way)."""
        script = _SCRIPTS[name]
        if not wait:
            self.send("EVAL", script.script, len(keys), *keys, *args)
            return None
        try:
            return self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.call("EVAL", script.script, len(keys), *keys, *args)


_channel = _Channel()


def admit(token: str, occurrence: tuple[str, int] | None = None, lock: str | None = None) -> str:
    """Claim a run's occurrence (key, ttl in seconds) and take its overlap lock, in one round
    trip: "ok", or "duplicate" (the occurrence is another message's) or "overlap" (the lock is
    held by another run). A redelivery of the same message (same token) is admitted again."""
    keys, args = [], [token, "", ""]
    if occurrence is not None:
        keys.append(occurrence[0])
        args[1] = str(max(occurrence[1], 60) * 1000)
    if lock is not None:
        keys.append(lock)
        args[2] = str(lease_ms())
    if not keys:
        return "ok"
    verdict = _text(_channel.script("admit", keys, args, wait=True))
    if verdict == "ok" and lock is not None:
        _keeper.track(lock, token)
    return verdict


def release(token: str, keys: list[str], stash: tuple[str, str] | None = None) -> None:
    """Give back the leases `keys` still holding `token`, and keep `stash` (field, row) in
    UNWRITTEN_ROWS_KEY until `unstash`. Sent without waiting for the reply: Redis executes it
    before whatever this process sends after it on the same connection (the next admission)."""
    for key in keys:
        _keeper.forget(key)
    if stash is None and not keys:
        return
    field, row = stash or ("", "")
    _channel.script(
        "release", [*keys, UNWRITTEN_ROWS_KEY] if stash else keys, [token, field, row], wait=False
    )


def unstash(fields: list[str]) -> None:
    """Forget kept rows that the database now has (sent without waiting)."""
    if fields:
        _channel.send("HDEL", UNWRITTEN_ROWS_KEY, *fields)


def drain() -> None:
    """Read the replies of this process's bookkeeping commands still unread."""
    _channel.drain()


def stashed_rows(chunk: int = 500) -> Iterator[list[tuple[str, str]]]:
    """Every kept row, as (field, row), in lists of up to `chunk`."""
    rows = []
    for field, row in client().hscan_iter(UNWRITTEN_ROWS_KEY, count=chunk):
        rows.append((_text(field), _text(row)))
        if len(rows) >= chunk:
            yield rows
            rows = []
    if rows:
        yield rows


def delete_stashed(fields: list[str]) -> None:
    if fields:
        client().hdel(UNWRITTEN_ROWS_KEY, *fields)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def hold(key: str, token: str) -> None:
    """Set a lease unconditionally (the liveness of a run) and keep it renewed."""
    client().set(key, token, px=lease_ms())
    _keeper.track(key, token)


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
                pipe = client().pipeline(transaction=False)
                for key, token in leases:
                    _SCRIPTS["renew"](keys=[key], args=[token, lease_ms()], client=pipe)
                pipe.execute()
            except redis.RedisError:
                logger.warning("could not renew %d run leases in Redis", len(leases), exc_info=True)


_keeper = _Keeper()
