"""Fixtures of the backup tests: where backups go, and a site's worth of rows to back up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.factories import sample_site


@pytest.fixture
def backup_dir(tmp_path: Path, settings: Any) -> Path:
    settings.BACKUP_DIR = tmp_path / "backups"
    return tmp_path / "backups"


@pytest.fixture
def sample_data() -> None:
    """What a site holds: users, run history with results and tracebacks, schedules."""
    sample_site()
