"""A schedule's arguments against its job: bound to the signature, each value checked against
the parameter's type annotation, and the whole capped in size.

A schedule's args and kwargs are JSON, so a job receives strings, numbers, booleans, null, lists
and dicts. A job that takes a date declares it `IsoDate` (a str holding YYYY-MM-DD: what JSON
carries, named for what it means), a moment `IsoDateTime`. Checked: str, int, float, bool, None,
IsoDate, IsoDateTime, list[X], dict[str, X], unions (X | None) and Literal; anything else (Any,
no annotation, other classes) is accepted as it is.

The one check the schedule form and beat share: beat checks every schedule it loads (cached
per job and argument text), and records one whose arguments no longer fit its job as broken
instead of sending it (scheduler.broken).
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from datetime import date, datetime
from typing import Any, Literal, NewType, Union

from celery import current_app

from scheduler.selectors import registered_tasks

IsoDate = NewType("IsoDate", str)
IsoDateTime = NewType("IsoDateTime", str)

# The most JSON a schedule's args and kwargs may hold together: they travel with every run and
# show on every page of the schedule.
MAX_ARGUMENTS_BYTES = 10_000


def size_problem(args: Any, kwargs: Any) -> str:
    """Why args and kwargs are too big to store ('' when they fit)."""
    size = len(json.dumps(args).encode()) + len(json.dumps(kwargs).encode())
    if size <= MAX_ARGUMENTS_BYTES:
        return ""
    return (
        f"The arguments are {size:,} bytes of JSON; the most is {MAX_ARGUMENTS_BYTES:,}: "
        "pass a name or an id the job looks up instead."
    )


def check_arguments(job_name: str, args: list[Any], kwargs: dict[str, Any]) -> list[str]:
    """What is wrong with calling the job `job_name` with these arguments ([] when nothing)."""
    too_big = size_problem(args, kwargs)
    if too_big:
        return [too_big]
    task = current_app.tasks.get(job_name)
    if task is None and job_name in registered_tasks():  # discovered on demand (admin, shell)
        task = current_app.tasks[job_name]
    if task is None:
        return [f"{job_name} is not a registered job."]
    try:
        signature = inspect.signature(task.run)
    except (TypeError, ValueError):  # nothing to check against
        return []
    params = signature.parameters
    named = [p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes = f"{job_name} takes {', '.join(named) if named else 'no arguments'}"
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [key for key in kwargs if key not in named]
        if unknown:
            return [f"Unknown argument {unknown[0]!r}: {takes}."]
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        missing = re.search(r"missing a required argument: '([^']+)'", str(exc))
        if missing:
            return [f"Missing required argument {missing[1]!r}: {takes}."]
        return [f"{str(exc).capitalize()}: {takes}."]
    try:
        hints = typing.get_type_hints(task.run)
    except Exception:  # an annotation that does not resolve: check nothing rather than guess
        return []
    errors = []
    for name, value in bound.arguments.items():
        kind = params[name].kind
        if name not in hints or kind in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD):
            continue
        expected = _expected(hints[name], value)
        if expected:
            errors.append(f"{name}: expected {expected}, got {_shown(value)}")
    return errors


def _expected(hint: Any, value: Any) -> str:
    """'' if `value` fits the annotation `hint`, else what was expected, in words."""
    origin, parts = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        wanted = [_expected(part, value) for part in parts]
        return "" if "" in wanted else " or ".join(wanted)
    if origin is Literal:
        return "" if value in parts else "one of " + ", ".join(_shown(p) for p in parts)
    if hint is IsoDate:
        return "" if _parses(date.fromisoformat, value, 10) else "a date as YYYY-MM-DD"
    if hint is IsoDateTime:
        moment = "a date and time as YYYY-MM-DDTHH:MM:SS+08:00"
        return "" if _parses(datetime.fromisoformat, value, 19) else moment
    if hint in (date, datetime):
        return f"a {hint.__name__}, which a schedule's JSON arguments cannot carry"
    if hint is type(None) or hint is None:
        return "" if value is None else "null"
    if hint is bool:
        return "" if isinstance(value, bool) else "true or false"
    if hint is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if hint is float:
        return "" if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if hint is str:
        return "" if isinstance(value, str) else "a string"
    if hint is list or origin is list:
        if not isinstance(value, list):
            return "a JSON list"
        return next((f"a list whose every item is {e}" for e in _each(parts, value) if e), "")
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            return "a JSON object"
        each = _each(parts[1:], list(value.values()))
        return next((f"an object whose every value is {e}" for e in each if e), "")
    return ""  # Any, or a type JSON has no word for: not checked


def _each(parts: tuple[Any, ...], items: list[Any]) -> list[str]:
    return [_expected(parts[0], item) for item in items] if parts else []


def _parses(parse: Any, value: Any, least: int) -> bool:
    if not isinstance(value, str) or len(value) < least:
        return False
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
