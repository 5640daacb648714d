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
