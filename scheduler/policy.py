"""The run-policy knobs, declared once, and how a schedule's overrides travel with each dispatch.

A job declares its run policy as task options (`overlap="skip", time_limit=1900, ...`); an admin
may override any knob for one schedule (SchedulePolicy, one nullable column per knob). KNOBS is
the one list of them: the model's help texts, the schedule form's fields and checks, the admin's
run-policy table, the history and the system checks all read it.

Whoever publishes a run of a schedule (beat, or "run now" in the admin) sends its overrides
along: the time limits as Celery's own per-message limits, the rest in the `nightshift_policy`
header that JobTask reads. Beat loads them with the schedule rows (and reloads them with every
change), so a dispatch queries nothing; workers never query the database for a policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import models
from django_celery_beat.models import PeriodicTask

POLICY_HEADER = "nightshift_policy"
TIME_LIMIT_OPTIONS = ("soft_time_limit", "time_limit")


class Overlap(models.TextChoices):
    SKIP = "skip", "skip: a run still going makes the next one skipped_overlap"
    ALLOW = "allow", "allow: runs may overlap"


@dataclass(frozen=True)
class Knob:
    """One run-policy setting: a task option a job declares and a schedule may override."""

    name: str
    help_text: str = ""
    min_value: int | None = None  # None: a choice of `choices`, not a number
    choices: tuple[tuple[str, str], ...] = ()
    seconds: bool = False
    unset: str = "none"  # a job default of None, in words
    task_default: Any = None  # for a task that does not declare the option (not a JobTask)
    celery_default: str | None = None  # the Celery setting a task without a value falls back to
    most: str | None = None  # the Django setting the value may not exceed
    max_value: int | None = None  # the most that makes sense, when no setting bounds it
    why_max: str = ""  # why not more, in words for the admin

    @property
    def label(self) -> str:
        """'soft time limit': how the admin and the history name it."""
        return self.name.replace("_", " ")

    def job_default(self, task: Any, conf: Any) -> Any:
        """The value the job `task` runs with when no schedule overrides it."""
        value = getattr(task, self.name, self.task_default)
        if self.celery_default is not None:
            value = value or getattr(conf, self.celery_default)
        return value

    def in_words(self, value: Any) -> str:
        """A value as the admin shows it: '3600 s', 'skip', 'until the next slot'."""
        if value is None:
            return self.unset
        if self.seconds:
            return f"{value:g} s" if isinstance(value, float) else f"{value} s"
        return str(value)

    def limit(self) -> int | None:
        """The most this knob may be (a setting, read when asked, else max_value; None: none)."""
        return self.max_value if self.most is None else int(getattr(settings, self.most))

    def problem(self, value: Any) -> str:
        """Why `value` is out of this knob's bounds ('' when it is within them, or unset)."""
        if value is None or self.choices:
            return ""
        least, most = self.min_value, self.limit()
        if least is not None and value < least:
            return f"{self.in_words(value)} is below the least {self.label}, {least}."
        if most is None or value <= most:
            return ""
        if self.most is not None:
            return (
                f"{self.in_words(value)} is longer than {self.most} ({most} s), the longest a "
                "job may run: past it, the broker hands a job that is still running to another "
                "worker."
            )
        return f"{self.in_words(value)} is above the most, {self.in_words(most)}: {self.why_max}"


KNOBS: tuple[Knob, ...] = (
    Knob("overlap", choices=tuple(Overlap.choices), task_default=Overlap.SKIP.value),
    Knob(
        "soft_time_limit",
        "Seconds; the job is interrupted and recorded timed_out.",
        min_value=1,
        seconds=True,
        celery_default="task_soft_time_limit",
        most="LONGEST_JOB_SECONDS",
    ),
    Knob(
        "time_limit",
        "Seconds; the worker process is killed.",
        min_value=1,
        seconds=True,
        celery_default="task_time_limit",
        # The broker hands a task still running after BROKER_REDELIVERY_SECONDS to a second worker.
        most="LONGEST_JOB_SECONDS",
    ),
    Knob(
        "max_retries",
        "Retries after a transient error.",
        min_value=0,
        unset="no limit",
        max_value=50,
        why_max="retries wait up to 10 minutes each, so more would report a failure only after "
        "more than 8 hours.",
    ),
    Knob(
        "start_deadline",
        "Seconds after its slot until a run not yet started expires.",
        min_value=1,
        seconds=True,
        unset="until the next slot",
        max_value=7 * 24 * 3600,
        why_max="a run that has not started within a week is stale.",
    ),
)
KNOB = {knob.name: knob for knob in KNOBS}
POLICY_FIELDS = tuple(KNOB)


def hard_time_limit(job: str) -> float | None:
    """A job's hard time limit in seconds (its own, else Celery's default; None: none)."""
    value = KNOB["time_limit"].job_default(current_app.tasks.get(job), current_app.conf)
    return float(value) if value else None


def set_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs of `values` that are set (an empty overlap or a None limit is not), by name."""
    return {
        knob.name: values[knob.name] for knob in KNOBS if values.get(knob.name) not in (None, "")
    }


def overrides_for(schedule: str) -> dict[str, Any]:
    """The overrides set on the schedule named `schedule` ({} when none)."""
    # Through the schedule's row (a LEFT JOIN): scheduler.models itself reads this module.
    row = (
        PeriodicTask.objects.filter(name=schedule)
        .values_list(*(f"nightshift_policy__{knob.name}" for knob in KNOBS))
        .first()
    )
    return set_values(dict(zip(POLICY_FIELDS, row, strict=True))) if row else {}


def split(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headers, apply_async options) that carry `overrides` with a message."""
    options = {name: overrides[name] for name in TIME_LIMIT_OPTIONS if name in overrides}
    headers = {POLICY_HEADER: overrides} if overrides else {}
    return headers, options


def dispatch_options(schedule: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(headers, apply_async options) that carry the schedule's overrides with a message."""
    return split(overrides_for(schedule))
