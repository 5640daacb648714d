"""The engine: a DatabaseScheduler whose tick dispatches every due slot in one pass.

State, and where each piece lives:

- the schedule: one Entry per enabled PeriodicTask, in memory, loaded once at start and then
  row by row as the change log names them (scheduler.engine.changes);
- due order: a heap of (due time, id, version); an entry changed or dispatched gets a new
  version, so stale heap items are skipped instead of searched for;
- what was handled: `last_run_at` (the last slot handled, sent or recorded, so an interval's
  phase never drifts) and `total_run_count` (messages sent), written back in one statement per
  batch after each tick; one-off and expired schedules are disabled the same way;
- what was not sent: a JobRun row `missed` per slot whose deadline passed before it could be
  sent (beat down, standing by, or the broker refusing), and a `failed` one per slot of a broken
  schedule (scheduler.broken: arguments that do not fit its job), written in bulk;
- the leader's watermark in Redis: every slot due up to then is handled. A beat that takes the
  lead starts from it, so slots the old leader handled are not sent again and slots it missed
  are sent (inside their deadline) or recorded.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
import sentry_sdk
from celery.utils.time import get_exponential_backoff_interval
from django.db import DatabaseError, close_old_connections
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler
from sentry_sdk.crons import MonitorStatus, capture_checkin

from scheduler import presence, recording, reporting
from scheduler.batching import chunks
from scheduler.broken import BROKEN
from scheduler.engine import changes, entries
from scheduler.engine.entries import Entry
from scheduler.engine.leader import Leadership, handled_watermark
from scheduler.models import JobRun
from scheduler.policy import hard_time_limit
from scheduler.recording import NEXT_SLOT_HEADER, SLOT_HEADER
from scheduler.timing import latest

logger = logging.getLogger(__name__)

# Slots recorded `missed` per schedule in one catch-up; older ones are counted in the log only.
MAX_MISSED_PER_SCHEDULE = 1000
PUBLISH_BATCH = 1000
# Where publishes are immediate (RabbitMQ: one confirmed round trip each, about 1.3 ms here),
# smaller chunks, so beat renews its lease within a burst as often as on Redis.
UNBATCHED_CHUNK = 100
RELOAD_CHUNK = 500  # rows per fetch when reloading changed schedules
WRITE_BATCH = 1000


@dataclass
class _Unsent:
    entry: Entry
    slot: datetime
    deadline: datetime | None
    error: str
    tries: int = 1
    retry_at: float = 0.0


def _unsent_row(unsent: _Unsent, task_id: str, now: datetime, status: str, **fields: Any) -> JobRun:
    """The row beat itself writes for a slot it did not send (missed, or a broken schedule's)."""
    return JobRun(
        task_id=task_id,
        job=unsent.entry.task,
        schedule=unsent.entry.name,
        trigger=JobRun.Trigger.SCHEDULE,
        slot=unsent.slot,
        started_at=now,
        finished_at=now,
        status=status,
        **fields,
    )


class Engine(DatabaseScheduler):  # type: ignore[misc]  # django_celery_beat is untyped
    """What `celery -A config beat -S django` runs (see scheduler.engine)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._entries: dict[int, Entry] = {}
        self._due: list[tuple[float, int, int]] = []
        self._unsent: list[_Unsent] = []
        self._written: dict[int, Entry] = {}  # entries whose last_run_at is to be written
        self._sends: dict[int, int] = defaultdict(int)  # messages sent per entry, to count
        self._versions = 0
        self._disable: set[int] = set()  # one-off schedules done
        self._rows: list[JobRun] = []  # missed and broken slots' rows, to insert
        self._to_report: list[tuple[JobRun, Entry]] = []  # broken: Sentry hears once written
        self._leading = False
        self._next_poll = 0.0
        self._next_trim = 0.0
        self._next_handled = 0.0
        self._next_stamp = 0.0
        self._led_with_before = 0  # the fencing token of this beat's last lead
        self._announced = False
        self._warned: dict[str, float] = {}
        self.leadership: Leadership | None = None
        self.feed: changes.Feed | None = None
        self.builder: entries.Builder | None = None
        super().__init__(*args, **kwargs)
        self.max_interval = min(self.max_interval, 1.0)  # type: ignore[has-type]

    # --- Loading -----------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        """Load every enabled schedule; while the database is down, wait and retry."""
        from django.conf import settings

        self.poll_every = float(settings.NIGHTSHIFT_BEAT_POLL_SECONDS)
        self.builder = entries.Builder(self.app)
        attempt = 0
        while True:
            try:
                changes.ensure()
                self.feed = changes.Feed()
                # Stock: schedules declared in CELERY_BEAT_SCHEDULE become rows.
                self.update_from_dict(self.app.conf.beat_schedule)
                started = time.monotonic()
                for entry in self.builder.build_all(entries.rows().iterator(chunk_size=2000)):
                    self._add(entry)
                break
            except DatabaseError as exc:
                attempt += 1
                wait = get_exponential_backoff_interval(1, attempt, 30, full_jitter=False)
                # With the exception: Sentry groups an outage's errors by their class.
                logger.error(
                    "beat cannot load the schedule: the database does not answer (%s); "
                    "retrying in %d s",
                    " ".join(str(exc).split()), wait, exc_info=exc,
                )  # fmt: skip
                close_old_connections()
                self._entries.clear()
                self._due.clear()
                time.sleep(wait)
        self.leadership = Leadership()
        logger.info(
            "Nightshift engine loaded %d schedules in %.1f s", len(self._entries),
            time.monotonic() - started,
        )  # fmt: skip

    @property
    def schedule(self) -> dict[str, Any]:
        """The schedule by name (a copy: the engine's state is not edited through it)."""
        return {entry.name: entry for entry in self._entries.values()}

    def _add(self, entry: Entry, since: datetime | None = None) -> None:
        """Put `entry` in place. A schedule new here (created, enabled again, timing edited)
        owes no slot at or before `since`; None (at start-up) owes every slot since its last run.
        """
        old = self._entries.get(entry.id)
        self._renew(entry)
        if old is not None:
            entry.total_run_count = max(entry.total_run_count, old.total_run_count)
        if old is not None and old.timing_key == entry.timing_key:
            # Same timing (a rename, new kwargs...): it keeps its place.
            entry.last = _later(entry.last, old.last)
            entry.owed_from = old.owed_from
            entry.next = old.next if entry.last == old.last else entry.timing.after(entry.last)
        elif entry.timing.one_off and entry.total_run_count > 0 and since is None:
            entry.next = None  # ran once already (stock beat could run it again: #828)
        elif since is None:
            entry.next = entry.timing.after(entry.last)
        elif entry.timing.one_off:
            entry.last = None  # enabled again: it runs once more, as in stock beat
            entry.next = entry.timing.after(None)
        else:
            entry.owed_from = since
            self._skip_to(entry, since)
        self._entries[entry.id] = entry
        self._push(entry)

    def _skip_to(self, entry: Entry, since: datetime) -> None:
        """Make `since` where the entry stands: its slots due up to then are handled (or not
        owed), the later ones owed. Moves it forward or back."""
        if since < entry.owed_from:
            since = entry.owed_from
        phase = entry.last or entry.timing.start_time or entry.timing.changed_at
        entry.last = latest(entry.timing.schedule, since, phase)
        entry.next = entry.timing.after(entry.last)
        while entry.next is not None and entry.next.due_at <= since:
            entry.last = entry.next.slot
            entry.next = entry.timing.after(entry.last)

    def _renew(self, entry: Entry) -> None:
        """A new version: the entry's earlier heap items are stale from now on."""
        self._versions += 1
        entry.version = self._versions

    def _push(self, entry: Entry) -> None:
        if entry.next is not None:
            heapq.heappush(self._due, (entry.next.due_at.timestamp(), entry.id, entry.version))

    def _remove(self, task_id: int) -> None:
        self._entries.pop(task_id, None)  # its heap items are skipped as stale

    def _follow_changes(self) -> None:
        """Reload the schedules the change log names since the last poll."""
        assert self.feed is not None and self.builder is not None
        change = self.feed.poll()
        if not change.task_ids:
            return
        found = set()
        self._keep_lead()
        for task in entries.rows(change.task_ids).iterator(chunk_size=RELOAD_CHUNK):
            found.add(task.pk)
            self._keep_lead()  # an edit of 100,000 rows takes longer than a lease
            entry = self.builder.build(task)
            if entry is None:
                self._remove(task.pk)
                continue
            self._add(entry, since=change.changed_at.get(task.pk) or timezone.now())
        for task_id in change.task_ids - found:
            self._remove(task_id)  # deleted or disabled
        logger.info("beat reloaded %d changed schedules", len(change.task_ids))

    # --- The tick ----------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Follow changes, hold or seek the lead, dispatch everything due; seconds to sleep."""
        assert self.leadership is not None
        presence.record_beat_tick()
        now_mono = time.monotonic()
        if now_mono >= self._next_poll:
            self._next_poll = now_mono + self.poll_every
            self._guard("changes", self._follow_changes)
        leading = self.leadership.hold()
        if now_mono >= self._next_stamp:
            self._next_stamp = now_mono + self.leadership.renew_every
            self.leadership.stamp(leading)
        if leading and now_mono >= self._next_trim:
            self._next_trim = now_mono + 60
            self._guard("trim", changes.trim)
        if not leading:
            if self._leading:
                logger.warning("beat stops dispatching: it no longer leads")
            if self._leading or not self._announced:
                self._announced = True
                logger.info("beat %s stands by", self.leadership.identity)
            self._leading = False
            return self.poll_every
        if not self._leading:
            self._take_over()
            self._leading = True
        now = timezone.now()
        batch, missed, broken = self._collect(now)
        self._retry_unsent(now, batch, missed)
        if batch:
            self._publish(batch, now)
        if missed:
            self._record_missed(missed, now)
        if broken:
            self._record_broken(broken, now)
        self._guard("write-back", self._write_back)
        if batch or missed or broken or now_mono >= self._next_handled:
            # At once after sending (a successor must not send it again), else once a second.
            self._next_handled = now_mono + 1.0
            self._record_handled(now)
        return self._sleep_for()

    def _take_over(self) -> None:
        """Start leading where the watermark says: slots due up to it were handled, later ones
        are owed. If another beat led since this one last did, this beat's own positions say
        nothing: every schedule stands at the watermark (moved back if need be). If none did
        (this beat lost the lease to a Redis outage and took it back), its own positions and
        the slots it still has to retry are the truth; the watermark only moves it forward."""
        assert self.leadership is not None
        try:
            handled = handled_watermark()
        except redis.RedisError:
            handled = None
        token = self.leadership.token
        resumed = self._led_with_before > 0 and token == self._led_with_before + 1
        self._led_with_before = token
        logger.info(
            "beat leads from %s%s",
            _local(handled) if handled else "each schedule's last run",
            " (taking its own lead back)" if resumed else "",
        )
        if handled is None:
            return
        if not resumed:
            # Slots after the watermark are owed again by the rewind below; a one-off slot
            # waiting for its retry is not (one-offs only move forward), so it waits on.
            self._unsent = [u for u in self._unsent if u.entry.timing.one_off]
        self._unsent = [u for u in self._unsent if u.slot > handled]
        for entry in list(self._entries.values()):
            behind = entry.next is not None and entry.next.due_at <= handled
            if entry.timing.one_off or resumed:
                if behind and entry.timing.one_off:
                    assert entry.next is not None
                    entry.last, entry.next = entry.next.slot, None
                elif behind:
                    self._skip_to(entry, handled)
                else:
                    continue
            else:
                self._skip_to(entry, handled)
            self._renew(entry)
            self._push(entry)

    def _collect(
        self, now: datetime
    ) -> tuple[list[tuple[Entry, datetime]], list[_Unsent], list[_Unsent]]:
        """Pop every due slot: (to send, to record as missed, of broken schedules), in due order."""
        batch: list[tuple[Entry, datetime]] = []
        missed: list[_Unsent] = []
        broken: list[_Unsent] = []
        now_ts = now.timestamp()
        while self._due and self._due[0][0] <= now_ts:
            self._keep_lead()
            _, task_id, version = heapq.heappop(self._due)
            entry = self._entries.get(task_id)
            if entry is None or entry.version != version or entry.next is None:
                continue
            owed = 0
            while entry.next is not None and entry.next.due_at <= now:
                slot = entry.next.slot
                deadline = entry.deadline(slot)
                expires = entry.timing.expires
                if expires is not None and now >= expires:
                    reason = f"the schedule expired at {_local(expires)} before it was sent"
                    missed.append(_Unsent(entry, slot, deadline, reason))
                elif deadline is not None and now >= deadline:
                    # At its deadline the next slot is due: sending this one is already late.
                    reason = (
                        f"not sent before its deadline {_local(deadline)}: no beat was sending "
                        f"(beat down or no leader) from {_local(slot)} until {_local(now)}"
                    )
                    missed.append(_Unsent(entry, slot, deadline, reason))
                elif entry.broken:
                    broken.append(_Unsent(entry, slot, deadline, entry.broken))
                else:
                    batch.append((entry, slot))
                owed += 1
                entry.last = slot
                entry.next = None if entry.timing.one_off else entry.timing.after(slot)
                if owed > 100_000:  # a one-second interval down for days: give up counting
                    entry.next = entry.timing.after(latest(entry.timing.schedule, now, slot))
                    break
            if owed:
                self._written[entry.id] = entry
                if entry.timing.one_off or entry.next is None:
                    self._disable.add(entry.id)
            self._renew(entry)
            self._push(entry)
        return batch, missed, broken

    def _retry_unsent(
        self, now: datetime, batch: list[tuple[Entry, datetime]], missed: list[_Unsent]
    ) -> None:
        """Send again what the broker refused, until each slot's deadline."""
        keep, mono = [], time.monotonic()
        for unsent in self._unsent:
            if unsent.deadline is not None and now >= unsent.deadline:
                unsent.error = (
                    f"the broker refused it until its deadline {_local(unsent.deadline)} "
                    f"({unsent.tries} tries; last error: {unsent.error})"
                )
                missed.append(unsent)
            elif mono >= unsent.retry_at:
                batch.append((unsent.entry, unsent.slot))
                unsent.tries += 1
                keep.append(unsent)  # removed again once sent
            else:
                keep.append(unsent)
        self._unsent = keep

    # --- Sending -----------------------------------------------------------------------------

    def _publish(self, batch: list[tuple[Entry, datetime]], now: datetime) -> None:
        """Publish the batch over one producer, pipelined where the transport can."""
        assert self.leadership is not None
        sent: set[tuple[int, datetime]] = set()
        error: Exception | None = None
        try:
            with self.app.producer_or_acquire() as producer:
                channel = producer.channel
                batched = getattr(channel, "create_publish_batch", None) is not None and getattr(
                    channel, "supports_batch_publish", True
                )
                for chunk in chunks(batch, PUBLISH_BATCH if batched else UNBATCHED_CHUNK):
                    # A burst of 100,000 outlasts the lease: renew it as it goes.
                    if not self.leadership.hold():
                        raise RuntimeError("the leader lease ran out while sending")
                    with producer.batch(max_size=PUBLISH_BATCH):
                        for entry, slot in chunk:
                            self._send(entry, slot, producer)
                    for entry, slot in chunk:
                        sent.add((entry.id, slot))
                        self._sends[entry.id] += 1
                        self._written[entry.id] = entry
        except Exception as exc:  # broker down, or a message that cannot be built
            error = exc
        tries = {(u.entry.id, u.slot): u for u in self._unsent}
        if error is None and not tries:
            return
        mono = time.monotonic()
        # Slots waiting for their next try were not in this batch: they wait on.
        in_batch = {(entry.id, slot) for entry, slot in batch}
        self._unsent = [u for u in self._unsent if (u.entry.id, u.slot) not in in_batch]
        for entry, slot in batch:
            if (entry.id, slot) in sent:
                continue
            unsent = tries.get((entry.id, slot)) or _Unsent(entry, slot, entry.deadline(slot), "")
            unsent.error = f"{type(error).__name__}: {error}" if error else unsent.error
            wait = get_exponential_backoff_interval(1, unsent.tries, 30, full_jitter=False)
            unsent.retry_at = mono + wait
            self._unsent.append(unsent)
        if error is not None:
            self._warn(
                "publish",
                "beat could not send %d due jobs (%s: %s); retrying until their deadlines",
                len(self._unsent), type(error).__name__, error,
            )  # fmt: skip

    def _send(self, entry: Entry, slot: datetime, producer: Any) -> None:
        headers, options = entries.message_options(entry)
        headers[SLOT_HEADER] = slot.isoformat()
        next_slot = entry.timing.next_slot(slot)
        if next_slot is not None:
            headers[NEXT_SLOT_HEADER] = next_slot.isoformat()
        if sentry_sdk.get_client().is_active():
            opened = self._checkin(entry, slot, options, MonitorStatus.IN_PROGRESS)
            if opened is not None:
                check_in_id, config = opened
                headers.update(
                    {
                        "sentry-monitor-slug": entry.name,
                        "sentry-monitor-config": config,
                        "sentry-monitor-check-in-id": check_in_id,
                    }
                )
        logger.info("Sending due task %s (%s) for %s", entry.name, entry.task, _local(slot))
        task = self.app.tasks.get(entry.task)
        if task is not None:
            task.apply_async(
                entry.args, entry.kwargs, producer=producer, headers=headers, **options
            )
        else:
            self.app.send_task(
                entry.task, entry.args, entry.kwargs, producer=producer, headers=headers, **options
            )

    def _checkin(
        self, entry: Entry, slot: datetime, options: dict[str, Any], status: str
    ) -> tuple[str | None, dict[str, Any]] | None:
        """Send the slot's Sentry Crons check-in: (its id, the monitor config); None when Crons
        has no monitor for this schedule. `in_progress` is closed by the worker (see
        scheduler.reporting); a broken schedule's slot is closed as `error` at once."""
        limit = options.get("time_limit") or hard_time_limit(entry.task)
        config = reporting.monitor_config(entry.timing.schedule, limit, slot)
        if not config:
            return None
        check_in_id = capture_checkin(
            monitor_slug=entry.name,
            monitor_config=config,  # type: ignore[arg-type]
            status=status,
        )
        return check_in_id, config

    # --- Recording ---------------------------------------------------------------------------

    def _record_missed(self, missed: list[_Unsent], now: datetime) -> None:
        """One `missed` row per slot not sent, unless a worker already has that occurrence."""
        per_schedule: dict[int, int] = defaultdict(int)
        recorded: list[tuple[_Unsent, str]] = []
        for unsent in missed:
            per_schedule[unsent.entry.id] += 1
            if per_schedule[unsent.entry.id] <= MAX_MISSED_PER_SCHEDULE:
                recorded.append((unsent, f"missed-{uuid.uuid4()}"))
        taken: set[str] = set()  # occurrences another message has: sent after all
        for chunk in chunks(recorded, WRITE_BATCH):
            self._keep_lead()
            # Redis down: recorded as missed all the same (a late delivery of it would run).
            with contextlib.suppress(redis.RedisError):
                claims = [(unsent.entry.name, unsent.slot, task_id) for unsent, task_id in chunk]
                new = recording.claim_occurrences(claims)
                taken.update(c[2] for c, fresh in zip(claims, new, strict=True) if not fresh)
        for unsent, task_id in recorded:
            if task_id in taken:
                continue  # sent after all (by an earlier leader): the worker records it
            self._rows.append(
                _unsent_row(unsent, task_id, now, JobRun.Status.MISSED, error_message=unsent.error)
            )
        for entry_id, count in per_schedule.items():
            if count > MAX_MISSED_PER_SCHEDULE:
                logger.warning(
                    "schedule %s missed %d slots; the first %d are recorded",
                    self._entries[entry_id].name if entry_id in self._entries else entry_id,
                    count, MAX_MISSED_PER_SCHEDULE,
                )  # fmt: skip
        logger.warning("beat recorded %d slots as missed", len(missed))

    def _record_broken(self, broken: list[_Unsent], now: datetime) -> None:
        """A `failed` row per slot of a broken schedule, with the reason; its Crons check-in
        closed as error at once. Sentry hears once per schedule, when the row is written."""
        checkins = sentry_sdk.get_client().is_active()
        for unsent in broken:
            entry = unsent.entry
            run = _unsent_row(
                unsent,
                f"broken-{uuid.uuid4()}",
                now,
                JobRun.Status.FAILED,
                error_type=BROKEN,
                error_message=entry.broken,
            )
            self._rows.append(run)
            if not entry.reported:
                entry.reported = True
                self._to_report.append((run, entry))
            if checkins:
                _, options = entries.message_options(entry)
                self._checkin(entry, unsent.slot, options, MonitorStatus.ERROR)
        # A warning, not an error: sentry-sdk turns error logs into events, and this one's event
        # is sent once per schedule (_report_broken).
        logger.warning("beat recorded %d slots of broken schedules as failed", len(broken))

    def _report_broken(self) -> None:
        """One Sentry event per broken schedule, unless one was sent since its last edit (by
        this beat before a restart, or by the beat that led before it)."""
        pending, self._to_report = self._to_report, []
        for done, (run, entry) in enumerate(pending):
            if run.pk is None:  # not written yet
                self._to_report.append((run, entry))
                continue
            earlier = (
                JobRun.objects.filter(
                    schedule=run.schedule, error_type=BROKEN, error_message=run.error_message
                )
                .exclude(pk=run.pk)
                .exclude(sentry_event_id="")
            )
            if entry.timing.changed_at is not None:
                earlier = earlier.filter(started_at__gte=entry.timing.changed_at)
            try:
                if earlier.exists():
                    continue
            except DatabaseError:
                self._to_report.extend(pending[done:])
                raise
            message = f"Schedule {run.schedule} is broken: {run.error_message}"
            event_id = reporting.report_run(run, BROKEN, None, message)
            if event_id:
                # The event is sent: a lost update only risks a second one after a restart.
                with contextlib.suppress(DatabaseError):
                    JobRun.objects.filter(pk=run.pk).update(sentry_event_id=event_id)

    def _write_back(self) -> None:
        """Write what this beat did: last_run_at, total_run_count, missed and broken slots'
        rows (and the Sentry event of a broken schedule), one-offs done."""
        if self._rows:
            rows, self._rows = self._rows, []
            inserted = 0
            try:
                for chunk in chunks(rows, WRITE_BATCH):
                    self._keep_lead()
                    JobRun.objects.bulk_create(chunk)
                    inserted += len(chunk)
            except DatabaseError:
                self._rows = rows[inserted:] + self._rows
                raise
        if self._to_report:
            self._report_broken()
        if self._written:
            written, self._written = self._written, {}
            sends, self._sends = self._sends, defaultdict(int)
            try:
                # Most entries of a tick share their slot and count: one statement each.
                groups: dict[tuple[datetime, int], list[int]] = defaultdict(list)
                for entry in written.values():
                    if entry.last is not None:
                        groups[(entry.last, sends.get(entry.id, 0))].append(entry.id)
                for (slot, sent), ids in groups.items():
                    for batch in chunks(ids, WRITE_BATCH):
                        self._keep_lead()
                        PeriodicTask.objects.filter(pk__in=batch).update(
                            last_run_at=slot, total_run_count=F("total_run_count") + sent
                        )
            except DatabaseError:
                self._written.update(written)
                for task_id, sent in sends.items():
                    self._sends[task_id] += sent
                raise
        if self._disable:
            done, self._disable = self._disable, set()
            try:
                for batch in chunks(sorted(done), WRITE_BATCH):
                    PeriodicTask.objects.filter(pk__in=batch).update(enabled=False)
            except DatabaseError:
                self._disable |= done
                raise

    def _keep_lead(self) -> None:
        """Renew the lease, if this beat leads and it is time to, inside a long tick (whether
        this beat still leads is read at the next publish and the next tick). Cheap when it is
        not time: a clock reading."""
        assert self.leadership is not None
        if self.leadership.token:
            self.leadership.hold()

    def _record_handled(self, now: datetime) -> None:
        assert self.leadership is not None
        watermark = now
        if self._unsent:
            watermark = min(now, min(u.slot for u in self._unsent) - timedelta(microseconds=1))
        self.leadership.record_handled(watermark)

    def _sleep_for(self) -> float:
        wait = self.poll_every
        if self._due:
            wait = min(wait, max(0.0, self._due[0][0] - time.time()))
        return wait

    # --- Plumbing ----------------------------------------------------------------------------

    def _guard(self, what: str, step: Any) -> None:
        """Run a bookkeeping step; a database outage is logged (once in a while) and retried."""
        try:
            step()
        except DatabaseError as exc:
            close_old_connections()
            self._warn(what, "beat %s: the database does not answer (%s); will retry", what, exc)

    def _warn(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, 0.0) >= 10:
            self._warned[key] = now
            logger.warning(message, *args)

    def should_sync(self) -> bool:
        return False  # written back at every tick

    def sync(self) -> None:
        try:
            self._write_back()
        except DatabaseError:
            logger.exception("beat could not write back its last dispatches")

    def close(self) -> None:
        self.sync()
        if self.leadership is not None:
            self.leadership.release()
            self.leadership.forget()

    def reserve(self, entry: Any) -> Any:
        return entry

    @property
    def info(self) -> str:
        return "    . engine -> Nightshift (scheduler.engine): leader lease, live edits"


def _local(moment: datetime) -> str:
    """A time as logs and run rows show it: in the project's time zone (Asia/Shanghai)."""
    return timezone.localtime(moment).isoformat(timespec="seconds")


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)
