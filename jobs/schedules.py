"""Default schedules of the jobs in this app (created by `manage.py sync_schedules`)."""

from scheduler.defaults import DefaultSchedule, register

register(
    DefaultSchedule(
        name="nightshift-heartbeat",
        task="jobs.heartbeat",
        crontab="* * * * *",
        description="Every minute: a worker records that it ran a scheduled job.",
    ),
    DefaultSchedule(
        name="nightshift-backup-database",
        task="jobs.backup_database",
        crontab="30 2 * * *",
        description="Every day at 02:30: back up the database, verify it, prune old backups.",
    ),
    DefaultSchedule(
        name="nightshift-daily-report",
        task="jobs.daily_report",
        crontab="0 8 * * *",
        description="Every day at 08:00: yesterday's report, stored and emailed.",
    ),
    DefaultSchedule(
        name="nightshift-refresh-cache",
        task="jobs.refresh_cache",
        crontab="*/10 * * * *",
        description="Every 10 minutes: recompute cached values (job-health summary, ...).",
    ),
    DefaultSchedule(
        name="nightshift-housekeeping",
        task="jobs.housekeeping",
        crontab="30 3 * * *",
        description="Every day at 03:30: prune old history, reports and sessions.",
    ),
)
