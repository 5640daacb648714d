"""Cache warmers: values recomputed on a schedule and replaced in Django's cache, never deleted.

Any app registers a warmer (a cache key, a time to live and a function computing the value),
usually from its AppConfig.ready():

    from jobs import cache

    cache.register_warmer("shop:bestsellers", compute_bestsellers, ttl=timedelta(hours=1))

`jobs.refresh_cache` (every 10 minutes by default) calls `refresh_all()`, which recomputes each
value and writes it over the old one with a single SET: a reader sees either the old or the new
value, never a miss. Readers call `get(key)`, which computes and stores the value only on a cold
start (empty cache, or a value that outlived its TTL because refreshes stopped).

Choose a TTL well above the refresh interval (the default, one hour, is six refreshes of the
10-minute job): a failed refresh keeps the previous value, and a stopped beat turns into misses
only once the TTL runs out, not at the next reader.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from django.core.cache import cache

logger = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(hours=1)

# Portable across cache backends (memcached rejects spaces and control characters).
_KEY_RE = re.compile(r"^[!-~]{1,200}$")

_Compute = TypeVar("_Compute", bound=Callable[[], object])

# Distinguishes "not cached" from a cached None.
_MISSING = object()


class CacheRefreshError(Exception):
    """One or more cache warmers failed; their previous values stay cached."""


@dataclass(frozen=True)
class Warmer:
    key: str
    ttl: timedelta
    compute: Callable[[], object]

    @property
    def timeout(self) -> int:
        """The TTL in whole seconds, as Django's cache API takes it."""
        return max(1, round(self.ttl.total_seconds()))


_registry: dict[str, Warmer] = {}


def register_warmer(
    key: str, compute: Callable[[], object], ttl: timedelta | int = DEFAULT_TTL
) -> Warmer:
    """Add a warmer; `ttl` is a timedelta or seconds. A key registered twice is an error."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(
            f"cache warmer key {key!r} must be 1 to 200 printable ASCII characters, no spaces"
        )
    if not callable(compute):
        raise TypeError(f"cache warmer {key!r}: compute must be callable, not {compute!r}")
    ttl_delta = timedelta(seconds=ttl) if isinstance(ttl, int) else ttl
    if not isinstance(ttl_delta, timedelta) or ttl_delta < timedelta(seconds=1):
        raise ValueError(f"cache warmer {key!r}: ttl must be at least one second, not {ttl!r}")
    existing = _registry.get(key)
    if existing is not None:
        raise ValueError(
            f"cache warmer {key!r} is already registered (by {_describe(existing.compute)})"
        )
    warmer_ = Warmer(key=key, ttl=ttl_delta, compute=compute)
    _registry[key] = warmer_
    return warmer_


def warmer(key: str, ttl: timedelta | int = DEFAULT_TTL) -> Callable[[_Compute], _Compute]:
    """Decorator form of register_warmer: `@warmer("app:key", ttl=600)` on the compute function."""

    def decorate(compute: _Compute) -> _Compute:
        register_warmer(key, compute, ttl)
        return compute

    return decorate


def unregister_warmer(key: str) -> None:
    """Remove a warmer (its cached value stays until its TTL runs out)."""
    if _registry.pop(key, None) is None:
        raise KeyError(f"no cache warmer is registered under {key!r}")


def warmers() -> list[Warmer]:
    """The registered warmers, in registration order."""
    return list(_registry.values())


def get(key: str) -> object:
    """The cached value of a registered warmer; computed and stored on a cold start."""
    try:
        registered = _registry[key]
    except KeyError:
        raise KeyError(f"no cache warmer is registered under {key!r}") from None
    value = cache.get(key, _MISSING)
    if value is _MISSING:
        logger.info("cache warmer %s: cold start, computing for a reader", key)
        value = registered.compute()
        # add(), not set(): a refresh that stored a newer value meanwhile must win.
        cache.add(key, value, registered.timeout)
    return value


@dataclass
class RefreshResult:
    refreshed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def raise_for_failures(self) -> None:
        """Raise CacheRefreshError naming every failed warmer, if any failed."""
        if not self.failed:
            return
        total = len(self.refreshed) + len(self.failed)
        details = "; ".join(f"{key}: {error}" for key, error in sorted(self.failed.items()))
        raise CacheRefreshError(f"{len(self.failed)} of {total} cache warmers failed: {details}")


def refresh_all() -> RefreshResult:
    """Recompute every registered warmer and replace its cached value; failures are collected."""
    result = RefreshResult()
    for registered in warmers():
        try:
            value = registered.compute()
            # A single SET replaces the value atomically; deleting first would open a window
            # in which readers miss and recompute.
            cache.set(registered.key, value, registered.timeout)
        except Exception as error:
            # The previous value (and its TTL) stays; readers keep reading it.
            logger.exception(
                "cache warmer %s failed; its previous value stays cached", registered.key
            )
            result.failed[registered.key] = f"{type(error).__name__}: {error}"
        else:
            result.refreshed.append(registered.key)
    logger.info(
        "cache refresh: %d refreshed, %d failed%s",
        len(result.refreshed),
        len(result.failed),
        f" ({', '.join(sorted(result.failed))})" if result.failed else "",
    )
    return result


def _describe(compute: Callable[[], object]) -> str:
    module = getattr(compute, "__module__", None) or "?"
    name = getattr(compute, "__qualname__", None) or repr(compute)
    return f"{module}.{name}"
