"""The jobs app's pages, mounted under /admin/ by the project's URLconf (behind the admin login)."""

from django.contrib import admin
from django.urls import path

from jobs.views import health

urlpatterns = [
    path("health/", admin.site.admin_view(health), name="nightshift-health"),
]
