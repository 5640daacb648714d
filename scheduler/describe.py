"""Schedules in plain words, crontab fields checked with messages a person can act on, and the
next fire times of a schedule (for the admin's list, change page and live preview)."""

from __future__ import annotations

import re
from datetime import tzinfo
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from cron_descriptor import ExpressionDescriptor, Options  # type: ignore[import-untyped]
from django.db.models import Model
from django_celery_beat import validators
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from scheduler.presentation import local_text

CRONTAB_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
RANGES = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day_of_month": (1, 31),
    "month_of_year": (1, 12),
    # Celery (unlike cron) has no 7 for Sunday: a 7 would make beat drop the schedule silently.
    "day_of_week": (0, 6),
}
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NAMES = {
    "day_of_week": {name: number for number, name in enumerate(_DAY_NAMES)},
    "month_of_year": {name: number for number, name in enumerate(_MONTH_NAMES, start=1)},
}
_BEAT_VALIDATORS = {
    "minute": validators.minute_validator,
    "hour": validators.hour_validator,
    "day_of_month": validators.day_of_month_validator,
    "month_of_year": validators.month_of_year_validator,
    "day_of_week": validators.day_of_week_validator,
}
_ITEM_RE = re.compile(r"^(?P<base>[^/]+)(?:/(?P<step>.*))?$")


class CrontabError(ValueError):
    """A crontab field that beat would reject or misread; the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _value(field: str, token: str) -> int:
    low, high = RANGES[field]
    names = _NAMES.get(field, {})
    word = token.lower()
    if word[:3] in names and (len(word) == 3 or word.isalpha()):
        return names[word[:3]]
    if not token.isdigit():
        hint = f" (or a name such as {next(iter(names))})" if names else ""
        raise CrontabError(field, f"{token!r} is not a number {low}-{high}{hint}")
    number = int(token)
    if not low <= number <= high:
        extra = " (0 is Sunday)" if field == "day_of_week" else ""
        raise CrontabError(field, f"{number} is out of range {low}-{high}{extra}")
    return number


def check_crontab_field(field: str, value: str) -> str:
    """The field's value without stray spaces; CrontabError says what is wrong with it."""
    low, high = RANGES[field]
    text = "".join(value.split())
    if not text:
        raise CrontabError(field, 'empty; use "*" for every value')
    for item in text.split(","):
        match = _ITEM_RE.match(item)
        if not item or match is None:
            raise CrontabError(field, f"empty item in {text!r}")
        base, step = match["base"], match["step"]
        if step is not None:
            if not step.isdigit() or not 1 <= int(step) <= high - low:
                raise CrontabError(field, f"step {step!r} must be a number 1-{high - low}")
            if base != "*" and "-" not in base:
                raise CrontabError(
                    field, f"a step needs a range: write {base}-{high}/{step} or */{step}"
                )
        if base == "*":
            continue
        ends = base.split("-")
        if len(ends) > 2:
            raise CrontabError(field, f"{base!r} is not a value or a range like 1-5")
        numbers = [_value(field, end) for end in ends]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            raise CrontabError(
                field,
                f"range {base} goes backwards; write it as {ends[0]}-{high},{low}-{ends[1]}",
            )
    # The same checks beat and the model apply, in case they know something this parser does not.
    try:
        crontab(**{field: text})
        _BEAT_VALIDATORS[field](text)
    except Exception as exc:
        raise CrontabError(field, str(getattr(exc, "message", exc))) from exc
    return text


def parse_crontab(fields: dict[str, str], tz: str) -> crontab:
    """A Celery crontab in `tz` from the five fields (already checked one by one)."""
    from django_celery_beat.tzcrontab import TzAwareCrontab

    cron: crontab = TzAwareCrontab(
        **{name: fields[name] for name in CRONTAB_FIELDS}, tz=ZoneInfo(tz)
    )
    return cron


def crontab_in_words(fields: dict[str, str], tz: str | tzinfo) -> str:
    """'At 15:00, every day (Asia/Shanghai)'; the expression itself if it cannot be described."""
    expression = " ".join(fields[name] or "*" for name in CRONTAB_FIELDS)
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        words = str(ExpressionDescriptor(expression, options).get_description())
    except Exception:  # the library raises its own exception types for odd but valid input
        words = expression
    else:
        every_day = all(fields[name] in ("*", "") for name in CRONTAB_FIELDS[2:])
        if every_day and fields["hour"] != "*":
            words += ", every day"
    return f"{words} ({tz})"


def schedule_in_words(task: PeriodicTask) -> str:
    """The schedule of a PeriodicTask in plain words, with its time zone."""
    for field in ("crontab", "interval", "solar", "clocked"):
        if getattr(task, f"{field}_id") and getattr(task, field) is not None:
            return timing_in_words(getattr(task, field))
    return "no schedule"


def timing_in_words(row: Model) -> str:
    """A timing row (crontab, interval, solar or clocked) in plain words, with its time zone."""
    if isinstance(row, CrontabSchedule):
        return crontab_in_words({name: getattr(row, name) for name in CRONTAB_FIELDS}, row.timezone)
    if isinstance(row, IntervalSchedule):
        return str(row).capitalize()
    if isinstance(row, SolarSchedule):
        return f"{row.get_event_display()} at {row.latitude}, {row.longitude}"
    if isinstance(row, ClockedSchedule):
        return f"Once, at {local_text(row.clocked_time)}"
    return str(row)
