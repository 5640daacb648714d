"""Default schedules of the jobs in this app (created by `manage.py sync_schedules`)."""

from scheduler.defaults import DefaultSchedule, register

register(
    DefaultSchedule(
        name="nightshift-heartbeat",
        task="jobs.heartbeat",
        crontab="* * * * *",
        description="Every minute: a worker records that it ran a scheduled job.",
    ),
)
