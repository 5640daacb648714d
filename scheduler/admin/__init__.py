"""Nightshift's admin: schedules (django-celery-beat's PeriodicTask, replacing its own pages) and
job runs, and django-celery-beat's timing rows read-only. Importing the package registers them;
jobs' admin reuses WrittenByJobs."""

from scheduler.admin import runs, schedules, timings
from scheduler.admin.runs import WrittenByJobs

__all__ = ["WrittenByJobs", "runs", "schedules", "timings"]
