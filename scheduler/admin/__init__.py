"""Nightshift's admin: schedules (django-celery-beat's PeriodicTask, replacing its own pages) and
job runs. Importing the package registers both; jobs' admin reuses WrittenByJobs."""

from scheduler.admin import runs, schedules
from scheduler.admin.runs import WrittenByJobs

__all__ = ["WrittenByJobs", "runs", "schedules"]
