"""`celery -A tests.e2e_redelivery_app worker`: the project's app, whose Redis hands a message
taken by a worker that died to another worker after 20 s instead of hours (the broker's
visibility timeout, LONGEST_JOB_SECONDS + 1 h in production), looking every second.

For drills that need the late redelivery of a lost run's message within the test's time. It
runs the test jobs of tests.e2e_app too.
"""

from __future__ import annotations

from tests.e2e_app import app

__all__ = ["app"]

app.conf.broker_transport_options = {
    **(app.conf.broker_transport_options or {}),
    "visibility_timeout": 20,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
