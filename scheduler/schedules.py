"""Default schedules of the scheduler app (created by `manage.py sync_schedules`)."""

from scheduler.defaults import DefaultSchedule, register

register(
    DefaultSchedule(
        name="nightshift-lost-runs",
        task="scheduler.mark_lost_runs",
        crontab="* * * * *",
        description="Every minute: close runs whose worker died (lost) or was killed (timed out).",
    ),
)
