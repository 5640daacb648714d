"""The schedule change log: every write path shows up, beat's own write-back does not."""

from __future__ import annotations

from django.core.management import call_command
from django.db import connection
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from scheduler.engine.changes import Feed, ensure, missing
from scheduler.models import SchedulePolicy


def test_every_write_path_is_seen_once(db: None) -> None:
    feed = Feed()
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    daily = CrontabSchedule.objects.create(minute="0", hour="8", timezone="Asia/Shanghai")

    saved = PeriodicTask.objects.create(name="saved", task="tests.noop", interval=every_5s)
    assert feed.poll().task_ids == {saved.pk}
    assert feed.poll().task_ids == set()  # read once

    bulk = PeriodicTask.objects.bulk_create(
        [PeriodicTask(name=f"bulk-{i}", task="tests.noop", crontab=daily) for i in range(3)]
    )
    bulk_ids = set(
        PeriodicTask.objects.filter(name__startswith="bulk-").values_list("pk", flat=True)
    )
    assert len(bulk) == 3 and feed.poll().task_ids == bulk_ids

    PeriodicTask.objects.filter(name="saved").update(enabled=False)  # tells no one
    assert feed.poll().task_ids == {saved.pk}

    with connection.cursor() as cursor:  # behind the ORM's back entirely
        table = PeriodicTask._meta.db_table
        cursor.execute(f"UPDATE {table} SET kwargs = %s WHERE id = %s", ['{"n": 1}', saved.pk])  # noqa: S608
    assert feed.poll().task_ids == {saved.pk}

    # One crontab row shared by three schedules: editing it changes all three.
    CrontabSchedule.objects.filter(pk=daily.pk).update(hour="7")
    assert feed.poll().task_ids == bulk_ids

    SchedulePolicy.objects.create(periodic_task=saved, start_deadline=30)
    assert feed.poll().task_ids == {saved.pk}

    doomed = PeriodicTask.objects.get(name="bulk-0")
    doomed_id = doomed.pk
    doomed.delete()
    assert feed.poll().task_ids == {doomed_id}


def test_beats_write_back_is_not_an_edit(db: None) -> None:
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="ticking", task="tests.noop", interval=every_5s)
    feed = Feed()
    PeriodicTask.objects.filter(pk=task.pk).update(
        last_run_at=timezone.now(), total_run_count=F("total_run_count") + 1
    )
    assert feed.poll().task_ids == set()


def test_triggers_survive_a_migrate(db: None) -> None:
    """A SQLite table rebuild drops triggers: every migrate puts them back."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS nightshift_task_upd{_on_table()}")
    call_command("migrate", verbosity=0)
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="after-migrate", task="tests.noop", interval=every_5s)
    feed = Feed()
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
    assert feed.poll().task_ids == {task.pk}


def _on_table() -> str:
    return f" ON {PeriodicTask._meta.db_table}" if connection.vendor == "postgresql" else ""


def test_beat_puts_missing_triggers_back_at_start(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS nightshift_task_del{_on_table()}")
    assert missing() == ["nightshift_task_del"]
    ensure()  # what beat does when it starts
    assert missing() == []
    every_5s = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="doomed", task="tests.noop", interval=every_5s)
    feed = Feed()
    pk = task.pk
    task.delete()
    assert feed.poll().task_ids == {pk}
