"""Fixtures of the schedule admin's tests: users of its two groups, and the broker's queue."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from scheduler.redis_client import client as redis_client
from tests.factories import user_in


@pytest.fixture
def editor() -> User:
    return user_in("Schedule editors", "erin")


@pytest.fixture
def editor_client(client: Client, editor: User) -> Client:
    client.force_login(editor)
    return client


@pytest.fixture
def viewer_client(client: Client) -> Client:
    client.force_login(user_in("Viewers", "vic"))
    return client


@pytest.fixture
def broker() -> Any:
    """The suite's Redis (Celery's broker), empty before and after the test."""
    redis = redis_client()
    redis.flushdb()
    yield redis
    redis.flushdb()
