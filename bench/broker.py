"""A beat burst on each broker: n messages published the way beat's engine does (one producer,
kombu's `producer.batch`, `send_task` with headers), until the broker holds all n.

Contenders, one after another, each best of --rounds:

- redis: a private redis-server on a free port (the baseline: beat's publishes pipelined);
- rabbitmq: Nightshift's RabbitMQ settings (durable quorum queue, topic exchange, publisher
  confirms: each publish returns once RabbitMQ has the message; `batch` falls back to
  immediate publication on py-amqp);
- rabbitmq, no confirms: the same without confirms, to show what confirms cost.

RabbitMQ runs in a vhost made for the run (`rabbitmqctl add_vhost`, deleted at the end) on
--amqp-host (default 127.0.0.1:5672, user guest), so it never touches anyone's queues.

    .venv/bin/python bench/broker.py [--n 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery
from kombu import Exchange, Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import redis_server  # noqa: E402  (needs ROOT on the path)

QUEUE = "bench"


def app_for(url: str, confirms: bool) -> Celery:
    amqp = url.startswith("amqp")
    app = Celery("bench-broker", broker=url, set_as_current=False)
    exchange = Exchange(QUEUE, type="topic" if amqp else "direct")
    app.conf.update(
        task_queues=[
            Queue(
                QUEUE,
                exchange,
                routing_key=QUEUE,
                queue_arguments={"x-queue-type": "quorum"} if amqp else {},
            )
        ],
        task_default_queue=QUEUE,
        broker_transport_options={"confirm_publish": True} if amqp and confirms else {},
        broker_connection_retry_on_startup=True,
    )
    return app


def burst(app: Celery, n: int, waiting: Callable[[], int]) -> float:
    """Seconds from the first publish until the broker holds n messages."""
    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch(max_size=1000):
        for i in range(n):
            app.send_task("bench.noop", (i,), queue=QUEUE, producer=producer,
                          headers={"periodic_task_name": f"s{i}"})  # fmt: skip
    while waiting() < n:
        time.sleep(0.001)
    return time.perf_counter() - start


def amqp_waiting(app: Celery) -> Callable[[], int]:
    def count() -> int:
        with app.connection_for_write() as conn:
            channel = conn.channel()
            found = int(channel.queue_declare(QUEUE, passive=True).message_count)  # type: ignore[attr-defined]
            channel.close()  # type: ignore[attr-defined]
            return found

    return count


def purge(app: Celery) -> None:
    with app.connection_for_write() as conn:
        app.amqp.queues[QUEUE](conn.default_channel).declare()
        conn.default_channel.queue_purge(QUEUE)  # type: ignore[attr-defined]


def best(app: Celery, n: int, rounds: int, waiting: Callable[[], int]) -> float:
    times = []
    for _ in range(rounds):
        purge(app)
        times.append(burst(app, n, waiting))
    purge(app)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amqp-host", default="127.0.0.1:5672")
    args = parser.parse_args()

    results: dict[str, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="nightshift-bench-broker-"))
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port = redis_server.free_port()
    redis_process = redis_server.start(binary, port, tmp / "redis")
    vhost = f"nightshift_bench_broker_{os.getpid()}"
    ctl = ["rabbitmqctl", "-q"]
    try:
        import redis

        r = redis.Redis(port=port)
        redis_app = app_for(f"redis://127.0.0.1:{port}/0", confirms=False)
        results["redis"] = best(redis_app, args.n, args.rounds, lambda: int(r.llen(QUEUE)))

        subprocess.run([*ctl, "add_vhost", vhost], check=True)
        subprocess.run([*ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                       check=True)  # fmt: skip
        url = f"amqp://guest:guest@{args.amqp_host}/{vhost}"
        for name, confirms in (("rabbitmq", True), ("rabbitmq, no confirms", False)):
            app = app_for(url, confirms)
            results[name] = best(app, args.n, args.rounds, amqp_waiting(app))
            app.close()
    finally:
        subprocess.run([*ctl, "delete_vhost", vhost], check=False)
        redis_process.terminate()
        redis_process.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

    baseline = results["redis"]
    print(f"\nburst of {args.n} messages, best of {args.rounds} (one producer, producer.batch)")
    print(f"{'broker':<24}{'seconds':>10}{'msg/s':>10}{'vs redis':>10}")
    for name, seconds in results.items():
        print(f"{name:<24}{seconds:>10.3f}{args.n / seconds:>10.0f}{seconds / baseline:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
