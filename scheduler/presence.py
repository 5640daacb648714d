"""Who is alive: beat's last tick and the workers online, kept in Redis by the processes.

Beat stamps a key on every tick (at least every 5 s with DatabaseScheduler); each worker's
main process stamps its hostname in a hash every PRESENCE_INTERVAL seconds, and the queues it
consumes in another (the schedule form offers only queues some live worker consumes; the health
page shows each queue's consumers). The health page reads both without asking the processes
anything, so it stays fast when one of them hangs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from scheduler.redis_client import client

logger = logging.getLogger(__name__)

BEAT_KEY = "nightshift:beat:last_tick"
WORKERS_KEY = "nightshift:workers"
QUEUES_KEY = "nightshift:worker-queues"  # hostname -> the queues it consumes, comma-separated
PRESENCE_INTERVAL = 15.0
# A worker not seen for this long is offline; its entry is dropped after FORGET_AFTER.
ONLINE_WITHIN = timedelta(seconds=3 * PRESENCE_INTERVAL)
FORGET_AFTER = timedelta(days=1)

_last_stamp = 0.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def record_beat_tick() -> None:
    """Stamp beat's liveness (at most once a second; never raises)."""
    global _last_stamp
    now = time.monotonic()
    if now - _last_stamp < 1.0:
        return
    _last_stamp = now
    # Beat's lease code already says, once in a while, when Redis cannot be reached.
    with contextlib.suppress(redis.RedisError):
        client().set(BEAT_KEY, datetime.now(UTC).isoformat(), ex=int(FORGET_AFTER.total_seconds()))


def beat_last_tick() -> datetime | None:
    value = client().get(BEAT_KEY)
    return datetime.fromisoformat(_text(value)) if value else None


@dataclass(frozen=True)
class WorkerPresence:
    hostname: str
    last_seen: datetime
    online: bool


def stamp_worker(hostname: str, queues: Iterable[str] = ()) -> None:
    pipe = client().pipeline()
    pipe.hset(WORKERS_KEY, hostname, datetime.now(UTC).isoformat())
    if queues:
        pipe.hset(QUEUES_KEY, hostname, ",".join(sorted(queues)))
    pipe.execute()


def forget_worker(hostname: str) -> None:
    """A worker that shuts down cleanly leaves the list at once."""
    try:
        pipe = client().pipeline()
        pipe.hdel(WORKERS_KEY, hostname)
        pipe.hdel(QUEUES_KEY, hostname)
        pipe.execute()
    except redis.RedisError as exc:  # shutting down: Redis may be gone too
        logger.warning("could not remove worker %s from Redis: %s", hostname, exc)


def workers(now: datetime | None = None) -> list[WorkerPresence]:
    """Every worker seen within FORGET_AFTER, online ones first, by hostname."""
    now = now or datetime.now(UTC)
    r = client()
    found, forgotten = [], []
    for raw_host, raw_seen in r.hgetall(WORKERS_KEY).items():
        host, seen = _text(raw_host), datetime.fromisoformat(_text(raw_seen))
        if now - seen > FORGET_AFTER:
            forgotten.append(host)
            continue
        found.append(WorkerPresence(host, seen, now - seen <= ONLINE_WITHIN))
    if forgotten:
        r.hdel(WORKERS_KEY, *forgotten)
        r.hdel(QUEUES_KEY, *forgotten)
    return sorted(found, key=lambda w: (not w.online, w.hostname))


def live_queues(now: datetime | None = None) -> set[str]:
    """The queues that some online worker consumes."""
    return set(consumers(now))


def start_worker_presence(hostname: str, queues: Iterable[str] = ()) -> threading.Thread:
    """Keep stamping `hostname` (and the queues it consumes) from a daemon thread of the
    worker's main process."""
    queues = list(queues)

    def loop() -> None:
        while True:
            try:
                stamp_worker(hostname, queues)
            except redis.RedisError as exc:
                logger.warning("could not record worker presence in Redis: %s", exc)
            time.sleep(PRESENCE_INTERVAL)

    thread = threading.Thread(target=loop, name="nightshift-presence", daemon=True)
    thread.start()
    return thread


def consumers(now: datetime | None = None) -> dict[str, list[str]]:
    """Per queue, the online workers that consume it (hostnames, sorted)."""
    online = {worker.hostname for worker in workers(now) if worker.online}
    found: dict[str, list[str]] = {}
    for raw_host, names in client().hgetall(QUEUES_KEY).items():
        host = _text(raw_host)
        if host in online:
            for queue in filter(None, _text(names).split(",")):
                found.setdefault(queue, []).append(host)
    return {queue: sorted(hosts) for queue, hosts in found.items()}
