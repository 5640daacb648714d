"""`make run` (bin/run.py) gives Flower a generated login in the env file the first time, printed
that once, and never replaces one that is set."""

from __future__ import annotations

import importlib.util
import re
import stat
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make_run(monkeypatch: pytest.MonkeyPatch, env_file: Path) -> ModuleType:
    monkeypatch.setenv("ENV_FILE", str(env_file))
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    monkeypatch.delenv("FLOWER_URL", raising=False)
    spec = importlib.util.spec_from_file_location("make_run", ROOT / "bin" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_login_is_generated_once_and_printed_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=x\n#FLOWER_BASIC_AUTH=admin:CHANGE-ME\n")
    env_file.chmod(0o600)
    run = make_run(monkeypatch, env_file)

    run.ensure_flower_credentials()
    written = env_file.read_text()
    [password] = re.findall(r"^FLOWER_BASIC_AUTH=admin:(\S+)$", written, re.M)
    assert len(password) >= 20
    assert "FLOWER_URL=http://127.0.0.1:5555/" in written.splitlines()
    assert f"user admin, password {password}" in capsys.readouterr().out
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    run.ensure_flower_credentials()
    assert env_file.read_text() == written, "the login is kept"
    assert capsys.readouterr().out == "", "and not printed again"


def test_a_login_already_set_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("FLOWER_BASIC_AUTH=ops:chosen\n")
    make_run(monkeypatch, env_file).ensure_flower_credentials()
    assert env_file.read_text() == "FLOWER_BASIC_AUTH=ops:chosen\n"

    other = tmp_path / "other.env"
    run = make_run(monkeypatch, other)
    monkeypatch.setenv("FLOWER_BASIC_AUTH", "ops:from-the-environment")
    run.ensure_flower_credentials()
    assert not other.exists()
    assert capsys.readouterr().out == ""
