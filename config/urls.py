from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Nightshift"
admin.site.site_title = "Nightshift"
admin.site.index_title = "Scheduled jobs"

urlpatterns = [
    # The apps' own pages, by dotted path: the project imports nothing from jobs or scheduler.
    path("admin/", include("jobs.urls")),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
