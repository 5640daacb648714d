from __future__ import annotations

from django.db import models
from django_celery_beat.models import PeriodicTask

from scheduler import policy
from scheduler.describe import schedule_in_words


class JobRun(models.Model):
    """One execution attempt of a job (or the decision not to execute it), as a worker saw it."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        RETRYING = "retrying", "retrying"
        TIMED_OUT = "timed_out", "timed out"
        LOST = "lost", "lost"
        SKIPPED_OVERLAP = "skipped_overlap", "skipped: overlap"
        SKIPPED_DUPLICATE = "skipped_duplicate", "skipped: duplicate"
        EXPIRED = "expired", "expired"
        # Beat never sent it: it was down, not leading, or the broker refused, past the deadline.
        MISSED = "missed", "missed"
        # Stopped from the admin while running (scheduler.services.cancel_run): not a failure.
        CANCELLED = "cancelled", "cancelled"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "schedule"
        MANUAL = "manual", "manual"
        RETRY = "retry", "retry"

    FINAL_ERRORS = (Status.FAILED, Status.TIMED_OUT, Status.LOST)
    # What the admin may run again with the same arguments (scheduler.services.retry_run).
    RETRYABLE = FINAL_ERRORS

    task_id = models.CharField(max_length=255, db_index=True)
    job = models.CharField(max_length=200, help_text="The Celery task name, e.g. jobs.heartbeat.")
    schedule = models.CharField(
        max_length=200, blank=True, help_text="The schedule (periodic task) that dispatched it."
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    slot = models.DateTimeField(
        null=True, blank=True, help_text="The scheduled occurrence this run belongs to."
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    attempt = models.PositiveIntegerField(default=1)
    worker = models.CharField(max_length=255, blank=True)
    requested_by = models.CharField(
        max_length=150, blank=True, help_text="The user who started a manual run."
    )
    error_type = models.CharField(max_length=255, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    sentry_event_id = models.CharField(max_length=32, blank=True)
    result = models.JSONField(null=True, blank=True)
    # The arguments the job was called with (None: not recorded, as for runs from before they
    # were, rows beat writes itself, or arguments over scheduler.arguments.MAX_ARGUMENTS_BYTES).
    args = models.JSONField(null=True, blank=True)
    kwargs = models.JSONField(null=True, blank=True)
    # The run an admin retried to start this one. No constraint, no cascade: housekeeping
    # deletes old runs in fast batches, and a retry outlives its original.
    retry_of = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="retries",
        help_text="The run this one retries (the admin's Retry).",
    )
    cancelled_by = models.CharField(
        max_length=150, blank=True, help_text="The user who cancelled the run in the admin."
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(
                fields=["retry_of"],
                condition=models.Q(retry_of__isnull=False),
                name="jobrun_retry_of",
            ),
            models.Index(fields=["job", "-started_at"], name="jobrun_job_newest"),
            models.Index(fields=["schedule", "-started_at"], name="jobrun_schedule_newest"),
            models.Index(fields=["status", "started_at"], name="jobrun_status_since"),
            models.Index(fields=["-started_at"], name="jobrun_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.job} #{self.pk} {self.status}"


class Schedule(PeriodicTask):  # type: ignore[misc]  # django_celery_beat is untyped
    """django-celery-beat's PeriodicTask as Nightshift's admin shows it (a proxy: same table)."""

    class Meta:
        proxy = True
        verbose_name = "schedule"
        permissions = [("run_schedule", "Can run a schedule now")]

    def __str__(self) -> str:
        # Admin titles, messages and history show this: the name and the schedule in words
        # (django-celery-beat's own reads "15 7 * * mon-fri (m/h/dM/MY/d) Asia/Shanghai").
        return f"{self.name}: {schedule_in_words(self)}"


def _knob(name: str) -> models.PositiveIntegerField[int | None, int | None]:
    return models.PositiveIntegerField(null=True, blank=True, help_text=policy.KNOB[name].help_text)


class SchedulePolicy(models.Model):
    """Per-schedule overrides of the job's run policy; an empty field keeps the job's default.

    One column per knob of scheduler.policy.KNOBS, where their meaning is declared.
    """

    Overlap = policy.Overlap

    periodic_task = models.OneToOneField(
        PeriodicTask, on_delete=models.CASCADE, related_name="nightshift_policy"
    )
    overlap = models.CharField(max_length=8, choices=Overlap.choices, blank=True)
    soft_time_limit = _knob("soft_time_limit")
    time_limit = _knob("time_limit")
    max_retries = _knob("max_retries")
    start_deadline = _knob("start_deadline")

    class Meta:
        verbose_name = "run policy"
        verbose_name_plural = "run policy"

    def __str__(self) -> str:
        return f"policy of {self.periodic_task.name}"

    def overrides(self) -> dict[str, object]:
        """The fields that are set, by name (what beat sends with each dispatch)."""
        return policy.set_values({name: getattr(self, name) for name in policy.POLICY_FIELDS})


class ScheduleChange(models.Model):
    """A change to a schedule, appended by database triggers (see scheduler.engine.changes)."""

    id = models.BigAutoField(primary_key=True)
    task_id = models.IntegerField(help_text="The PeriodicTask that changed (it may be deleted).")
    changed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["changed_at"], name="schedulechange_changed_at")]

    def __str__(self) -> str:
        return f"change of schedule {self.task_id} at {self.changed_at}"
