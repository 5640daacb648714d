"""The run pages of the admin: JobRun, written by jobs, read by people (never added or edited)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django.contrib import admin
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.html import format_html

from scheduler.admin.controls import RunControls
from scheduler.models import JobRun
from scheduler.presentation import human_duration
from scheduler.reporting import sentry_event_url
from scheduler.selectors import job_names, schedule_names


class WrittenByJobs:
    """Admin mix-in for rows that jobs write: they can be viewed, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class _RunQuerySet(QuerySet[JobRun]):
    """The run list's queryset: its date hierarchy reads two index ends, not every row.

    Django's date hierarchy asks for `datetimes()`: a DISTINCT over the truncated time of every
    matching run, a full scan of a million-row history on each page view. Here the links span
    the first to the last matching run instead (a period with no run in between shows an
    empty list when clicked).
    """

    def datetimes(  # type: ignore[override]  # the admin only iterates the result
        self, field_name: str, kind: str, order: str = "ASC", **kwargs: Any
    ) -> list[datetime]:
        span = self.aggregate(first=Min(field_name), last=Max(field_name))
        if span["first"] is None:
            return []
        first, last = (timezone.localtime(span[end]).date() for end in ("first", "last"))
        zone = timezone.get_current_timezone()
        return [
            datetime.combine(day, time(), tzinfo=zone)
            for day in _calendar_span(first, last, kind, descending=order == "DESC")
        ]


def _calendar_span(first: date, last: date, kind: str, descending: bool) -> list[date]:
    found: list[date] = []
    if kind == "year":
        found = [date(year, 1, 1) for year in range(first.year, last.year + 1)]
    elif kind == "month":
        month = date(first.year, first.month, 1)
        while month <= last:
            found.append(month)
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    else:
        found = [date.fromordinal(day) for day in range(first.toordinal(), last.toordinal() + 1)]
    return found[::-1] if descending else found


class RunJobFilter(admin.SimpleListFilter):
    """Jobs the workers know, without a DISTINCT over the whole run history."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in job_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(job=self.value()) if self.value() else queryset


class RunScheduleFilter(admin.SimpleListFilter):
    """Schedules by name (the runs of a deleted schedule stay searchable by name)."""

    title = "schedule"
    parameter_name = "schedule"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in schedule_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(schedule=self.value()) if self.value() else queryset


@admin.register(JobRun)
class JobRunAdmin(RunControls, WrittenByJobs, admin.ModelAdmin[JobRun]):
    list_display = [
        "id",
        "job",
        "schedule",
        "trigger",
        "status",
        "attempt",
        "started_at",
        "duration",
        "worker",
        "sentry",
    ]
    list_filter = ["status", "trigger", RunJobFilter, RunScheduleFilter, "started_at"]
    search_fields = ["=task_id", "job", "schedule", "error_type", "error_message"]
    date_hierarchy = "started_at"
    list_per_page = 50
    show_full_result_count = False
    fields = readonly_fields = (
        "job",
        "schedule",
        "trigger",
        "status",
        "controls",
        "attempt",
        "task_id",
        "slot",
        "enqueued_at",
        "started_at",
        "finished_at",
        "duration",
        "worker",
        "requested_by",
        "error_type",
        "error_message",
        "traceback",
        "sentry",
        "arguments",
        "result",
    )

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, run: JobRun) -> str:
        return human_duration(run.duration_seconds)

    @admin.display(description="Sentry")
    def sentry(self, run: JobRun) -> str:
        if not run.sentry_event_id:
            return "—"
        url = sentry_event_url(run.sentry_event_id)
        if not url:
            return run.sentry_event_id
        return format_html('<a href="{}" rel="noopener">{}</a>', url, run.sentry_event_id[:12])

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobRun]:
        queryset = super().get_queryset(request)
        return _RunQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)

    def has_delete_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [*self.control_urls(), *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: JobRun | None = None,
    ) -> HttpResponse:
        context.update(self.control_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)
