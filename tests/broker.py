"""The suite's broker as a test sees it, Redis or RabbitMQ (TEST_BROKER_URL): the messages
waiting in a queue, and emptying every queue between end-to-end tests."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from django.conf import settings

from config.celery import app
from scheduler.redis_client import client as redis_client

# kombu's Redis transport keeps a queue's messages of priority 1-9 in lists of their own.
_REDIS_PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass(frozen=True)
class Queued:
    """A Celery message waiting in a queue."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]


def rabbitmq() -> bool:
    return bool(settings.BROKER_IS_RABBITMQ)


def _redis_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}\x06\x16{step}" for step in _REDIS_PRIORITY_STEPS]


def waiting(queue: str) -> int:
    """How many messages wait in `queue` (none when it does not exist)."""
    if not rabbitmq():
        pipe = redis_client().pipeline(transaction=False)
        for key in _redis_keys(queue):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())
    with app.connection_for_write() as conn:
        channel: Any = conn.channel()  # py-amqp's Channel (kombu types it StdChannel)
        try:
            return int(channel.queue_declare(queue, passive=True).message_count)
        except conn.channel_errors:  # NOT_FOUND
            return 0
        finally:
            if channel.is_open:
                channel.close()


def messages(queue: str) -> list[Queued]:
    """The messages waiting in `queue`, oldest first, left where they are."""
    if not rabbitmq():
        found = []
        for key in _redis_keys(queue):
            for raw in reversed(redis_client().lrange(key, 0, -1)):
                envelope = json.loads(raw)
                args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
                found.append(Queued(envelope["headers"], envelope["properties"], args, kwargs))
        return found
    found = []
    with app.connection_for_write() as conn:
        channel: Any = conn.channel()  # py-amqp's Channel (kombu types it StdChannel)
        # Taken without acknowledgement: closing the channel puts them all back.
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            properties = dict(message.properties)
            headers = properties.pop("application_headers", {})
            args, kwargs, _ = json.loads(message.body)
            found.append(Queued(headers, properties, args, kwargs))
        channel.close()
    return found


def purge() -> None:
    """Empty every queue of the suite's broker: messages queued for one test must not be run
    by the next test's worker. (Redis: the caller empties the whole database.)"""
    if not rabbitmq():
        return
    names = rabbitmqctl("list_queues", "name").split()
    with app.connection_for_write() as conn:
        channel: Any = conn.channel()  # py-amqp's Channel (kombu types it StdChannel)
        for name in names:
            channel.queue_purge(name)
        channel.close()


def channels_of(pid: int) -> list[dict[str, str]]:
    """The AMQP channels (rabbitmqctl list_channels: name, confirm) of process `pid`'s
    connections to the suite's vhost, found by the local ports of its TCP sockets."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    found = []
    for line in rabbitmqctl("list_channels", "vhost", "name", "confirm").splitlines():
        channel_vhost, name, confirm = line.split("\t")
        local_port = int(name.split(" -> ")[0].rsplit(":", 1)[1])
        if channel_vhost == vhost() and local_port in ports:
            found.append({"name": name, "confirm": confirm})
    return found


def queue_types() -> dict[str, tuple[str, str]]:
    """(type, durable) of each queue of the suite's vhost, as rabbitmqctl lists them."""
    listed = rabbitmqctl("list_queues", "name", "type", "durable").splitlines()
    return {name: (kind, durable) for name, kind, durable in (q.split("\t") for q in listed)}


def vhost() -> str:
    return unquote(urlparse(settings.BROKER_URL).path[1:]) or "/"


def rabbitmqctl(*args: str) -> str:
    """`rabbitmqctl ARGS -p <the suite's vhost>` (the test runs where RabbitMQ does, as root)."""
    binary = shutil.which("rabbitmqctl")
    assert binary, "rabbitmqctl is not installed: the RabbitMQ tests run beside rabbitmq-server"
    done = subprocess.run(
        [binary, "-q", *args, "-p", vhost(), "--no-table-headers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout
