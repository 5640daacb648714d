"""System checks (`manage.py check`, and every worker at start): run policies this deployment
cannot honour, caught before a job runs rather than while it does."""

from __future__ import annotations

from typing import Any

from django.core import checks

from scheduler.policy import KNOBS
from scheduler.selectors import registered_jobs

LIMIT_EXCEEDED = "scheduler.E001"


@checks.register()
def job_policy_limits(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A job registered in code whose run policy is out of its knob's bounds (scheduler.policy)."""
    errors: list[checks.CheckMessage] = []
    for name, job in registered_jobs().items():
        for knob in KNOBS:
            value, most = job.defaults[knob.name], knob.limit()
            if not knob.problem(value):
                continue
            if most is None or knob.most is None or value <= most:  # not the settings' bound
                errors.append(
                    checks.Error(
                        f"Job {name} has {knob.name}={value}: {knob.problem(value)}",
                        hint=f"Change the {knob.name} that {name} declares.",
                        id=LIMIT_EXCEEDED,
                    )
                )
                continue
            errors.append(
                checks.Error(
                    f"Job {name} has {knob.name}={value:g} s, above {knob.most}={most} s.",
                    hint=(
                        f"Lower the {knob.name} of {name} to at most {most} s, or raise "
                        f"{knob.most} to at least {value:g} s: the broker hands a job still "
                        f"running after {knob.most} + 1 h to a second worker."
                    ),
                    id=LIMIT_EXCEEDED,
                )
            )
    return errors
