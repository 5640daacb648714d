"""URLs for bench/admin.py: Nightshift's admin plus stock admins of the same models (baseline)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from config.urls import urlpatterns as project_urlpatterns
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


urlpatterns = [path("stock-admin/", stock.urls), *project_urlpatterns]
