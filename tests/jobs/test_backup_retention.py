"""Which backups are kept (the newest of each Shanghai day, week and month) and how the rest go."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs.backups import (
    RetentionItem,
    apply_retention,
    backups_to_keep,
)
from jobs.models import Backup
from tests.factories import create_backup
from tests.jobs.databases import ENGINE, EXTENSION

# pg_dump and the SQLite backup read from their own connections: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


# --- Retention ------------------------------------------------------------------------------


def test_retention_keeps_the_newest_of_each_shanghai_day_week_and_month() -> None:
    items = [
        RetentionItem(1, shanghai("2024-01-15 03:00"), True),
        RetentionItem(2, shanghai("2024-02-10 03:00"), True),
        RetentionItem(3, shanghai("2024-02-28 03:00"), True),
        RetentionItem(4, shanghai("2024-03-20 03:00"), True),
        RetentionItem(5, shanghai("2024-03-31 23:30"), True),  # Sunday: ISO week 13, March
        RetentionItem(6, shanghai("2024-04-01 00:30"), True),  # in UTC still March 31
        RetentionItem(7, shanghai("2024-04-01 02:30"), True),
        RetentionItem(8, shanghai("2024-04-02 02:30"), False),  # failed, older than 9
        RetentionItem(9, shanghai("2024-04-03 02:30"), True),
        RetentionItem(10, shanghai("2024-04-04 02:30"), False),  # failed, newest: kept
    ]

    kept = backups_to_keep(items, daily=3, weekly=2, monthly=3)

    # Days Apr 3, Apr 1, Mar 31; weeks 14 and 13; months April, March, February.
    assert kept == {9, 7, 5, 3, 10}


def test_retention_of_eighteen_months_of_nightly_backups_with_the_default_policy() -> None:
    first = shanghai("2023-01-01 02:30")
    items = [RetentionItem(n, first + timedelta(days=n), True) for n in range(532)]
    assert items[-1].created_at == shanghai("2024-06-15 02:30")  # a Saturday

    kept = backups_to_keep(items, daily=7, weekly=4, monthly=12)

    days = {f"{item.created_at:%Y-%m-%d}" for item in items if item.id in kept}
    assert days == {
        # the last 7 days
        *(f"2024-06-{d:02d}" for d in range(9, 16)),
        # the newest of ISO weeks 24 (Jun 15), 23 (Jun 9), 22 (Jun 2) and 21 (May 26)
        "2024-06-02",
        "2024-05-26",
        # the newest of the last 12 months, June 2024 back to July 2023
        *("2024-05-31", "2024-04-30", "2024-03-31", "2024-02-29", "2024-01-31"),
        *("2023-12-31", "2023-11-30", "2023-10-31", "2023-09-30", "2023-08-31", "2023-07-31"),
    }
    assert len(kept) == 20


def test_retention_removes_nothing_until_a_backup_is_verified() -> None:
    items = [
        RetentionItem(n, shanghai("2024-01-01 02:30") + timedelta(days=n), False) for n in range(40)
    ]
    assert backups_to_keep(items, daily=1, weekly=0, monthly=0) == set(range(40))
    assert backups_to_keep(
        [*items, RetentionItem(99, shanghai("2023-01-01"), True)], daily=0, weekly=0, monthly=0
    ) == {99, *range(40)}


def test_apply_retention_deletes_files_then_rows_and_keeps_exactly_the_promised_set(
    backup_dir: Path, settings: Any
) -> None:
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 2, 1, 2
    settings.HOUSEKEEPING_BATCH_SIZE = 2  # several delete batches
    backup_dir.mkdir(mode=0o700)
    plan = [  # (name, Shanghai time, verified, file present)
        ("jan", "2024-01-31 02:30", True, True),
        ("feb-a", "2024-02-01 02:30", True, True),
        ("feb-b", "2024-02-20 02:30", True, False),  # its file already gone: no error
        ("feb-c", "2024-02-28 02:30", True, True),
        ("mar-1", "2024-03-01 02:30", False, True),
        ("mar-2a", "2024-03-02 01:00", True, True),
        ("mar-2b", "2024-03-02 02:30", True, True),
        ("mar-3", "2024-03-03 02:30", True, True),
        ("mar-4", "2024-03-04 02:30", False, True),
    ]
    rows = {}
    for name, at, verified, present in plan:
        path = backup_dir / f"{name}{EXTENSION}"
        if present:
            path.write_bytes(name.encode())
        rows[name] = create_backup(shanghai(at), str(path), ENGINE, verified, size_bytes=len(name))

    removed = apply_retention()

    # Days Mar 3 and Mar 2 (newest: mar-2b); ISO week 9 (mar-3); months March and February.
    kept = {"mar-3", "mar-2b", "feb-c", "mar-4"}
    assert {Path(r.path).stem.split(".")[0] for r in removed} == set(rows) - kept
    assert set(Backup.objects.values_list("pk", flat=True)) == {rows[n].pk for n in kept}
    assert sorted(os.listdir(backup_dir)) == sorted(f"{n}{EXTENSION}" for n in kept)

    assert apply_retention() == []  # idempotent


def test_a_verified_backup_whose_file_is_gone_does_not_let_older_ones_go(
    backup_dir: Path, settings: Any
) -> None:
    settings.BACKUP_KEEP_DAILY, settings.BACKUP_KEEP_WEEKLY, settings.BACKUP_KEEP_MONTHLY = 1, 0, 0
    backup_dir.mkdir(mode=0o700)
    (backup_dir / "old.dump").write_bytes(b"the only restorable backup")
    for name, day in (("old.dump", 1), ("gone.dump", 2)):
        create_backup(shanghai(f"2024-05-0{day} 02:30"), str(backup_dir / name), ENGINE)

    assert apply_retention() == []
    assert (backup_dir / "old.dump").is_file() and Backup.objects.count() == 2
