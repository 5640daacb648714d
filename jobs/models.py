from pathlib import Path

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """The last time each worker ran `jobs.heartbeat`: proof that beat, broker and worker work."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen_at = models.DateTimeField(db_index=True)
    runs = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return f"{self.hostname} at {timezone.localtime(self.last_seen_at):%Y-%m-%d %H:%M:%S %Z}"


class Backup(models.Model):
    """A finished database backup file; a row exists only once its file is complete."""

    class Engine(models.TextChoices):
        POSTGRESQL = "postgresql", "PostgreSQL"
        SQLITE = "sqlite", "SQLite"

    created_at = models.DateTimeField(db_index=True, help_text="When the backup started.")
    path = models.CharField(max_length=1024, unique=True)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    duration_seconds = models.FloatField()
    engine = models.CharField(max_length=16, choices=Engine.choices)
    verified = models.BooleanField(default=False)
    verification = models.TextField(
        blank=True, help_text="What the verification found (or why it failed)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["verified", "-created_at"], name="backup_verified_newest")]

    def __str__(self) -> str:
        return Path(self.path).name


class Report(models.Model):
    """The daily report of one calendar day in Asia/Shanghai."""

    day = models.DateField(unique=True)
    created_at = models.DateTimeField()
    data = models.JSONField()
    html = models.TextField()
    text = models.TextField()
    recipients = models.TextField(blank=True, help_text="Addresses it was emailed to.")
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"Report for {self.day:%Y-%m-%d}"
