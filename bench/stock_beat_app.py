"""`celery -A bench.stock_beat_app beat -S django_celery_beat.schedulers:DatabaseScheduler`.

The stock contender of bench/beat.py: a plain Celery app configured from Django's settings,
without config.celery (its task class and logging hook). Django's set-up still runs the
`scheduler` app's ready(), which connects Nightshift's Celery signal receivers; they are
disconnected again here, so the run measures django-celery-beat as shipped. At beat_init the
app prints one `bench-stock-check:` line to its log: the scheduler class it got, any of its
methods that comes from neither Celery nor django-celery-beat, and any project receiver left.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import django
from celery import Celery, signals
from celery.utils.dispatch import Signal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

__all__ = ["app", "project_receivers", "strip_project_receivers"]

PROJECT_PACKAGES = ("config", "scheduler", "jobs")
STOCK_MODULES = ("celery.beat", "django_celery_beat.schedulers")
# The scheduler methods a beat engine would replace.
CHECKED_METHODS = (
    "tick",
    "apply_entry",
    "apply_async",
    "send_task",
    "setup_schedule",
    "all_as_schedule",
    "schedule_changed",
    "reserve",
    "sync",
    "populate_heap",
    "schedules_equal",
    "is_due",
)

app = Celery("stock")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _celery_signals() -> list[tuple[str, Signal]]:
    return [
        (name, value)
        for name in signals.__all__
        if isinstance(value := getattr(signals, name, None), Signal)
    ]


def _is_project(receiver: Any) -> bool:
    if isinstance(receiver, weakref.ReferenceType):
        receiver = receiver()
    module = getattr(receiver, "__module__", None) or ""
    return module.split(".")[0] in PROJECT_PACKAGES


def project_receivers() -> list[str]:
    """'signal: module.function' for every Celery signal receiver defined in the project."""
    found = []
    for name, signal in _celery_signals():
        for _key, receiver in signal.receivers:
            target = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
            if target is not None and _is_project(target):
                found.append(f"{name}: {target.__module__}.{target.__qualname__}")
    return found


def strip_project_receivers() -> None:
    """Disconnect every Celery signal receiver defined in config/, scheduler/ or jobs/."""
    for _name, signal in _celery_signals():
        signal.receivers[:] = [r for r in signal.receivers if not _is_project(r[1])]
        getattr(signal, "sender_receivers_cache", {}).clear()


def _foreign_methods(scheduler: Any) -> list[str]:
    foreign = [
        f"{name} (set on the instance)" for name in CHECKED_METHODS if name in vars(scheduler)
    ]
    for name in CHECKED_METHODS:
        method = getattr(type(scheduler), name, None)
        module = getattr(method, "__module__", None)
        if method is not None and module not in STOCK_MODULES:
            foreign.append(f"{name} (from {module})")
    return foreign


@signals.beat_init.connect
def _check(sender: Any = None, **kwargs: Any) -> None:
    scheduler = sender.scheduler
    cls = f"{type(scheduler).__module__}.{type(scheduler).__qualname__}"
    patched = ", ".join(_foreign_methods(scheduler)) or "none"
    left = ", ".join(project_receivers()) or "none"
    print(
        f"bench-stock-check: scheduler={cls}; foreign methods: {patched}; "
        f"project receivers: {left}",
        flush=True,
    )


strip_project_receivers()
