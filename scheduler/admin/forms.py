"""The schedule form of the admin: the job from the registered ones, its arguments checked against
the job's signature, the crontab typed on the page, and the per-schedule run-policy overrides."""

from __future__ import annotations

import json
import logging
from typing import Any, cast
from zoneinfo import available_timezones

import redis
from django import forms
from django.conf import settings
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.models import (
    ClockedSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from scheduler import history, presence, services
from scheduler.arguments import check_arguments, size_problem
from scheduler.describe import (
    CRONTAB_FIELDS,
    CrontabError,
    check_crontab_field,
    crontab_in_words,
    parse_crontab,
    schedule_in_words,
)
from scheduler.models import Schedule
from scheduler.policy import KNOBS, POLICY_FIELDS, Knob
from scheduler.presentation import local_text
from scheduler.selectors import JobInfo, policy_of, registered_jobs
from scheduler.sync import get_crontab
from scheduler.timing import Timing, interval_problem, next_fire_times

logger = logging.getLogger(__name__)

KINDS = [
    ("crontab", "crontab"),
    ("interval", "interval"),
    ("solar", "solar event"),
    ("clocked", "clocked (once, at a given time)"),
]
KIND_FIELDS = ("interval", "solar", "clocked")  # the kinds chosen with a select


# --- Timing: what the preview and the schedule form share ----------------------------------------


def _timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(available_timezones())]


class TimingForm(forms.Form):
    """When a schedule fires, as typed on the page (also what the live preview receives)."""

    kind = forms.ChoiceField(
        label="Schedule kind", choices=KINDS, initial="crontab", widget=forms.RadioSelect
    )
    minute = forms.CharField(required=False, initial="*", max_length=240, help_text="0-59")
    hour = forms.CharField(required=False, initial="*", max_length=96, help_text="0-23")
    day_of_month = forms.CharField(required=False, initial="*", max_length=124, help_text="1-31")
    month_of_year = forms.CharField(
        required=False, initial="*", max_length=64, help_text="1-12 or jan-dec"
    )
    day_of_week = forms.CharField(
        required=False,
        initial="*",
        max_length=64,
        help_text="0-6 or sun-sat; 0 is Sunday. Day of month and day of week must both match.",
    )
    timezone = forms.ChoiceField(
        label="Time zone", required=False, choices=_timezone_choices, initial=settings.TIME_ZONE
    )
    interval = forms.ModelChoiceField(IntervalSchedule.objects.all(), required=False)
    solar = forms.ModelChoiceField(SolarSchedule.objects.all(), required=False)
    clocked = forms.ModelChoiceField(ClockedSchedule.objects.all(), required=False)
    one_off = forms.BooleanField(required=False)
    start_time = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime)
    expires = forms.SplitDateTimeField(required=False, widget=AdminSplitDateTime)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        kind = data.get("kind")
        if kind == "crontab":
            for field in CRONTAB_FIELDS:
                try:
                    data[field] = check_crontab_field(field, data.get(field) or "")
                except CrontabError as exc:
                    self.add_error(field, str(exc))
            if not data.get("timezone") and "timezone" not in self.errors:
                self.add_error("timezone", "Pick the time zone the crontab counts in.")
        elif kind in KIND_FIELDS and not data.get(kind) and kind not in self.errors:
            self.add_error(kind, f"Pick the {kind} schedule to use (or choose another kind).")
        for other in KIND_FIELDS:
            if other != kind and data.get(other):
                self.add_error(
                    other,
                    "Only one schedule kind can be set: clear this, "
                    f"or choose {other} as the kind.",
                )
        if kind == "interval" and data.get("interval"):
            row = data["interval"]
            instance = getattr(self, "instance", None)
            # A schedule keeping the interval it has is not held up by a rule for new ones.
            kept = instance is not None and instance.pk and instance.interval_id == row.pk
            problem = "" if kept else interval_problem(row.every, row.period)
            if problem:
                self.add_error("interval", problem)
        if kind == "solar" and data.get("solar"):
            try:
                _ = data["solar"].schedule  # Celery checks the event, latitude and longitude
            except ValueError as exc:
                self.add_error("solar", str(exc))
        if kind == "clocked" and not data.get("one_off"):
            self.add_error("one_off", "A clocked schedule runs once: tick one-off.")
        start, expires = data.get("start_time"), data.get("expires")
        if start and expires and expires <= start:
            self.add_error("expires", "Expires must be after the start time.")
        if kind == "crontab" and not any(f in self.errors for f in (*CRONTAB_FIELDS, "timezone")):
            problem = self._never_fires()
            if problem:
                self.add_error("day_of_month", f"This crontab never fires: {problem}")
        return data

    def _never_fires(self) -> str:
        """Why the (checked) crontab fields never fire together; '' when they do."""
        try:
            schedule = self.celery_schedule()
        except ValueError as exc:  # Celery rejects e.g. day 31 of February
            return str(exc).removeprefix("Invalid crontab: ")
        if not next_fire_times(Timing(schedule), count=1):
            return "no date matches its day of month, month and day of week together."
        return ""

    def crontab_fields(self) -> dict[str, str]:
        return {name: self.cleaned_data[name] for name in CRONTAB_FIELDS}

    def celery_schedule(self) -> Any:
        """The Celery schedule of the cleaned data (the form must be valid)."""
        data = self.cleaned_data
        if data["kind"] == "crontab":
            return parse_crontab(self.crontab_fields(), data["timezone"])
        return data[data["kind"]].schedule

    def timing(self, last_run_at: Any = None) -> Timing:
        data = self.cleaned_data
        return Timing(
            self.celery_schedule(),
            data.get("start_time"),
            data.get("expires"),
            bool(data.get("one_off")),
            last_run_at,
        )

    def in_words(self) -> str:
        data = self.cleaned_data
        if data["kind"] == "crontab":
            return crontab_in_words(self.crontab_fields(), data["timezone"])
        probe = PeriodicTask(**{data["kind"]: data[data["kind"]]})
        return schedule_in_words(probe)


# --- The schedule form ---------------------------------------------------------------------------


def knob_field(knob: Knob) -> forms.Field:
    """The optional form field of a run-policy knob (empty: the job's default)."""
    label = knob.label.capitalize()
    if knob.choices:
        choices = [("", "job default"), *knob.choices]
        return forms.ChoiceField(required=False, choices=choices, label=label)
    return forms.IntegerField(
        required=False, min_value=knob.min_value, label=label, help_text=knob.help_text
    )


class PolicyForm(forms.Form):
    """One field per run-policy knob, named as the knob (scheduler.policy declares them)."""

    # A class body's namespace is a plain dict: these become the form's declared fields.
    locals().update({knob.name: knob_field(knob) for knob in KNOBS})

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        assert data is not None
        for knob in KNOBS:
            if self.fields[knob.name].disabled or knob.name in self.errors:
                continue  # not this user's to change, or already said what is wrong
            problem = knob.problem(data.get(knob.name))
            if problem:
                self.add_error(knob.name, problem)
        return data


class JobArguments(forms.BaseForm):
    """The `args` and `kwargs` fields of a form, JSON checked as the schedule form checks them:
    a list and an object, at most MAX_ARGUMENTS_BYTES, fitting the job's signature and types."""

    def _json(self, field: str, kind: type, example: str) -> Any:
        text = (self.cleaned_data.get(field) or "").strip() or ("[]" if kind is list else "{}")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}.") from exc
        if not isinstance(value, kind):
            raise ValidationError(f"Must be a JSON {kind.__name__}, like {example}.")
        return value

    def clean_args(self) -> str:
        return self._fits(self._json("args", list, '["a", 2]'))

    def clean_kwargs(self) -> str:
        return self._fits(self._json("kwargs", dict, '{"day": "2026-01-31"}'))

    def _fits(self, value: Any) -> str:
        too_big = size_problem(value, {})
        if too_big:
            raise ValidationError(too_big)
        return json.dumps(value)

    def check_arguments(self, job: str, data: dict[str, Any]) -> None:
        """Add an error for each way the cleaned args and kwargs do not fit `job`."""
        if "args" in data and "kwargs" in data:
            args, kwargs = json.loads(data["args"]), json.loads(data["kwargs"])
            for problem in check_arguments(job, args, kwargs):
                positional = "positional" in problem or (args and not kwargs)
                self.add_error("args" if positional else "kwargs", problem)


class ScheduleForm(TimingForm, PolicyForm, JobArguments, forms.ModelForm[Schedule]):
    """Edits a schedule and its run policy; a crontab typed here is stored as a CrontabSchedule."""

    # The admin builds these from the model (with its add buttons and date widgets).
    interval = None  # type: ignore[assignment]
    solar = None  # type: ignore[assignment]
    clocked = None  # type: ignore[assignment]
    one_off = None  # type: ignore[assignment]
    start_time = None  # type: ignore[assignment]
    expires = None  # type: ignore[assignment]

    task = forms.ChoiceField(label="Job")

    # Set by the admin for the requesting user.
    can_edit_policy = True

    class Media:
        js = ["scheduler/schedule_form.js"]

    class Meta:
        model = Schedule
        fields = [
            "name",
            "task",
            "description",
            "enabled",
            "interval",
            "solar",
            "clocked",
            "one_off",
            "start_time",
            "expires",
            "args",
            "kwargs",
            "queue",
        ]
        # In place of django-celery-beat's texts ("Short Description For This Task", "Set to
        # False to disable the schedule", ...).
        labels = {
            "interval": "Interval",
            "solar": "Solar event",
            "clocked": "Clocked time",
            "one_off": "One-off",
            "start_time": "Starts",
            "expires": "Expires",
            "args": "Positional arguments",
            "kwargs": "Keyword arguments",
            "queue": "Queue",
        }
        help_texts = {
            "name": "Unique; the run history, Sentry and its monitor know the schedule by it.",
            "description": "Notes for the people who read or edit this schedule (optional).",
            "enabled": "Untick to stop the schedule without deleting it.",
            "interval": "Shared by the schedules that pick it: the + adds another.",
            "solar": "Shared by the schedules that pick it: the + adds another.",
            "clocked": "Shared by the schedules that pick it: the + adds another.",
            "one_off": "Runs once, then the schedule is disabled.",
            "start_time": "No run before this time (Asia/Shanghai). Empty: from now.",
            "expires": "No run after this time (Asia/Shanghai). Empty: never expires.",
            "args": 'A JSON list, e.g. ["a", 2]. Usually empty: jobs take keyword arguments.',
            "kwargs": 'A JSON object, e.g. {"day": "2026-01-31"}.',
            "queue": "Default: the job's own queue (maintenance for quick jobs, heavy for long "
            "ones). The others offered are those some live worker consumes "
            "(celery -A config worker -Q NAME).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        task: PeriodicTask = self.instance
        self.jobs = registered_jobs()
        choices = [(name, name) for name in self.jobs]
        if task.task and task.task not in self.jobs:
            choices.append((task.task, f"{task.task} (not a registered job)"))
        cast(forms.ChoiceField, self.fields["task"]).choices = [("", "---------"), *choices]
        self.fields["task"].help_text = "The Celery task the schedule runs."
        self.before = history.snapshot(task) if task.pk else {}
        if task.pk:
            self._initial_from(task)
        # After a refused save, the hints are those of the job as posted.
        picked = self.data.get(self.add_prefix("task")) if self.is_bound else task.task
        self._show_job_defaults(self.jobs.get(picked or ""))
        if not self.can_edit_policy:
            for field in POLICY_FIELDS:
                self.fields[field].disabled = True
        if "queue" in self.fields:  # a viewer's read-only page has no fields
            self.fields["queue"].widget = forms.Select(choices=self._queue_choices(task.queue))

    @staticmethod
    def _queue_choices(current: str | None) -> list[tuple[str, str]]:
        """Default, then the queues live workers consume; a schedule's own queue is kept."""
        try:
            live = presence.live_queues()
        except redis.RedisError as exc:
            logger.warning("could not read the workers' queues from Redis: %s", exc)
            live = set()
        choices = [("", "default: the job's own queue"), *((q, q) for q in sorted(live))]
        if current and current not in live:
            choices.append((current, f"{current} (no live worker consumes it now)"))
        return choices

    def _initial_from(self, task: PeriodicTask) -> None:
        kind = next((k for k in ("crontab", *KIND_FIELDS) if getattr(task, f"{k}_id")), "crontab")
        self.initial["kind"] = kind
        if task.crontab_id:
            for field in CRONTAB_FIELDS:
                self.initial[field] = getattr(task.crontab, field)
            self.initial["timezone"] = str(task.crontab.timezone)
        policy = policy_of(task)
        if policy is not None:
            for field in POLICY_FIELDS:
                value = getattr(policy, field)
                self.initial[field] = value if value not in (None, "") else None

    def _show_job_defaults(self, job: JobInfo | None) -> None:
        for knob in KNOBS:
            default = knob.in_words(job.defaults[knob.name]) if job else "pick a job"
            self.fields[knob.name].help_text = format_html(
                '{}Empty: the job\'s default, <span class="job-default" data-policy="{}">{}'
                "</span>.",
                f"{knob.help_text} " if knob.help_text else "",
                knob.name,
                default,
            )

    # --- validation ---

    def clean_task(self) -> str:
        name: str = self.cleaned_data["task"]
        if name not in self.jobs:
            raise ValidationError(
                f"{name} is not a registered job: pick one of the list "
                "(a schedule of a job that no longer exists can still be disabled or deleted)."
            )
        return name

    def clean_queue(self) -> str | None:
        queue: str | None = (self.cleaned_data.get("queue") or "").strip() or None
        if queue is None:
            return None
        if self.instance.pk and queue == self.instance.queue:
            return queue  # kept as it was: an edit of something else is not held up by it
        try:
            live = presence.live_queues()
        except redis.RedisError as exc:  # beat cannot send anything either; do not block edits
            logger.warning("could not read the workers' queues from Redis: %s", exc)
            return queue
        if queue not in live:
            consumed = ", ".join(sorted(live)) or "none: no worker is online"
            raise ValidationError(
                f"No live worker consumes the queue {queue!r}, so its runs would wait there "
                f"unseen (queues consumed now: {consumed}). Start a worker with "
                f"`celery -A config worker -Q {queue}`, or choose default (the job's own queue)."
            )
        return queue

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        name = data.get("task")
        if name in self.jobs:
            self.check_arguments(name, data)
        self._check_time_limits(data)
        if data.get("enabled"):
            self._check_runs(data)
        return data

    def _check_runs(self, data: dict[str, Any]) -> None:
        """An enabled schedule that would never run, or run at once only because it is late."""
        now = timezone.now()
        expires = data.get("expires")
        if expires is not None and expires <= now:
            self.add_error(
                "expires",
                f"It expired at {local_text(expires)}: enabled, it would never run. Clear or "
                "move the expiry, or untick Enabled.",
            )
        clocked = data.get("clocked") if data.get("kind") == "clocked" else None
        if clocked is not None and clocked.clocked_time <= now:
            self.add_error(
                "clocked",
                f"{local_text(clocked.clocked_time)} has passed: saved enabled, it would run at "
                "once. Pick a clocked time in the future, or untick Enabled.",
            )

    def _check_time_limits(self, data: dict[str, Any]) -> None:
        job = self.jobs.get(data.get("task") or "")
        if job is None or "soft_time_limit" in self.errors or "time_limit" in self.errors:
            return  # no job, or a limit already said to be out of its bounds
        soft = data.get("soft_time_limit") or job.defaults["soft_time_limit"]
        hard = data.get("time_limit") or job.defaults["time_limit"]
        if soft and hard and soft >= hard:
            field = "soft_time_limit" if data.get("soft_time_limit") else "time_limit"
            self.add_error(
                field,
                f"The soft time limit ({soft:g} s) must be below the hard time limit "
                f"({hard:g} s), or the job is killed before it can clean up.",
            )

    def validate_unique(self) -> None:
        # Not PeriodicTask.validate_unique: it also demands exactly one schedule kind, which
        # clean() already reported field by field. The name is the one unique field.
        name = self.cleaned_data.get("name")
        taken = PeriodicTask.objects.filter(name=name).exclude(pk=self.instance.pk).exists()
        if name and taken:
            self.add_error("name", f"A schedule named {name!r} already exists.")

    # --- saving ---

    @property
    def enabling(self) -> bool:
        """An existing schedule goes from disabled to enabled."""
        return bool(self.instance.pk) and "enabled" in self.changed_data and self.instance.enabled

    @property
    def timing_changed(self) -> bool:
        fields = ("kind", *CRONTAB_FIELDS, "timezone", *KIND_FIELDS)
        return bool(self.instance.pk) and any(f in self.changed_data for f in fields)

    def save(self, commit: bool = True) -> Schedule:
        task = super().save(commit=False)
        data = self.cleaned_data
        kind = data["kind"]
        for other in KIND_FIELDS:
            if other != kind:
                setattr(task, other, None)
        task.crontab = (
            get_crontab(" ".join(self.crontab_fields().values()), data["timezone"])
            if kind == "crontab"
            else None
        )
        if self.enabling or (task.enabled and self.timing_changed):
            # Beat counts from last_run_at, falling back to the last edit; an empty or old value
            # makes a slot that has passed today fire at once. From now: the next slot.
            task.last_run_at = timezone.now()
        if commit:
            task.save()
            self._save_m2m()
        return task

    def _save_m2m(self) -> None:
        super()._save_m2m()  # type: ignore[misc]
        if self.can_edit_policy:
            self.save_policy(self.instance)

    def save_policy(self, task: PeriodicTask) -> None:
        services.set_policy(task, {field: self.cleaned_data.get(field) for field in POLICY_FIELDS})

    def change_message(self) -> str:
        """The history line of this edit (call after saving)."""
        return history.describe_changes(self.before, history.snapshot(self.instance))
