"""URLs for bench/pictures.py: Nightshift's admin, plus its schedule list without the run strips
(the baseline) under /plain-admin/."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import ModelAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path

from config.urls import urlpatterns as project_urlpatterns
from scheduler import selectors
from scheduler.admin.schedules import ScheduleAdmin
from scheduler.models import Schedule

plain = admin.AdminSite(name="plain")


class PlainScheduleAdmin(ScheduleAdmin):
    """The schedule list as it was before the strips: the same columns, queries and page."""

    list_display = [name for name in ScheduleAdmin.list_display if name != "strip"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return selectors.with_last_runs(ModelAdmin.get_queryset(self, request))

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        return ModelAdmin.get_changelist_instance(self, request)


plain.register(Schedule, PlainScheduleAdmin)

urlpatterns = [path("plain-admin/", plain.urls), *project_urlpatterns]
