"""The schedule pages of the admin: django-celery-beat's PeriodicTask as Nightshift's Schedule.

The list shows each schedule in words, its next run and its last run (from JobRun, one indexed
subquery per column); the change page edits the schedule, its arguments and run policy with a
live preview of the next fire times. Enabling never makes a schedule fire at once, and every
bulk change tells beat. The pages only call: what they change is scheduler.services, what they
read scheduler.selectors, the form scheduler.admin.forms, the history lines scheduler.history.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms import Form
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_celery_beat.models import PeriodicTask

from scheduler import charts, history, selectors, services
from scheduler.admin.controls import RunWithArguments
from scheduler.admin.forms import ScheduleForm, TimingForm
from scheduler.broken import broken_reason
from scheduler.describe import schedule_in_words
from scheduler.models import JobRun, Schedule
from scheduler.policy import KNOBS, POLICY_FIELDS
from scheduler.presentation import human_duration, local_text
from scheduler.timing import Timing, interval_problem, next_fire_times, next_run

logger = logging.getLogger(__name__)

RECENT_RUNS = 20


# --- List filters ----------------------------------------------------------------------------


class ScheduleJobFilter(admin.SimpleListFilter):
    """The jobs some schedule runs (registered or not)."""

    title = "job"
    parameter_name = "job"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in selectors.scheduled_jobs()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(task=self.value()) if self.value() else queryset


class LastStatusFilter(admin.SimpleListFilter):
    title = "last run"
    parameter_name = "last_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*JobRun.Status.choices, ("never", "never ran")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "never":
            return queryset.filter(last_status__isnull=True)
        return queryset.filter(last_status=value) if value else queryset


def why_no_next_run(obj: Schedule) -> str:
    """Why an enabled schedule has no next run, in words (the list shows it, not a bare —)."""
    if obj.expires is not None and obj.expires <= timezone.now():
        return f"expired at {local_text(obj.expires)}"
    if obj.clocked_id and obj.clocked.clocked_time <= timezone.now():
        return f"its clocked time {local_text(obj.clocked.clocked_time)} has passed"
    if obj.one_off and obj.total_run_count:
        return "a one-off schedule that ran"
    if obj.interval_id and interval_problem(obj.interval.every, obj.interval.period):
        return f"beat does not run an interval of every {obj.interval.every} {obj.interval.period}"
    try:
        _ = obj.schedule
    except (OverflowError, ValueError) as exc:  # a timing row made by a script
        return f"beat cannot use its timing: {exc}"
    return "no fire time ahead"


# --- The admin -----------------------------------------------------------------------------------

admin.site.unregister(PeriodicTask)

SCHEDULE_FIELDS = [
    "kind",
    ("minute", "hour", "day_of_month", "month_of_year", "day_of_week"),
    "timezone",
    "interval",
    "solar",
    "clocked",
    "one_off",
    "start_time",
    "expires",
    "upcoming",
]
POLICY_DESCRIPTION = "Overrides for this schedule; an empty field keeps the job's default."
EDIT_FIELDSETS: list[tuple[str | None, dict[str, Any]]] = [
    (None, {"fields": ["name", "task", "job_description", "description", "enabled"]}),
    ("Schedule", {"fields": SCHEDULE_FIELDS}),
    ("Arguments", {"fields": ["args", "kwargs", "queue"]}),
    ("Run policy", {"fields": list(POLICY_FIELDS), "description": POLICY_DESCRIPTION}),
]
HISTORY_FIELDSET: tuple[str, dict[str, Any]] = (
    "Runs",
    {"fields": ["last_run_at", "total_run_count", "recent_runs"]},
)
VIEW_FIELDSETS: list[tuple[str | None, dict[str, Any]]] = [
    (None, {"fields": ["name", "task", "job_description", "description", "enabled"]}),
    ("Schedule", {"fields": ["in_words", "one_off", "start_time", "expires", "upcoming"]}),
    ("Arguments", {"fields": ["args", "kwargs", "queue"]}),
    ("Run policy", {"fields": ["run_policy"]}),
    HISTORY_FIELDSET,
]


@admin.register(Schedule)
class ScheduleAdmin(RunWithArguments, admin.ModelAdmin[Schedule]):
    form = ScheduleForm
    list_display = [
        "name",
        "strip",
        "job",
        "in_words",
        "enabled",
        "next_run",
        "last_status",
        "last_run",
        "last_duration",
        "last_success",
    ]
    list_filter = [ScheduleJobFilter, "enabled", LastStatusFilter]
    list_select_related = ["crontab", "interval", "solar", "clocked"]
    search_fields = ["name", "task", "description"]
    ordering = ["name"]
    list_per_page = 100
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER  # a count per filter choice: a subquery per schedule
    actions = ["run_selected", "enable_selected", "disable_selected", "duplicate_selected"]
    readonly_fields = [
        "job_description",
        "upcoming",
        "in_words",
        "run_policy",
        "last_run_at",
        "total_run_count",
        "recent_runs",
    ]

    class Media:
        css = {"all": ["scheduler/schedules.css", "scheduler/charts.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        queryset = selectors.with_last_runs(super().get_queryset(request))
        return selectors.with_strip_start(queryset, charts.LIST_STRIP.slots)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        """The list's page, each schedule with its newest runs for its strip (one query)."""
        changelist = super().get_changelist_instance(request)
        page = list(changelist.result_list)  # evaluated here, and kept by the queryset
        strips = selectors.strips_of(page, charts.LIST_STRIP.slots)
        for schedule in page:
            schedule.strip_runs = strips.get(schedule.name, [])
        shown = Counter(run.status for runs in strips.values() for run in runs)
        legend = charts.status_legend(shown) if shown else ""
        changelist.strip_legend = legend  # type: ignore[attr-defined]  # change_list.html shows it
        return changelist

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return VIEW_FIELDSETS
        return EDIT_FIELDSETS if obj is None else [*EDIT_FIELDSETS, HISTORY_FIELDSET]

    def get_form(
        self, request: HttpRequest, obj: Schedule | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        cast(Any, form).can_edit_policy = request.user.has_perm("scheduler.change_schedulepolicy")
        return form

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scheduler.run_schedule")

    # --- list columns ---

    @admin.display(description="job", ordering="task")
    def job(self, obj: Schedule) -> str:
        return str(obj.task)

    @admin.display(description="schedule")
    def in_words(self, obj: Schedule) -> str:
        return schedule_in_words(obj)

    @admin.display(description="next run")
    def next_run(self, obj: Schedule) -> str:
        if not obj.enabled:
            return "disabled"
        at = next_run(obj)
        return local_text(at) if at else f"none: {why_no_next_run(obj)}"

    @admin.display(description="last run", ordering="last_status")
    def last_status(self, obj: Schedule) -> SafeString | str:
        status = getattr(obj, "last_status", None)
        if not status:
            return "never ran"
        url = reverse("admin:scheduler_jobrun_change", args=[obj.last_run_id])
        link = format_html(
            '<a class="run-status run-status-{}" href="{}">{}</a>',
            status,
            url,
            JobRun.Status(status).label,
        )
        reason = broken_reason(
            getattr(obj, "last_error_type", None),
            getattr(obj, "last_error_message", None),
            getattr(obj, "last_started_at", None),
            obj.date_changed,
        )
        if not reason:
            return link
        return format_html(
            '{} <span class="schedule-broken" title="{}">broken: {}</span>',
            link,
            "Beat records each slot as failed until the schedule is edited to fit its job.",
            reason,
        )

    @admin.display(description="started", ordering="last_started_at")
    def last_run(self, obj: Schedule) -> str:
        at = getattr(obj, "last_started_at", None)
        return local_text(at) if at else "—"

    @admin.display(description="took", ordering="last_duration")
    def last_duration(self, obj: Schedule) -> str:
        return human_duration(getattr(obj, "last_duration", None))

    @admin.display(description="last success", ordering="last_success_at")
    def last_success(self, obj: Schedule) -> str:
        at = getattr(obj, "last_success_at", None)
        return local_text(at) if at else "never"

    @admin.display(description=f"last {charts.LIST_STRIP.slots} runs")
    def strip(self, obj: Schedule) -> SafeString | str:
        runs = getattr(obj, "strip_runs", [])
        return charts.run_strip(runs, charts.LIST_STRIP, obj.name) if runs else "—"

    # --- change page ---

    @admin.display(description="what it does")
    def job_description(self, obj: Schedule | None) -> SafeString:
        job = selectors.registered_jobs().get(obj.task) if obj is not None else None
        text = f"{job.description} Arguments: {job.parameters}" if job else "—"
        return format_html('<span id="job-description">{}</span>', text)

    @admin.display(description="next runs (Asia/Shanghai)")
    def upcoming(self, obj: Schedule | None) -> SafeString:
        saved = obj is not None and obj.pk is not None
        times = [local_text(t) for t in next_fire_times(Timing.of(obj))] if saved else []
        note = schedule_in_words(obj) if saved and obj is not None else ""
        if saved and obj is not None and not obj.enabled:
            note = f"{note}. Disabled; once enabled it runs at:"
        elif saved and obj is not None and not times:
            note = f"{note}. No next run: {why_no_next_run(obj)}."
        return format_html(
            '<div id="schedule-preview" data-url="{}"{}><p class="preview-note">{}</p>'
            '<ol class="preview-times">{}</ol><p class="preview-errors"></p></div>',
            reverse("admin:scheduler_schedule_preview"),
            format_html(' data-saved="{}"', 1) if saved else "",
            note,
            format_html_join("", "<li>{}</li>", ((t,) for t in times)),
        )

    @admin.display(description="run policy")
    def run_policy(self, obj: Schedule) -> SafeString:
        job = selectors.registered_jobs().get(obj.task)
        found = selectors.policy_of(obj)
        rows = []
        for knob in KNOBS:
            value = getattr(found, knob.name, None) if found else None
            if value not in (None, ""):
                rows.append((knob.label, knob.in_words(value), "override"))
            else:
                default = knob.in_words(job.defaults[knob.name]) if job else "—"
                rows.append((knob.label, default, "job default"))
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description=f"recent runs (newest {RECENT_RUNS})")
    def recent_runs(self, obj: Schedule) -> SafeString:
        runs = selectors.recent_runs(obj.name, RECENT_RUNS)
        rows = [
            (
                reverse("admin:scheduler_jobrun_change", args=[run.pk]),
                local_text(run.started_at),
                run.status,
                run.get_status_display(),
                run.trigger,
                run.requested_by or "",
                human_duration(run.duration_seconds),
            )
            for run in runs
        ]
        if not rows:
            return format_html("<p>{}</p>", "No runs yet.")
        all_runs = (
            reverse("admin:scheduler_jobrun_changelist") + "?" + urlencode({"schedule": obj.name})
        )
        return format_html(
            '<table class="recent-runs"><thead><tr><th>started</th><th>status</th>'
            "<th>trigger</th><th>by</th><th>took</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a href="{}">All runs of this schedule</a></p>',
            format_html_join(
                "",
                '<tr><td><a href="{}">{}</a></td><td class="run-status run-status-{}">{}</td>'
                "<td>{}</td><td>{}</td><td>{}</td></tr>",
                rows,
            ),
            all_runs,
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Schedule | None = None,
    ) -> HttpResponse:
        context["can_run"] = obj is not None and self.has_run_permission(request)
        context["run_strip"] = self._run_strip(obj) if obj is not None and obj.pk else ""
        context["run_strip_slots"] = charts.PAGE_STRIP.slots
        context["job_catalog"] = selectors.job_catalog()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _run_strip(self, obj: Schedule) -> SafeString:
        """The strip of the schedule's last runs, with its legend (change_form.html's top)."""
        runs = selectors.strip_runs(obj.name, charts.PAGE_STRIP.slots)
        if not runs:
            return format_html('<p class="chart-note">{}</p>', "No runs yet.")
        longest = max((r.duration_seconds or 0.0 for r in runs), default=0.0)
        return format_html(
            '{}{}<p class="chart-note">{}</p>',
            charts.run_strip(runs, charts.PAGE_STRIP),
            charts.status_legend(Counter(r.status for r in runs)),
            f"Oldest on the left, newest on the right; height: duration (tallest "
            f"{human_duration(longest) if longest else '—'}). Point at a bar for its times, "
            "click it for the run.",
        )

    # --- history ---

    def construct_change_message(
        self, request: HttpRequest, form: Form, formsets: Any, add: bool = False
    ) -> Any:
        if not isinstance(form, ScheduleForm):
            return super().construct_change_message(request, form, formsets, add)
        if add:
            return history.added(form.instance)
        return form.change_message() or "No fields changed."

    def _log(self, request: HttpRequest, objects: Iterable[Schedule], flag: int, text: str) -> None:
        LogEntry.objects.log_actions(cast(int, request.user.pk), list(objects), flag, text)

    # --- actions ---

    @admin.action(description="Run selected schedules now", permissions=["run"])
    def run_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._run(request, list(queryset.order_by("name")))

    def _run(self, request: HttpRequest, schedules: list[Schedule]) -> None:
        username = request.user.get_username()
        for schedule in schedules:
            try:
                task_id = services.run_now(schedule, username)
            except (LookupError, ValueError) as exc:
                self.message_user(request, f"{schedule.name}: {exc}", messages.ERROR)
                continue
            except Exception as exc:  # the broker is down or refused the message
                logger.exception("could not publish a run of %s", schedule.name)
                self.message_user(
                    request,
                    f"{schedule.name}: could not be sent to the broker ({type(exc).__name__})",
                    messages.ERROR,
                )
                continue
            self._log(request, [schedule], CHANGE, f"Ran now (task {task_id}).")
            runs = reverse("admin:scheduler_jobrun_changelist") + "?" + urlencode({"q": task_id})
            self.message_user(
                request,
                format_html(
                    '{}: started {} as a manual run. <a href="{}">See the run</a>.',
                    schedule.name,
                    schedule.task,
                    runs,
                ),
                messages.SUCCESS,
            )

    @admin.action(
        description="Enable selected schedules (at their next slot)", permissions=["change"]
    )
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        ids = services.enable(queryset)
        self._log(
            request,
            Schedule.objects.filter(pk__in=ids),
            CHANGE,
            "enabled: no → yes (runs from its next slot)",
        )
        self.message_user(
            request,
            f"Enabled {len(ids)} schedule(s); each runs at its next slot.",
            messages.SUCCESS,
        )

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        disabled = services.disable(queryset)
        self._log(
            request, Schedule.objects.filter(pk__in=list(disabled)), CHANGE, "enabled: yes → no"
        )
        self.message_user(request, f"Disabled {len(disabled)} schedule(s).", messages.SUCCESS)

    @admin.action(description="Duplicate selected schedules (disabled copies)", permissions=["add"])
    def duplicate_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        names = []
        for original in queryset.order_by("name"):
            copy = services.duplicate(original)
            self._log(request, [copy], ADDITION, f"Duplicated from {original.name} (disabled).")
            names.append(copy.name)
        self.message_user(
            request, f"Created {len(names)} disabled copies: {', '.join(names)}.", messages.SUCCESS
        )

    # --- extra views ---

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        extra = [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/run/",
                self.admin_site.admin_view(self.run_view),
                name="{}_{}_run".format(*info),
            ),
            *self.arguments_urls(),
        ]
        return [*extra, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """The next five fire times of the schedule as typed (JSON, for the change page)."""
        if not (self.has_view_or_change_permission(request) or self.has_add_permission(request)):
            raise PermissionDenied
        form = TimingForm(request.GET)
        if not form.is_valid():
            errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
            return JsonResponse({"ok": False, "errors": errors}, status=400)
        times = next_fire_times(form.timing())
        return JsonResponse(
            {
                "ok": True,
                "description": form.in_words(),
                "times": [t.isoformat() for t in times],
                "display": [local_text(t) for t in times],
            }
        )

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: run the schedule now (the change page's button)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_run_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"no schedule with id {object_id!r}")
        self._run(request, [obj])
        return HttpResponseRedirect(
            reverse("admin:scheduler_schedule_change", args=[quote(obj.pk)])
        )
