from __future__ import annotations

import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

pytestmark = pytest.mark.django_db


def test_generates_an_admin_once_and_prints_a_working_password(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    call_command("ensure_admin")
    out = capsys.readouterr().out
    password = re.search(r"password: (\S+)", out)
    assert password, out
    assert authenticate(username="admin", password=password.group(1)) is not None

    call_command("ensure_admin")
    again = capsys.readouterr().out
    assert "password" not in again
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_uses_the_configured_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-and-unusual-passphrase")
    call_command("ensure_admin")
    user = authenticate(username="ops", password="a-long-and-unusual-passphrase")
    assert user is not None and user.is_superuser and user.is_staff


def test_half_configured_account_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DJANGO_SUPERUSER_PASSWORD"):
        call_command("ensure_admin")
    assert not get_user_model().objects.exists()
