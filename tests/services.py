"""Pytest plugin (loaded with `-p tests.services`): the services the suite owns.

It runs before pytest-django reads the settings, so the settings see the private Redis:
a `redis-server` on a free loopback port, started for this session and stopped after it.
It also pins the environment the suite runs in, so a developer's `.env` does not leak in.

The broker is that Redis, unless `TEST_BROKER_URL` names a RabbitMQ (`amqp://…/VHOST`, a vhost
of the suite's own: `.ci/run` creates one for its RabbitMQ pass, and every queue in it is
purged around each end-to-end test). Tests marked `rabbitmq` run only then, and are
deselected, counted in the summary, otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

from devtools import redis_server

ROOT = Path(__file__).resolve().parent.parent

_redis: subprocess.Popen[bytes] | None = None
_tmp_dir: str | None = None


def _start_redis() -> str:
    global _redis, _tmp_dir
    binary = shutil.which("redis-server")
    if binary is None:
        raise pytest.UsageError(
            "redis-server is not installed; the suite starts its own. "
            "Install it: apt-get install redis-server"
        )
    _tmp_dir = tempfile.mkdtemp(prefix="nightshift-test-")
    port = redis_server.free_port()
    try:
        _redis = redis_server.start(binary, port, Path(_tmp_dir) / "redis")
    except RuntimeError as error:
        raise pytest.UsageError(f"the suite's {error}") from error
    return f"redis://127.0.0.1:{port}/0"


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    os.environ["ENV_FILE"] = os.devnull  # ignore a developer's .env
    os.environ["SECRET_KEY"] = "test-secret-key-not-for-production-" + "x" * 20
    os.environ["DEBUG"] = "false"
    os.environ["SECURE_SSL_REDIRECT"] = "false"
    os.environ.pop("SENTRY_DSN", None)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ["REDIS_URL"] = _start_redis()
    os.environ["BROKER_URL"] = os.environ.get("TEST_BROKER_URL", "")  # empty: REDIS_URL
    assert _tmp_dir is not None
    # Production's manifest storage, filled once per session by the `static_files` fixture.
    os.environ["STATIC_ROOT"] = os.path.join(_tmp_dir, "static")
    return (yield)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "rabbitmq: needs RabbitMQ as the broker (TEST_BROKER_URL=amqp://…)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"broker: {'RabbitMQ' if settings.BROKER_IS_RABBITMQ else 'Redis'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.BROKER_IS_RABBITMQ:
        return
    deselected = [item for item in items if item.get_closest_marker("rabbitmq")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("rabbitmq")]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _redis is not None and _redis.poll() is None:
        _redis.terminate()
        _redis.wait(timeout=10)
    if _tmp_dir is not None:
        shutil.rmtree(_tmp_dir, ignore_errors=True)
