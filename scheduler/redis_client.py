"""The project's Redis client: run leases, beat's leader lease and presence share its pool."""

from __future__ import annotations

import redis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

_clients: dict[str, redis.Redis] = {}


def client() -> redis.Redis:
    """A client for settings.REDIS_URL.

    redis-py's connection pool notices a fork and opens new connections in the child, so one
    client per URL serves every process and thread.
    """
    url = settings.REDIS_URL
    found = _clients.get(url)
    if found is None:
        found = _clients[url] = redis.Redis.from_url(
            url,
            socket_connect_timeout=5,
            socket_timeout=5,
            # A pooled connection that Redis closed (a restart) is replaced and the command
            # sent again, pipelines included: every command sent through this client is
            # idempotent (claims and locks by token, scripts that check their token).
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2),
            retry_on_error=[redis.ConnectionError],
        )
    return found
