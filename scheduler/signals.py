"""Signal handlers every Nightshift process installs (connected in SchedulerConfig.ready)."""

from __future__ import annotations

from typing import Any

from celery.signals import (
    before_task_publish,
    task_postrun,
    task_revoked,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from django.conf import settings
from django.db import close_old_connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import Model, ProtectedError
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from scheduler import presence, recording, selectors
from scheduler.describe import timing_in_words
from scheduler.recording import ENQUEUED_HEADER


@before_task_publish.connect(dispatch_uid="nightshift-enqueued-at")
def stamp_enqueued_at(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Every published job carries the time it was enqueued (retries get their own)."""
    if headers is not None:
        headers[ENQUEUED_HEADER] = timezone.now().isoformat()


_in_worker_process = False


@worker_process_init.connect(dispatch_uid="nightshift-worker-process")
def mark_worker_process(**kwargs: Any) -> None:
    global _in_worker_process
    _in_worker_process = True


@worker_process_shutdown.connect(dispatch_uid="nightshift-flush-run-rows")
def flush_run_rows(**kwargs: Any) -> None:
    """A worker process that exits first writes the rows of the runs it finished."""
    recording.flush()


@receiver(connection_created, dispatch_uid="nightshift-worker-synchronous-commit")
def relax_worker_commits(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """In worker processes, let PostgreSQL commit without waiting for its WAL flush.

    Every run writes its history row; on PostgreSQL the wait for the disk is most of that
    cost. A crash of the database server can then lose the last fraction of a second of a
    worker's commits (run history, job bookkeeping: all of it idempotent and re-run by the
    next occurrence), never corrupt them. The admin (web) keeps full durability.
    WORKER_SYNCHRONOUS_COMMIT=on turns this off.
    """
    if (
        _in_worker_process
        and connection.vendor == "postgresql"
        and settings.WORKER_SYNCHRONOUS_COMMIT != "on"
    ):
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO %s", [settings.WORKER_SYNCHRONOUS_COMMIT])


@task_postrun.connect(dispatch_uid="nightshift-close-old-connections")
def close_unusable_connections(sender: Any = None, **kwargs: Any) -> None:
    """Between jobs, drop a broken or aged database connection, as Django does per request."""
    if sender is not None and not getattr(sender.request, "is_eager", False):
        close_old_connections()


@task_revoked.connect(dispatch_uid="nightshift-run-terminated")
def release_terminated_run(request: Any = None, terminated: bool = False, **kwargs: Any) -> None:
    """The worker's main process killed a run (the admin cancelled it): its dead process
    cannot give back its leases, so this does (scheduler.recording.cancel)."""
    if terminated and request is not None:
        recording.terminated(request)


@worker_ready.connect(dispatch_uid="nightshift-worker-presence")
def announce_worker(sender: Any = None, **kwargs: Any) -> None:
    """The worker's main process tells the health page it is online, until it stops."""
    queues = sender.app.amqp.queues.consume_from  # -Q's queues, else all it knows
    presence.start_worker_presence(sender.hostname, [str(name) for name in queues])


@worker_shutdown.connect(dispatch_uid="nightshift-worker-gone")
def withdraw_worker(sender: Any = None, **kwargs: Any) -> None:
    hostname = getattr(sender, "hostname", None)
    if hostname:
        presence.forget_worker(hostname)


def refuse_deleting_a_timing_in_use(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    """A crontab, interval, solar or clocked row that schedules fire by is not deleted.

    django-celery-beat's foreign keys cascade: deleting one row would delete every schedule
    using it, with no history. Raised inside the deletion's transaction, so nothing is deleted.
    """
    names = selectors.schedules_using([instance])
    if names:
        raise ProtectedError(
            f"Cannot delete the {sender._meta.verbose_name} {timing_in_words(instance)!r}: "
            f"{len(names)} schedule(s) use it ({', '.join(names)}). "
            "Give them another timing in the schedule form, or delete them, first.",
            set(PeriodicTask.objects.filter(name__in=names)),
        )


for _timing in selectors.TIMING_FIELDS:
    pre_delete.connect(
        refuse_deleting_a_timing_in_use,
        sender=_timing,
        dispatch_uid=f"nightshift-protect-{_timing._meta.model_name}",
    )
