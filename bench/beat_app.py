"""`celery -A bench.beat_app beat -S django`: the project app plus `bench.noop`, the job
bench/beat.py's schedules name. Beat sends a schedule only when its job is registered and its
arguments fit (scheduler.arguments), as in a deploy, where beat runs the workers' code."""

from __future__ import annotations

from config.celery import app

__all__ = ["app"]


@app.task(name="bench.noop")
def noop() -> None:
    """Does nothing: the benchmark measures beat's sending, not the job."""
