"""One beat leads, the others stand by: a lease in Redis with a fencing token.

The leader holds `LEADER_KEY` (its identity, with a time to live of LEASE_SECONDS) and renews it
every RENEW_EVERY seconds; a standby tries to take it at every tick, so a leader that dies is
replaced within one lease period. Each time a beat takes the lease it draws a fencing token (a
counter that only grows); the watermark of handled slots is written only while the writer's
token is the newest, so a leader that was paused past its lease cannot move it.

A leader that cannot reach Redis keeps leading only until its lease would have expired.
Every beat, leader or standby, stamps itself in `BEATS_KEY` for the health page.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings

from scheduler.redis_client import client

logger = logging.getLogger(__name__)

LEADER_KEY = "nightshift:beat:leader"
FENCE_KEY = "nightshift:beat:fence"
HANDLED_KEY = "nightshift:beat:handled"
BEATS_KEY = "nightshift:beats"

# Take the lease if free; on success draw the next fencing token. ARGV: identity, ttl ms.
_TAKE = """
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('incr', KEYS[2])
end
return 0
"""
# Renew the lease if still ours.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Move the watermark only for the newest token still holding the lease. ARGV: identity,
# token, watermark.
_HANDLED = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('get', KEYS[2]) or '0') ~= tonumber(ARGV[2]) then return 0 end
redis.call('set', KEYS[3], ARGV[3])
return 1
"""


def lease_seconds() -> float:
    return float(settings.NIGHTSHIFT_BEAT_LEASE_SECONDS)


class Leadership:
    """This beat's side of the lease: `hold()` at every tick says whether it leads now."""

    def __init__(self) -> None:
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.token = 0  # the fencing token while leading, else 0
        self._valid_until = 0.0
        self._renewed = 0.0
        self._tried = 0.0
        self._warned = 0.0
        r = client()
        self._take = r.register_script(_TAKE)
        self._renew = r.register_script(_RENEW)
        self._handled = r.register_script(_HANDLED)

    @property
    def renew_every(self) -> float:
        return lease_seconds() / 3

    def hold(self) -> bool:
        """Take or renew the lease when it is time to; True while this beat leads."""
        now = time.monotonic()
        ttl_ms = int(lease_seconds() * 1000)
        try:
            if self.token:
                if now - self._renewed >= self.renew_every:
                    if not self._renew(keys=[LEADER_KEY], args=[self.identity, ttl_ms]):
                        logger.warning("beat %s lost the leadership", self.identity)
                        self.token = 0
                        return False
                    self._renewed, self._valid_until = now, now + lease_seconds()
            elif now - self._tried >= 0.5:
                self._tried = now
                token = int(self._take(keys=[LEADER_KEY, FENCE_KEY], args=[self.identity, ttl_ms]))
                if token:
                    self.token = token
                    self._renewed, self._valid_until = now, now + lease_seconds()
                    logger.info("beat %s leads (fencing token %d)", self.identity, token)
        except redis.RedisError as exc:
            if now - self._warned > 10:
                self._warned = now
                logger.warning("beat %s cannot reach Redis for its lease: %s", self.identity, exc)
            if self.token and now >= self._valid_until:
                logger.warning("beat %s stops leading: its lease has run out", self.identity)
                self.token = 0
        return bool(self.token) and now < self._valid_until

    def still_valid(self) -> bool:
        """Without asking Redis: is the lease still ours for sure (before a publish)?"""
        return bool(self.token) and time.monotonic() < self._valid_until

    def release(self) -> None:
        """Give the lease up at a clean shutdown, so a standby takes over at once."""
        if not self.token:
            return
        with contextlib.suppress(redis.RedisError):
            self._renew(keys=[LEADER_KEY], args=[self.identity, 1])  # expires at once if ours
        self.token = 0

    def record_handled(self, watermark: datetime) -> bool:
        """Every slot due at or before `watermark` is dispatched or recorded."""
        try:
            return bool(
                self._handled(
                    keys=[LEADER_KEY, FENCE_KEY, HANDLED_KEY],
                    args=[self.identity, self.token, watermark.isoformat()],
                )
            )
        except redis.RedisError:
            return False

    def stamp(self, leading: bool) -> None:
        """Tell the health page this beat is alive, and in which role (never raises)."""
        value = {"role": "leader" if leading else "standby", "seen": datetime.now(UTC).isoformat()}
        with contextlib.suppress(redis.RedisError):
            client().hset(BEATS_KEY, self.identity, json.dumps(value))

    def forget(self) -> None:
        with contextlib.suppress(redis.RedisError):
            client().hdel(BEATS_KEY, self.identity)


def handled_watermark() -> datetime | None:
    """Up to when the last leader handled every slot (None: unknown)."""
    value = client().get(HANDLED_KEY)
    return datetime.fromisoformat(_text(value)) if value else None


@dataclass(frozen=True)
class BeatPresence:
    identity: str
    role: str
    last_seen: datetime


def beats(now: datetime | None = None) -> list[BeatPresence]:
    """The beats seen lately, the leader first (for the health page)."""
    now = now or datetime.now(UTC)
    # Beats stamp every lease / 3: one unseen for a whole lease is gone.
    seen_within = timedelta(seconds=max(5.0, lease_seconds()))
    r = client()
    leader = r.get(LEADER_KEY)
    found, gone = [], []
    for raw_identity, raw in r.hgetall(BEATS_KEY).items():
        identity = _text(raw_identity)
        value = json.loads(raw)
        seen = datetime.fromisoformat(value["seen"])
        if now - seen > seen_within:
            gone.append(identity)
            continue
        role = "leader" if leader and _text(leader) == identity else "standby"
        found.append(BeatPresence(identity, role, seen))
    if gone:
        r.hdel(BEATS_KEY, *gone)
    return sorted(found, key=lambda b: (b.role != "leader", b.identity))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
