"""URLs for bench/admin.py: Nightshift's admin plus stock admins of the same models (baseline)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.urls import path
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from config.urls import urlpatterns as project_urlpatterns
from scheduler.admin.runs import JobRunAdmin
from scheduler.models import JobRun

stock = admin.AdminSite(name="stock")
# django-celery-beat's own schedule list, as a site without Nightshift shows it.
stock.register(PeriodicTask, PeriodicTaskAdmin)


@admin.register(JobRun, site=stock)
class StockJobRunAdmin(admin.ModelAdmin[JobRun]):
    """The run list as Django builds it from the same declarations, without Nightshift's care."""

    list_display = ["id", "job", "schedule", "trigger", "status", "attempt", "started_at", "worker"]
    list_filter = ["status", "trigger", "job", "schedule", "started_at"]
    date_hierarchy = "started_at"
    list_per_page = 50


# Nightshift's run list as it searched before issue 14 (the baseline of the run search).
before = admin.AdminSite(name="before")


@admin.register(JobRun, site=before)
class SearchBeforeJobRunAdmin(JobRunAdmin):
    """Django's search: icontains over job, schedule and error text of every run."""

    search_fields = ["=task_id", "job", "schedule", "error_type", "error_message"]

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> Any:
        return admin.ModelAdmin.get_search_results(self, request, queryset, search_term)

    def get_paginator(self, *args: Any, **kwargs: Any) -> Any:
        return admin.ModelAdmin.get_paginator(self, *args, **kwargs)

    def get_changelist_instance(self, request: Any) -> Any:
        return admin.ModelAdmin.get_changelist_instance(self, request)


urlpatterns = [
    path("stock-admin/", stock.urls),
    path("before-admin/", before.urls),
    *project_urlpatterns,
]
