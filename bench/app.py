"""`celery -A bench.app worker`: the project app plus the two no-op jobs the benchmark compares."""

from __future__ import annotations

import threading
from typing import Any

from celery import Task
from celery.signals import task_postrun, worker_process_init, worker_process_shutdown
from django.db.backends.signals import connection_created

from config.celery import app
from scheduler.redis_client import client

__all__ = ["app"]

# Database statements of this worker process, from any thread (the run keeper has its own
# connection), and the recorded runs they served.
_tally = {"queries": 0, "runs": 0}
_tally_lock = threading.Lock()
FLUSH_EVERY = 200


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    with _tally_lock:
        _tally["queries"] += 1
    return execute(sql, params, many, context)


def _count_on(connection: Any, **kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:  # a reconnection keeps its wrappers
        connection.execute_wrappers.append(_count)


@worker_process_init.connect
def _install_query_counter(**kwargs: Any) -> None:
    connection_created.connect(_count_on, weak=False)


def _flush_tally() -> None:
    with _tally_lock:
        queries, recorded = _tally["queries"], _tally["runs"]
        _tally.update(queries=0, runs=0)
    pipe = client().pipeline(transaction=False)
    pipe.incrby("bench:queries", queries)
    pipe.incrby("bench:query_runs", recorded)
    pipe.execute()


@task_postrun.connect
def _tally_runs(sender: Any = None, **kwargs: Any) -> None:
    # Flushed every FLUSH_EVERY recorded runs and at exit: no extra Redis call per timed job.
    if sender is not None and sender.name == "bench.recorded_noop":
        with _tally_lock:
            _tally["runs"] += 1
            due = _tally["runs"] >= FLUSH_EVERY
        if due:
            _flush_tally()


@worker_process_shutdown.connect
def _flush_at_exit(**kwargs: Any) -> None:
    from scheduler import recording  # needs Django set up, which the worker does after this import

    recording.flush()  # the last rows' inserts belong to the tally
    _flush_tally()


@app.task(name="bench.bare_noop", base=Task)
def bare_noop() -> None:
    """A plain Celery task: the baseline."""
    client().incr("bench:done")


@app.task(name="bench.recorded_noop")
def recorded_noop() -> None:
    """The same work through JobTask: recorded, locked, reported."""
    client().incr("bench:done")
