from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from jobs.views import health

admin.site.site_header = "Nightshift"
admin.site.site_title = "Nightshift"
admin.site.index_title = "Scheduled jobs"

urlpatterns = [
    path("admin/health/", admin.site.admin_view(health), name="nightshift-health"),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
