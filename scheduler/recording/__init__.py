"""Run recording: every execution of a job leaves one JobRun row, guarded by Redis leases.

The public face, for JobTask (scheduler.tasks), the lost-run check and the admin's services:

- `Dispatch.from_request(job, request)`: where a run came from (its message's headers).
- `admit(dispatch, overlap=..., start_deadline=...)`: an `ActiveRun`, or `Skipped` with its
  final row (`expired`, `skipped_duplicate`, `skipped_overlap`).
- `ActiveRun.finish(status, result=, exc=, report=)`: the final row, reported to Sentry when
  asked; `ActiveRun.release()` gives back its leases if `finish` never ran.
- `recover()`: write the rows workers kept in Redis but never inserted; close runs whose worker
  died (`lost`, or `timed_out` past the hard limit). Beat runs it every minute.
- `flush()`: a worker process that exits first writes the rows it has handed over.
- `claim_occurrences([(schedule, slot, token), ...])`: beat records a missed slot under the same
  claim a worker takes, so that a late delivery of it is a duplicate.
- `cancel(run, by)`: the admin closes a `running` run as `cancelled` and marks its task id, so
  that admission refuses any later delivery of its message; `terminated(request)`: the worker
  that killed it gives back its leases (scheduler.recording.cancel).

The life of a run's row:

1. Admission claims the occurrence and takes the overlap lock (redis-py `Lock`s whose token is
   the task id, so a redelivery of the same message is admitted again).
2. A run still going after RUNNING_ROW_AFTER (1 s) gets its `running` row from the process's
   one keeper thread, with a liveness lease that the thread extends (as it extends the lock);
   `finish` updates that row. A worker that dies before leaves no row: the message was not
   acknowledged (acks_late), so Celery delivers it again and that delivery is recorded.
3. A run that ends short and successful (the common case) is kept in Redis (the hash in
   scheduler.recording.rows) in the same round trip that releases its leases; the keeper
   inserts it within 0.1 s, with the rows of the runs that ended meanwhile, and forgets it in
   Redis. Measured: writing each row synchronously instead reached 0.56 of bare Celery's
   throughput on PostgreSQL (`bench/run_overhead.py`), below the 0.7 target.
4. Any other end (failed, retrying, timed out, a skip, a long run) is written by the job's own
   process before its message is acknowledged. If the database does not take it (an outage),
   the row is kept in Redis, as in 3., and the job goes on: to its retry, its failure.
5. `recover` inserts kept rows a lease period old (their worker died, or the database did not
   answer) unless the database has them, updates a `running` row whose final row is kept, and
   closes `running` rows whose liveness lease lapsed: `lost`, or `timed_out` past the job's
   hard time limit.
6. A run cancelled in the admin is closed there (`cancelled`, by whom) while its worker kills
   it; nothing of the killed process is written, and no later delivery of its message runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from scheduler.models import JobRun
from scheduler.recording import leases, rows
from scheduler.recording.cancel import cancel, terminated
from scheduler.recording.dispatch import (
    ENQUEUED_HEADER,
    NEXT_SLOT_HEADER,
    REQUESTED_BY_HEADER,
    RETRY_OF_HEADER,
    SCHEDULE_HEADER,
    SLOT_HEADER,
    Dispatch,
)
from scheduler.recording.keeper import keeper
from scheduler.recording.recovery import mark_lost_runs
from scheduler.recording.runs import ActiveRun, Skipped, admit, error_name

__all__ = [
    "ENQUEUED_HEADER",
    "NEXT_SLOT_HEADER",
    "REQUESTED_BY_HEADER",
    "RETRY_OF_HEADER",
    "SCHEDULE_HEADER",
    "SLOT_HEADER",
    "ActiveRun",
    "Dispatch",
    "Recovered",
    "Skipped",
    "admit",
    "cancel",
    "claim_occurrences",
    "error_name",
    "flush",
    "recover",
    "terminated",
]


@dataclass(frozen=True)
class Recovered:
    closed: list[JobRun]  # runs closed as lost or timed out
    rows_written: int  # rows of finished runs written from Redis


def recover() -> Recovered:
    """Write the kept rows that their worker never inserted, and close runs whose worker died."""
    written = rows.write_unwritten()
    return Recovered(closed=mark_lost_runs(), rows_written=written)


def flush(timeout: float = 10.0) -> bool:
    """Insert the rows this process handed to its keeper and end the keeper (a worker process
    calls this as it exits); False if that took longer than `timeout`."""
    return keeper.stop(timeout)


def claim_occurrences(claims: list[tuple[str, datetime, str]]) -> list[bool]:
    """Claim each (schedule, slot) for its token for a day, in one round trip: False where
    another message already has it (beat records a missed slot under the claim a worker takes,
    so that a late delivery of it is a duplicate)."""
    return leases.claim_occurrences(claims, 86400)
