"""Where jobs wait: each queue's length on the broker and the live workers that consume it.

The queues are those the settings declare (CELERY_TASK_QUEUES: one per job family) plus any that
a live worker consumes (`-Q reports`). The length is asked of the broker with a passive queue
declaration, which Redis and RabbitMQ both answer with the count of messages waiting (not those
a worker has taken and is running); the consumers come from the workers' own announcements
(scheduler.presence), not from the broker, which on Redis does not know them. A broker that does
not answer makes every length "unknown", with its error, and nothing raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from kombu.exceptions import ChannelError

from scheduler import presence

logger = logging.getLogger(__name__)

# Seconds the health page waits for the broker before it shows the lengths as unknown.
BROKER_TIMEOUT = 2


@dataclass(frozen=True)
class QueueState:
    name: str
    waiting: int | None  # messages waiting; None: unknown (see `error`)
    consumers: list[str]  # hostnames of the online workers that consume it
    error: str = ""  # why the length is unknown
    declared: bool = True  # one of the settings' queues (else only a worker's -Q names it)


def queue_states() -> list[QueueState]:
    """Every declared or consumed queue with its length and consumers, declared ones first."""
    consumers = presence.consumers()
    declared = list(settings.NIGHTSHIFT_QUEUES)
    names = declared + sorted(set(consumers) - set(declared))
    lengths, error = _lengths(names)
    return [
        QueueState(
            name=name,
            waiting=lengths.get(name),
            consumers=consumers.get(name, []),
            error=error,
            declared=name in declared,
        )
        for name in names
    ]


def _lengths(names: list[str]) -> tuple[dict[str, int], str]:
    """Messages waiting per queue, and the broker's error ('' when it answered)."""
    found: dict[str, int] = {}
    try:
        with current_app.connection_for_read(connect_timeout=BROKER_TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT)
            for name in names:
                # A channel per queue: on RabbitMQ a refused declaration closes its channel.
                channel: Any = conn.channel()  # typed as kombu's bare StdChannel
                try:
                    _, count, _ = channel.queue_declare(queue=name, passive=True)
                    found[name] = int(count)
                except ChannelError as exc:  # Redis's and RabbitMQ's alike
                    if str(getattr(exc, "reply_code", "")) != "404":  # Redis says "404"
                        raise
                    found[name] = 0  # never declared (or, on Redis, empty): nothing waits
                finally:
                    _close(channel)
    except Exception as exc:  # any broker failure: the page shows it, it does not fail
        logger.warning("could not read the queues' lengths from the broker: %s", exc)
        return {}, f"{type(exc).__name__}: {exc}"
    return found, ""


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker's refusal
        logger.debug("closing a broker channel failed", exc_info=True)
