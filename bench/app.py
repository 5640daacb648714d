"""`celery -A bench.app worker`: the project app plus the two no-op jobs the benchmark compares."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import task_postrun, worker_process_init
from django.db import connection

from config.celery import app
from scheduler import leases

__all__ = ["app"]

_queries = 0


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    global _queries
    _queries += 1
    return execute(sql, params, many, context)


@worker_process_init.connect
def _install_query_counter(**kwargs: Any) -> None:
    connection.execute_wrappers.append(_count)


_tally = {"queries": 0, "runs": 0}
FLUSH_EVERY = 200


@task_postrun.connect
def _tally_queries(sender: Any = None, **kwargs: Any) -> None:
    # Tallied in memory and flushed every FLUSH_EVERY recorded runs, by every worker process:
    # no extra Redis call per timed job.
    global _queries
    if sender is not None and sender.name == "bench.recorded_noop":
        _tally["queries"] += _queries
        _tally["runs"] += 1
        if _tally["runs"] >= FLUSH_EVERY:
            pipe = leases.client().pipeline(transaction=False)
            pipe.incrby("bench:queries", _tally["queries"])
            pipe.incrby("bench:query_runs", _tally["runs"])
            pipe.execute()
            _tally.update(queries=0, runs=0)
    _queries = 0


@app.task(name="bench.bare_noop", base=Task)
def bare_noop() -> None:
    """A plain Celery task: the baseline."""
    leases.client().incr("bench:done")


@app.task(name="bench.recorded_noop")
def recorded_noop() -> None:
    """The same work through JobTask: recorded, locked, reported."""
    leases.client().incr("bench:done")
