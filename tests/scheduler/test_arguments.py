"""scheduler.arguments: a schedule's arguments checked against its job's signature, annotations
and the size cap, with messages that name the argument."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from config.celery import app
from scheduler.arguments import MAX_ARGUMENTS_BYTES, IsoDate, IsoDateTime, check_arguments


@app.task(name="tests.typed")
def typed_job(
    day: IsoDate,
    at: IsoDateTime | None = None,
    count: int = 1,
    ratio: float = 1.0,
    dry_run: bool = False,
    mode: Literal["fast", "full"] = "fast",
    tables: list[str] | None = None,
    limits: dict[str, int] | None = None,
    extra: Any = None,
) -> None:
    """A job with one parameter of each kind the checker knows."""


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ([], {"day": "2026-01-31"}),
        (["2026-01-31", "2026-01-31T07:15:00+08:00", 3, 2], {}),
        (
            [],
            {
                "day": "2026-01-31",
                "at": None,
                "ratio": 0.5,
                "dry_run": True,
                "mode": "full",
                "tables": ["a", "b"],
                "limits": {"a": 1},
                "extra": {"anything": [1, "x"]},
            },
        ),
    ],
)
def test_arguments_that_fit_the_annotations_pass(args: list[Any], kwargs: dict[str, Any]) -> None:
    assert check_arguments("tests.typed", args, kwargs) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"day": 5}, "day: expected a date as YYYY-MM-DD, got 5"),
        ({"day": "31/01/2026"}, 'day: expected a date as YYYY-MM-DD, got "31/01/2026"'),
        (
            {"at": "2026-01-31"},
            'at: expected a date and time as YYYY-MM-DDTHH:MM:SS+08:00 or null, got "2026-01-31"',
        ),
        ({"count": "3"}, 'count: expected a whole number, got "3"'),
        ({"count": True}, "count: expected a whole number, got true"),
        ({"ratio": "half"}, 'ratio: expected a number, got "half"'),
        ({"dry_run": "yes"}, 'dry_run: expected true or false, got "yes"'),
        ({"mode": "slow"}, 'mode: expected one of "fast", "full", got "slow"'),
        ({"tables": "a,b"}, 'tables: expected a JSON list or null, got "a,b"'),
        (
            {"tables": ["a", 2]},
            'tables: expected a list whose every item is a string or null, got ["a", 2]',
        ),
        (
            {"limits": {"a": "1"}},
            "limits: expected an object whose every value is a whole number or null, "
            'got {"a": "1"}',
        ),
    ],
)
def test_a_value_that_does_not_fit_names_the_argument(kwargs: dict[str, Any], error: str) -> None:
    assert check_arguments("tests.typed", [], {"day": "2026-01-31", **kwargs}) == [error]


def test_every_wrong_argument_is_named() -> None:
    errors = check_arguments("tests.typed", [], {"day": 5, "count": "x"})
    assert errors == [
        "day: expected a date as YYYY-MM-DD, got 5",
        'count: expected a whole number, got "x"',
    ]


def test_a_positional_argument_is_named_by_its_parameter() -> None:
    assert check_arguments("tests.typed", [5], {}) == ["day: expected a date as YYYY-MM-DD, got 5"]


def test_the_daily_report_takes_its_day_as_an_iso_date() -> None:
    assert check_arguments("jobs.daily_report", [], {"day": "2026-01-31"}) == []
    assert check_arguments("jobs.daily_report", [], {"day": 5}) == [
        "day: expected a date as YYYY-MM-DD or null, got 5"
    ]


def test_names_are_checked_before_values() -> None:
    assert check_arguments("tests.typed", [], {"dya": "2026-01-31"}) == [
        "Unknown argument 'dya': tests.typed takes day, at, count, ratio, dry_run, mode, "
        "tables, limits, extra."
    ]
    assert check_arguments("tests.typed", [], {}) == [
        "Missing required argument 'day': tests.typed takes day, at, count, ratio, dry_run, "
        "mode, tables, limits, extra."
    ]


def test_arguments_above_the_size_cap_are_refused_with_their_size() -> None:
    big = "x" * MAX_ARGUMENTS_BYTES
    assert check_arguments("tests.typed", [], {"day": "2026-01-31", "extra": big}) == [
        "The arguments are 10,036 bytes of JSON; the most is 10,000: pass a name or an id the "
        "job looks up instead."
    ]


def test_an_unknown_job_is_said_so() -> None:
    assert check_arguments("jobs.nope", [], {}) == ["jobs.nope is not a registered job."]
