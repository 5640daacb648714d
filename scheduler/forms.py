"""The schedule form of the admin: the job from the registered ones, its arguments checked against
the job's signature, the crontab typed on the page, and the per-schedule run-policy overrides."""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, cast
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib.admin.widgets import AdminSplitDateTime
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.models import (
    ClockedSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from config.sentry import looks_secret
from scheduler.describe import (
    CRONTAB_FIELDS,
    CrontabError,
    check_crontab_field,
    crontab_in_words,
    local_text,
    parse_crontab,
    schedule_in_words,
)
from scheduler.models import Schedule, SchedulePolicy
from scheduler.sync import get_crontab, registered_tasks
from scheduler.timing import Timing, next_fire_times

KINDS = [
    ("crontab", "crontab"),
    ("interval", "interval"),
    ("solar", "solar event"),
    ("clocked", "clocked (once, at a given time)"),
]
KIND_FIELDS = ("interval", "solar", "clocked")  # the kinds chosen with a select
POLICY_FIELDS = ("overlap", "soft_time_limit", "time_limit", "max_retries", "start_deadline")


# --- The registered jobs ----------------------------------------------------------------------


@dataclass(frozen=True)
class JobInfo:
    """What the schedule page shows about a job: its description, parameters and run policy."""

    name: str
    description: str
    parameters: str
    defaults: dict[str, Any]


def _parameters(task: Any) -> str:
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return "unknown"
    words = [
        p.name if p.default is p.empty else f"{p.name}={p.default!r}"
        for p in params
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    return ", ".join(words) or "none"


def _job_info(name: str, task: Any, conf: Any) -> JobInfo:
    doc = inspect.getdoc(task) or ""
    return JobInfo(
        name=name,
        description=doc.strip().splitlines()[0] if doc.strip() else "",
        parameters=_parameters(task),
        defaults={
            "overlap": getattr(task, "overlap", "skip"),
            "soft_time_limit": task.soft_time_limit or conf.task_soft_time_limit,
            "time_limit": task.time_limit or conf.task_time_limit,
            "max_retries": task.max_retries,
            "start_deadline": getattr(task, "start_deadline", None),
        },
    )


def registered_jobs() -> dict[str, JobInfo]:
    """Every job a worker can run, by name (Celery's own helper tasks left out)."""
    from config.celery import app

    names = sorted(name for name in registered_tasks() if not name.startswith("celery."))
    return {name: _job_info(name, app.tasks[name], app.conf) for name in names}


def default_text(field: str, value: Any) -> str:
    """A job's default for a policy field in words: '3600 s', 'skip', 'until the next slot'."""
    if value is None:
        return {
            "start_deadline": "until the next slot",
            "max_retries": "no limit",
        }.get(field, "none")
    if field in ("soft_time_limit", "time_limit", "start_deadline"):
        return f"{value:g} s" if isinstance(value, float) else f"{value} s"
    return str(value)


def job_catalog() -> dict[str, dict[str, Any]]:
    """The registered jobs as the page's script reads them (description, defaults in words)."""
    return {
        name: {
            **asdict(info),
            "defaults": {k: default_text(k, v) for k, v in info.defaults.items()},
        }
        for name, info in registered_jobs().items()
    }


def check_arguments(
    name: str, task: Any, args: list[Any], kwargs: dict[str, Any]
) -> tuple[str, str] | None:
    """None if the job accepts these arguments, else (the form field at fault, what is wrong)."""
    try:
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):  # nothing to check against
        return None
    params = signature.parameters
    named = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes = f"{name} takes {', '.join(named) if named else 'no arguments'}"
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [key for key in kwargs if key not in named]
        if unknown:
            return "kwargs", f"Unknown argument {unknown[0]!r}: {takes}."
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        missing = re.search(r"missing a required argument: '([^']+)'", str(exc))
        if missing:
            return "kwargs", f"Missing required argument {missing[1]!r}: {takes}."
        field = "args" if "positional" in str(exc) else "kwargs"
        return field, f"{str(exc).capitalize()}: {takes}."
    return None


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
            if not data.get("timezone"):
                self.add_error("timezone", "Pick the time zone the crontab counts in.")
        elif kind in KIND_FIELDS and not data.get(kind):
            self.add_error(kind, f"Pick the {kind} schedule to use (or choose another kind).")
        for other in KIND_FIELDS:
            if other != kind and data.get(other):
                self.add_error(
                    other,
                    "Only one schedule kind can be set: clear this, "
                    f"or choose {other} as the kind.",
                )
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


def _policy_help(field: str) -> str:
    return str(cast(models.Field[Any, Any], SchedulePolicy._meta.get_field(field)).help_text)


def _policy_field(field: str, min_value: int) -> forms.IntegerField:
    model_field = cast(models.Field[Any, Any], SchedulePolicy._meta.get_field(field))
    return forms.IntegerField(
        required=False,
        min_value=min_value,
        label=str(model_field.verbose_name).capitalize(),
        help_text=str(model_field.help_text),
    )


def _masked_json(text: str | None) -> str:
    """JSON arguments for the history, with the values of secret-looking keys hidden."""
    try:
        value = json.loads(text or "null")
    except ValueError:
        return text or ""
    if isinstance(value, dict):
        value = {k: "***" if looks_secret(k) else v for k, v in value.items()}
    return json.dumps(value, sort_keys=True)


def _yes_no(value: Any) -> str:
    return "yes" if value else "no"


def snapshot(task: PeriodicTask) -> dict[str, str]:
    """What the history compares before and after an edit, as text."""
    policy = SchedulePolicy.objects.filter(periodic_task_id=task.pk).first() if task.pk else None
    values = {
        "name": task.name,
        "job": task.task,
        "description": task.description,
        "enabled": _yes_no(task.enabled),
        "schedule": schedule_in_words(task),
        "one-off": _yes_no(task.one_off),
        "start time": local_text(task.start_time) if task.start_time else "—",
        "expires": local_text(task.expires) if task.expires else "—",
        "args": _masked_json(task.args),
        "kwargs": _masked_json(task.kwargs),
        "_kwargs": task.kwargs or "",  # tells a change hidden by the mask
        "queue": task.queue or "—",
    }
    for field in POLICY_FIELDS:
        value = getattr(policy, field, None) if policy else None
        values[field.replace("_", " ")] = "job default" if value in (None, "") else str(value)
    return values


def describe_changes(before: dict[str, str], after: dict[str, str]) -> str:
    """'schedule: At 15:00 … → At 02:30 …; enabled: no → yes; description changed'."""
    parts = []
    for key, old in before.items():
        new = after.get(key, "")
        if old == new:
            continue
        if key.startswith("_"):
            if before.get(key[1:]) == after.get(key[1:]):
                parts.append(f"{key[1:]} changed")
        elif key == "description":
            parts.append("description changed")
        else:
            parts.append(f"{key}: {old or '—'} → {new or '—'}")
    return "; ".join(parts)


class ScheduleForm(TimingForm, forms.ModelForm[Schedule]):
    """Edits a schedule and its run policy; a crontab typed here is stored as a CrontabSchedule."""

    # The admin builds these from the model (with its add buttons and date widgets).
    interval = None  # type: ignore[assignment]
    solar = None  # type: ignore[assignment]
    clocked = None  # type: ignore[assignment]
    one_off = None  # type: ignore[assignment]
    start_time = None  # type: ignore[assignment]
    expires = None  # type: ignore[assignment]

    task = forms.ChoiceField(label="Job")
    overlap = forms.ChoiceField(
        required=False,
        choices=[("", "job default"), *SchedulePolicy.Overlap.choices],
        label="Overlap",
    )
    soft_time_limit = _policy_field("soft_time_limit", 1)
    time_limit = _policy_field("time_limit", 1)
    max_retries = _policy_field("max_retries", 0)
    start_deadline = _policy_field("start_deadline", 1)

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        task: PeriodicTask = self.instance
        self.jobs = registered_jobs()
        choices = [(name, name) for name in self.jobs]
        if task.task and task.task not in self.jobs:
            choices.append((task.task, f"{task.task} (not a registered job)"))
        cast(forms.ChoiceField, self.fields["task"]).choices = [("", "---------"), *choices]
        self.fields["task"].help_text = "The Celery task the schedule runs."
        self.before = snapshot(task) if task.pk else {}
        if task.pk:
            self._initial_from(task)
        self._show_job_defaults(self.jobs.get(task.task))
        if not self.can_edit_policy:
            for field in POLICY_FIELDS:
                self.fields[field].disabled = True

    def _initial_from(self, task: PeriodicTask) -> None:
        kind = next((k for k in ("crontab", *KIND_FIELDS) if getattr(task, f"{k}_id")), "crontab")
        self.initial["kind"] = kind
        if task.crontab_id:
            for field in CRONTAB_FIELDS:
                self.initial[field] = getattr(task.crontab, field)
            self.initial["timezone"] = str(task.crontab.timezone)
        policy = SchedulePolicy.objects.filter(periodic_task_id=task.pk).first()
        if policy is not None:
            for field in POLICY_FIELDS:
                value = getattr(policy, field)
                self.initial[field] = value if value not in (None, "") else None

    def _show_job_defaults(self, job: JobInfo | None) -> None:
        for field in POLICY_FIELDS:
            default = default_text(field, job.defaults[field]) if job else "pick a job"
            base = "" if field == "overlap" else _policy_help(field) + " "
            self.fields[field].help_text = format_html(
                '{}Empty: the job\'s default, <span class="job-default" data-policy="{}">{}'
                "</span>.",
                base,
                field,
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
        return json.dumps(self._json("args", list, '["a", 2]'))

    def clean_kwargs(self) -> str:
        return json.dumps(self._json("kwargs", dict, '{"day": "2026-01-31"}'))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        name = data.get("task")
        if name in self.jobs and "args" in data and "kwargs" in data:
            from config.celery import app

            problem = check_arguments(
                name, app.tasks[name], json.loads(data["args"]), json.loads(data["kwargs"])
            )
            if problem:
                self.add_error(*problem)
        self._check_time_limits(data)
        return data

    def _check_time_limits(self, data: dict[str, Any]) -> None:
        job = self.jobs.get(data.get("task") or "")
        if job is None:
            return
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
        values = {field: self.cleaned_data.get(field) for field in POLICY_FIELDS}
        values["overlap"] = values["overlap"] or ""
        if not any(v not in (None, "") for v in values.values()):
            SchedulePolicy.objects.filter(periodic_task_id=task.pk).delete()
            return
        SchedulePolicy.objects.update_or_create(periodic_task_id=task.pk, defaults=values)

    def change_message(self) -> str:
        """The history line of this edit (call after saving)."""
        return describe_changes(self.before, snapshot(self.instance))
