from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from jobs.models import Backup, Report, WorkerHeartbeat
from scheduler.admin import WrittenByJobs
from scheduler.presentation import human_duration


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(WrittenByJobs, admin.ModelAdmin[WorkerHeartbeat]):
    list_display = ["hostname", "last_seen_at", "runs"]
    readonly_fields = ["hostname", "last_seen_at", "runs"]
    ordering = ["-last_seen_at"]


@admin.register(Backup)
class BackupAdmin(WrittenByJobs, admin.ModelAdmin[Backup]):
    """Backups are written by jobs.backup_database and removed by its retention policy only."""

    list_display = ["__str__", "created_at", "age", "size", "engine", "verified", "duration"]
    list_filter = ["verified", "engine"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "path",
        "created_at",
        "size",
        "sha256",
        "engine",
        "duration",
        "verified",
        "verification",
    )

    @admin.display(description="size", ordering="size_bytes")
    def size(self, backup: Backup) -> str:
        return filesizeformat(backup.size_bytes)

    @admin.display(description="age", ordering="-created_at")
    def age(self, backup: Backup) -> str:
        return timesince(backup.created_at, timezone.now())

    @admin.display(description="duration", ordering="duration_seconds")
    def duration(self, backup: Backup) -> str:
        return human_duration(backup.duration_seconds)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting the row would orphan its file; retention removes both together.
        return False


@admin.register(Report)
class ReportAdmin(WrittenByJobs, admin.ModelAdmin[Report]):
    list_display = ["day", "created_at", "emailed_at", "recipients"]
    date_hierarchy = "day"
    fields = readonly_fields = ("day", "created_at", "emailed_at", "recipients", "rendered")

    @admin.display(description="report")
    def rendered(self, report: Report) -> SafeString:
        # The HTML is rendered by jobs.reports from an autoescaping template; shown sandboxed.
        return format_html(
            '<iframe sandbox srcdoc="{}" style="width:100%;height:70vh;border:1px solid #ccc">'
            "</iframe>",
            report.html,
        )
