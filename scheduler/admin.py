from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from scheduler.models import JobRun
from scheduler.reporting import sentry_event_url


def human_duration(seconds: float | None) -> str:
    """250 ms, 1.2 s, 3 min 4 s, 2 h 5 min."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin[JobRun]):
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
    list_filter = ["status", "trigger", "job", "schedule", "started_at"]
    search_fields = ["=task_id", "job", "schedule", "error_type", "error_message"]
    date_hierarchy = "started_at"
    list_per_page = 50
    show_full_result_count = False
    fields = readonly_fields = (
        "job",
        "schedule",
        "trigger",
        "status",
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False
