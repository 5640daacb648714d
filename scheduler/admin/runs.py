"""The run pages of the admin: JobRun, written by jobs, read by people (never added or edited)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import SEARCH_VAR
from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal

from scheduler.admin.controls import RunControls
from scheduler.models import JobRun
from scheduler.presentation import human_duration
from scheduler.reporting import sentry_event_url
from scheduler.selectors import job_names, run_search, schedule_names_containing

# A search counts its matches up to this many.
SEARCH_COUNT_LIMIT = 10_000


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


class _SearchPaginator(Paginator[JobRun]):
    """Counts at most SEARCH_COUNT_LIMIT matches of a search (the list then says "more than"):
    a term found in every run would otherwise be counted through the whole history.

    On PostgreSQL, a page of a search with more matches than that is read newest first along
    an index, stopping at the page: the planner cannot tell that the words of one error
    message come together, takes the match for rare, and would collect and sort every match
    (360 ms for 200,000 of 1,000,000 runs) to show 50. The count tells; the page is then read
    with full sorts off (10 ms).
    """

    @cached_property
    def count(self) -> int:
        runs: Any = self.object_list  # the changelist's queryset
        return int(runs.order_by()[: SEARCH_COUNT_LIMIT + 1].count())

    def page(self, number: Any) -> Page[JobRun]:
        page = super().page(number)
        if connection.vendor == "postgresql" and self.count > SEARCH_COUNT_LIMIT:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_sort = off")
                page.object_list = list(page.object_list)
        return page


class RunJobFilter(admin.SimpleListFilter):
    """Jobs the workers know, without a DISTINCT over the whole run history."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in job_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(job=self.value()) if self.value() else queryset


class RunScheduleFilter(admin.SimpleListFilter):
    """Schedules by name, searched rather than listed (a site has thousands).

    The sidebar holds a text box: the runs of every schedule whose name contains the text, and
    up to SHOWN of those names as links to one schedule's runs. `?schedule=NAME` keeps its
    meaning (the runs of exactly that schedule; those of a deleted one too).
    """

    title = "schedule"
    parameter_name = "schedule"
    text_parameter = "schedule_name"
    template = "admin/scheduler/jobrun/schedule_filter.html"
    SHOWN = 10

    def __init__(
        self, request: HttpRequest, params: dict[str, Any], model: Any, model_admin: Any
    ) -> None:
        text = params.pop(self.text_parameter, None)
        self.text = (text[-1] if isinstance(text, list) else text or "").strip()
        self.names: list[str] = []
        self.hidden_fields: list[tuple[str, str]] = []
        super().__init__(request, params, model, model_admin)
        if self.text:
            self.used_parameters[self.text_parameter] = self.text

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if not self.text:  # the chosen schedule, if any (found by its link or a bookmark)
            chosen = self.value()
            return [(chosen, chosen)] if chosen else []
        self.names = schedule_names_containing(self.text)
        return [(name, name) for name in self.names[: self.SHOWN]]

    def has_output(self) -> bool:
        return True  # the text box, even before anything is typed

    @property
    def more(self) -> int:
        """Matching names not shown as links."""
        return max(0, len(self.names) - self.SHOWN)

    def expected_parameters(self) -> list[str | None]:
        return [self.parameter_name, self.text_parameter]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(schedule=self.value())
        if self.text:
            return queryset.filter(schedule__in=self.names)
        return queryset

    def choices(self, changelist: Any) -> Iterator[Any]:
        # The list's other parameters, kept when the text box is submitted.
        ours = {self.parameter_name, self.text_parameter, "p"}
        self.hidden_fields = [
            (key, value)
            for key, values in changelist.params.items()
            for value in (values if isinstance(values, list) else [values])
            if key not in ours
        ]
        yield from super().choices(changelist)


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
    search_fields = ["task_id", "job", "schedule", "error_type", "error_message"]  # run_search
    search_help_text = (
        "A task id, part of a job's or a schedule's name, or part of an error type or message."
    )
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

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[JobRun], search_term: str
    ) -> tuple[QuerySet[JobRun], bool]:
        # As Django's search: each word (or "quoted phrase") must match.
        words = [
            unescape_string_literal(bit) if bit[0] in "\"'" and bit[0] == bit[-1] else bit
            for bit in smart_split(search_term)
        ]
        return (queryset.filter(run_search(words)) if words else queryset), False

    def get_paginator(
        self, request: HttpRequest, queryset: Any, per_page: int, *args: Any, **kwargs: Any
    ) -> Paginator[JobRun]:
        if request.GET.get(SEARCH_VAR, "").strip():
            return _SearchPaginator(queryset, per_page, *args, **kwargs)
        return super().get_paginator(request, queryset, per_page, *args, **kwargs)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist: Any = super().get_changelist_instance(request)
        changelist.search_count_limit = SEARCH_COUNT_LIMIT
        if changelist.query:
            # The date links span the matching runs: two more passes over them. A search keeps
            # its date filter; only the links are left out.
            changelist.date_hierarchy = None
        return changelist

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
