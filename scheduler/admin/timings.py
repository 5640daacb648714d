"""django-celery-beat's timing rows (crontabs, intervals, solar events, clocked times) in the admin.

Several schedules may share one row: changing it would move them all behind the schedule form's
back, deleting it would delete them all (the foreign keys cascade). So timing is edited only in
the schedule form, which never changes a row another schedule uses (a typed crontab finds or
creates its own row; the other kinds are picked). These pages are read-only lists for
superusers; editors only reach the add page, from the "+" next to a schedule's interval, solar
or clocked field (a new row moves nothing). A row in use is never deleted: the admin lists the
schedules using it, and scheduler.signals refuses any other deletion too.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    SolarSchedule,
)

from scheduler import selectors
from scheduler.describe import timing_in_words


class TimingRows(admin.ModelAdmin[Any]):
    """Read-only for superusers, add-only (from the schedule form) for editors, and a row
    that schedules use cannot be deleted."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(request.user.is_superuser)

    def get_inlines(self, request: HttpRequest, obj: Model | None) -> Any:
        # The stock pages list the schedules using a row; a new row has none.
        return super().get_inlines(request, obj) if obj is not None else []

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[str]]:
        # Listed as protected, the admin's delete page and bulk action refuse, naming them.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        rows = list(objs)
        users = selectors.schedules_using(rows)
        if users:
            names = ", ".join(timing_in_words(row) for row in rows)
            protected = [
                *protected,
                *(
                    f"Schedule {name} (uses {names}; give it another timing first)"
                    for name in users
                ),
            ]
        return deleted, counts, perms_needed, protected

    @admin.display(description="in words")
    def in_words(self, obj: Model) -> str:
        return timing_in_words(obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        obj = self.get_object(request, object_id)
        words = {"subtitle": timing_in_words(obj)} if obj is not None else {}
        return super().change_view(request, object_id, form_url, {**words, **(extra_context or {})})


for _model in selectors.TIMING_FIELDS:
    admin.site.unregister(_model)


@admin.register(CrontabSchedule)
class CrontabRows(TimingRows, beat_admin.CrontabScheduleAdmin):  # type: ignore[misc]
    list_display = ["in_words"]
    # The five fields read in words; the stock help texts also say Sunday is 7 (not to Celery).
    fields = ["in_words", "timezone"]
    readonly_fields = ["in_words"]


@admin.register(IntervalSchedule)
class IntervalRows(TimingRows, beat_admin.IntervalScheduleAdmin):  # type: ignore[misc]
    pass


@admin.register(SolarSchedule)
class SolarRows(TimingRows, beat_admin.SolarScheduleAdmin):  # type: ignore[misc]
    pass


@admin.register(ClockedSchedule)
class ClockedRows(TimingRows, beat_admin.ClockedScheduleAdmin):  # type: ignore[misc]
    list_display = ["in_words"]
