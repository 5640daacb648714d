"""The maintenance jobs, run by a real worker as an operator would run them by hand."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core.cache import cache

from config.celery import app
from devtools.redis_server import free_port
from jobs.health import JOB_HEALTH_KEY
from jobs.models import Backup, Report
from scheduler.models import JobRun
from tests.processes import Process, child_env, final_run, start_worker, wait_for
from tests.smtp_server import Inbox

pytestmark = pytest.mark.e2e


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def worker(processes: list[Process], tmp_path: Path, inbox: Inbox) -> Process:
    env = child_env(
        {
            "BACKUP_DIR": str(tmp_path / "backups"),
            "EMAIL_URL": f"smtp://127.0.0.1:{inbox.port}",
            "REPORT_RECIPIENTS": "ops@example.com",
        }
    )
    process = start_worker("maintenance-worker", env, concurrency=1)
    processes.append(process)
    return process


def result(run: JobRun) -> dict[str, Any]:
    assert isinstance(run.result, dict), run.result
    return run.result


def test_each_maintenance_job_runs_on_a_real_worker(
    worker: Process, tmp_path: Path, inbox: Inbox
) -> None:
    backup_run = final_run(app.send_task("jobs.backup_database").id, timeout=90)
    assert backup_run.status == "succeeded", backup_run.error_message
    backup = Backup.objects.get()
    assert backup.verified and backup.pk == result(backup_run)["backup_id"]
    path = Path(backup.path)
    assert path.parent == tmp_path / "backups"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    report_run = final_run(app.send_task("jobs.daily_report").id, timeout=90)
    assert report_run.status == "succeeded", report_run.error_message
    report = Report.objects.get()
    assert result(report_run)["emailed_to"] == ["ops@example.com"]
    [received] = wait_for(lambda: inbox.messages, 10, "the report email")
    assert received.rcpt_tos == ["ops@example.com"]
    assert f"{report.day:%Y-%m-%d}" in str(received.message["Subject"])
    # The latest verified backup is in the report.
    assert path.name in report.text

    cache.delete(JOB_HEALTH_KEY)
    refresh_run = final_run(app.send_task("jobs.refresh_cache").id, timeout=90)
    assert refresh_run.status == "succeeded", refresh_run.error_message
    assert JOB_HEALTH_KEY in result(refresh_run)["refreshed"]
    summary = cache.get(JOB_HEALTH_KEY)
    assert "jobs.backup_database" in {job["job"] for job in summary["jobs"]}

    housekeeping_run = final_run(app.send_task("jobs.housekeeping").id, timeout=90)
    assert housekeeping_run.status == "succeeded", housekeeping_run.error_message
    assert result(housekeeping_run)["runs"] == 0  # nothing is older than JOB_HISTORY_DAYS
