"""Housekeeping: expired sessions, old run history and reports, expired one-off schedules.

Deletes go in primary-key batches of HOUSEKEEPING_BATCH_SIZE, each its own short transaction,
so no clean-up locks a whole table or builds one huge transaction; a run interrupted half-way
has lost nothing it should keep, and the next run carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from jobs.models import Report
from scheduler import services
from scheduler.batching import pk_batches
from scheduler.models import JobRun

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HousekeepingResult:
    sessions: int | None  # None: the session backend cleared them without saying how many
    runs: int
    reports: int
    schedules_disabled: int
    runs_before: datetime
    reports_before: date
    disabled: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly: counts, the cut-offs as ISO strings and the disabled schedules' names."""
        return {
            "sessions": self.sessions,
            "runs": self.runs,
            "reports": self.reports,
            "schedules_disabled": self.schedules_disabled,
            "runs_before": self.runs_before.isoformat(),
            "reports_before": self.reports_before.isoformat(),
            "disabled": list(self.disabled),
        }


def housekeeping(now: datetime | None = None) -> HousekeepingResult:
    """Prune expired sessions, old runs and reports; disable one-off and expired schedules."""
    history_days = _positive_setting("JOB_HISTORY_DAYS")
    report_days = _positive_setting("REPORT_RETENTION_DAYS")
    batch_size = _positive_setting("HOUSEKEEPING_BATCH_SIZE")
    now = now or timezone.now()
    if timezone.is_naive(now):
        raise ValueError(f"housekeeping needs an aware datetime, not {now!r}")

    sessions = _clear_expired_sessions(now, batch_size)
    runs_before = now - timedelta(days=history_days)
    # A `running` row is never history; if its worker died, mark_lost_runs closes it first.
    runs = delete_in_batches(
        JobRun.objects.filter(started_at__lt=runs_before).exclude(status=JobRun.Status.RUNNING),
        batch_size,
    )
    # Reports are per calendar day in TIME_ZONE (Asia/Shanghai), not in UTC.
    reports_before = timezone.localdate(now, timezone.get_default_timezone()) - timedelta(
        days=report_days
    )
    reports = delete_in_batches(Report.objects.filter(day__lt=reports_before), batch_size)
    disabled = disable_finished_schedules(now)

    result = HousekeepingResult(
        sessions=sessions,
        runs=runs,
        reports=reports,
        schedules_disabled=len(disabled),
        runs_before=runs_before,
        reports_before=reports_before,
        disabled=tuple(disabled),
    )
    logger.info(
        "housekeeping: %s expired sessions, %d runs started before %s, %d reports before %s "
        "deleted; %d schedules disabled",
        "?" if sessions is None else sessions,
        runs,
        runs_before.isoformat(),
        reports,
        reports_before.isoformat(),
        len(disabled),
    )
    return result


def delete_in_batches(queryset: models.QuerySet[Any], batch_size: int) -> int:
    """Delete the queryset's rows, at most batch_size per transaction, by ascending primary key."""
    deleted = 0
    label = queryset.model._meta.label
    for ids in pk_batches(queryset, batch_size):
        with transaction.atomic():
            # The filter is applied again: a row that changed since the SELECT is kept.
            _, per_model = queryset.filter(pk__in=ids).delete()
        deleted += per_model.get(label, 0)
    return deleted


def disable_finished_schedules(now: datetime) -> list[str]:
    """Disable schedules that will never fire again; return their names.

    That is: one-off (and clocked) schedules that already ran, and schedules past `expires`.
    A clocked schedule whose time passed but that has not run yet stays enabled: beat still
    dispatches it (late) as soon as it sees it. Beat itself disables these at its next check
    of each entry; this catches the ones it never checks (beat stopped, entry never loaded).
    """
    ran = Q(total_run_count__gt=0) | Q(last_run_at__isnull=False)
    finished_one_off = Q(one_off=True) | Q(clocked__clocked_time__lte=now)
    expired = Q(expires__lte=now)
    enabled = PeriodicTask.objects.filter(enabled=True)
    disabled: list[str] = []
    with transaction.atomic():
        # As beat does it: a one-off schedule's run count is reset, so enabling it again
        # runs it once more.
        one_offs = services.disable(enabled.filter(finished_one_off & ran), now, reset_count=True)
        disabled += sorted(one_offs.values())
        disabled += sorted(services.disable(enabled.filter(expired), now).values())
    for name in disabled:
        logger.info("disabled schedule %s: it will not fire again", name)
    return disabled


def _clear_expired_sessions(now: datetime, batch_size: int) -> int | None:
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DbSessionStore):  # db and cached_db: batches, counted
        model = store.get_model_class()
        return delete_in_batches(model.objects.filter(expire_date__lt=now), batch_size)
    store.clear_expired()  # file and cache backends; signed cookies have nothing to clear
    return None


def _positive_setting(name: str) -> int:
    value: object = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(
            f"{name} must be a whole number of at least 1, not {value!r}; nothing was deleted"
        )
    return value
