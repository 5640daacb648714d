from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command

from tests.processes import Process
from tests.sentry_server import SentryServer


@pytest.fixture(scope="session", autouse=True)
def static_files() -> None:
    """Collect static files as a deploy does, so pages render with the manifest storage."""
    call_command("collectstatic", "--noinput", verbosity=0)


@pytest.fixture
def sentry_server() -> Iterator[SentryServer]:
    server = SentryServer()
    yield server
    server.close()


@pytest.fixture
def processes(transactional_db: None) -> Iterator[list[Process]]:
    """Worker/beat processes a test starts; stopped before the test database is flushed.

    The suite's Redis is emptied around each such test, and a RabbitMQ broker's queues before
    it: messages a beat queued for one test must not be run by the next test's worker.
    """
    from scheduler.redis_client import client as redis_client
    from tests import broker

    redis_client().flushdb()
    broker.purge()
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()
    redis_client().flushdb()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    # A failed end-to-end test shows what its worker and beat logged.
    started = getattr(item, "funcargs", {}).get("processes") or []
    if report.when == "call" and report.failed:
        for process in started:
            report.sections.append((f"log of {process.name}", process.log()[-20000:]))
    return report
