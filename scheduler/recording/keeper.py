"""The worker process's one background thread for run recording."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

from scheduler.models import JobRun
from scheduler.recording import leases, rows

logger = logging.getLogger(__name__)

THREAD_NAME = "nightshift-run-keeper"


@receiver(connection_created, dispatch_uid="nightshift-keeper-statement-timeout")
def _bound_waits(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """The keeper's own database connection gives up on a statement after a quarter of a lease
    period: a database that hangs (a lock held, a stalled disk) must not keep the thread from
    extending the leases of running jobs. A finished row not inserted stays kept in Redis, for
    `recover`; a running row is tried again."""
    if threading.current_thread().name != THREAD_NAME:
        return
    wait_ms = int(leases.lease_seconds() * 250)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET statement_timeout TO %s", [wait_ms])
        elif connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA busy_timeout = {wait_ms}")


class Keeper:
    """Every TICK seconds: inserts the rows that finished runs handed over (one INSERT for all
    that arrived meanwhile) and forgets them in Redis; calls each watched run's `tick(extend)`
    (its `running` row once due; `extend` once per third of a lease period, to extend its
    leases). Started by the first run of a process; a forked child starts its own."""

    TICK = 0.1  # rows wait at most this long for others to share their INSERT
    BATCH = 500

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # A forked child has none of its parent's threads, nor its parent's runs.
        self._lock = threading.Lock()
        self._watched: list[Callable[[bool], bool]] = []
        self._finished: queue.SimpleQueue[tuple[str, JobRun]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _ensure_thread(self) -> None:
        # Called with self._lock held.
        if self._thread is None or not self._thread.is_alive():
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop,), name=THREAD_NAME, daemon=True
            )
            self._thread.start()

    def watch(self, tick: Callable[[bool], bool]) -> None:
        """Call `tick(extend)` every TICK until it returns False (its run ended)."""
        with self._lock:
            self._watched.append(tick)
            self._ensure_thread()

    def hand_over(self, field: str, run: JobRun) -> None:
        """Insert `run`, kept in Redis under `field`, with the next batch."""
        with self._lock:
            self._finished.put((field, run))
            self._ensure_thread()

    def stop(self, timeout: float) -> bool:
        """Write what was handed over, close the thread's database connection and end it (a
        worker process calls this as it exits); False if that took longer than `timeout`."""
        with self._lock:
            thread, stop = self._thread, self._stop
        if thread is None:
            return True
        stop.set()
        thread.join(timeout)
        return not thread.is_alive()

    def _loop(self, stop: threading.Event) -> None:
        next_extend = time.monotonic() + leases.lease_seconds() / 3
        while True:
            stopping = stop.wait(self.TICK)
            extend = time.monotonic() >= next_extend
            if extend:
                next_extend = time.monotonic() + leases.lease_seconds() / 3
            self._tick_runs(extend)  # the leases first: nothing the database does delays them
            self._write_finished()
            if stopping:
                connections.close_all()  # this thread's own
                with self._lock:
                    if self._finished.empty():
                        self._thread = None
                        return

    def _write_finished(self) -> None:
        while True:
            batch: list[tuple[str, JobRun]] = []
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._finished.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            try:
                close_old_connections()  # this thread's own connection
                inserted, refused = rows.insert(batch)
                rows.forget(inserted + refused)
                if len(inserted) + len(refused) < len(batch):
                    logger.warning(
                        "%d finished runs stay in Redis until the lost-run check writes them",
                        len(batch) - len(inserted) - len(refused),
                    )
            except Exception:
                logger.exception("could not write the rows of %d finished runs", len(batch))

    def _tick_runs(self, extend: bool) -> None:
        with self._lock:
            watched = list(self._watched)
        ended = set()
        for tick in watched:
            try:
                if not tick(extend):
                    ended.add(id(tick))
            except Exception:
                logger.exception("the run keeper failed on a run; it tries again")
        if ended:
            with self._lock:
                self._watched = [t for t in self._watched if id(t) not in ended]


keeper = Keeper()
