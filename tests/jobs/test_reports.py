from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email.message import EmailMessage
from io import StringIO
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import time_machine
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from devtools.redis_server import free_port
from jobs.models import Backup, Report
from jobs.reports import daily_report
from scheduler.models import JobRun
from scheduler.reporting import run_admin_url
from tests.factories import create_run, create_runs, job_run
from tests.smtp_server import Inbox

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = date(2025, 3, 10)
SITE = "https://nightshift.example.com"
RECIPIENTS = ["ops@example.com", "dev@example.com"]
S = JobRun.Status


@pytest.fixture(autouse=True)
def site(settings: Any) -> None:
    settings.SITE_URL = SITE
    settings.REPORT_RECIPIENTS = []
    settings.ADMINS = []


@pytest.fixture
def smtp(settings: Any) -> Iterator[Inbox]:
    """A real SMTP server on loopback, and Django's SMTP backend pointed at it."""
    inbox = Inbox(port=free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = inbox.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 10
    settings.REPORT_RECIPIENTS = RECIPIENTS
    yield inbox
    controller.stop()


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=SHANGHAI)


def run(
    job: str, status: str, started_at: datetime, duration: float | None = None, **fields: Any
) -> JobRun:
    """A run from the job's default schedule (nightshift-backup-database): the report names it."""
    schedule = f"nightshift-{job.removeprefix('jobs.').replace('_', '-')}"
    return create_run(job, status, started_at, duration, schedule=schedule, **fields)


def make_day() -> dict[str, JobRun]:
    """Runs of DAY in Shanghai time, and failures just outside it; returns the day's failures."""
    # Not in duration order, so a percentile that follows insertion order would be caught.
    beats = [7, 3, 19, 1, 14, 20, 9, 5, 12, 16, 2, 18, 10, 6, 15, 11, 4, 17, 13, 8]
    for hour, seconds in enumerate(beats):  # the first at exactly 00:00:00
        run("jobs.heartbeat", S.SUCCEEDED, at(DAY, hour), float(seconds))
    run("jobs.backup_database", S.SUCCEEDED, at(DAY, 2, 30), 100.0)
    run("jobs.backup_database", S.RETRYING, at(DAY, 3), 5.0, error_type="OSError")
    failed = run(
        "jobs.backup_database",
        S.FAILED,
        at(DAY, 3, 1),
        30.0,
        attempt=2,
        error_type="OSError",
        error_message="disk full <script>alert(1)</script> & more",
    )
    timed_out = run(
        "jobs.backup_database",
        S.TIMED_OUT,
        at(DAY, 23, 59, 59, 999999),  # the last instant of the day
        3900.0,
        error_type="TimeLimitExceeded",
        error_message="killed at its hard time limit of 3900 s",
    )
    run("jobs.refresh_cache", S.SUCCEEDED, at(DAY, 5), 2.5)
    run("jobs.refresh_cache", S.SKIPPED_OVERLAP, at(DAY, 5, 10))
    run("jobs.refresh_cache", S.SKIPPED_DUPLICATE, at(DAY, 5, 20))
    run("jobs.refresh_cache", S.EXPIRED, at(DAY, 5, 30))
    lost = run(
        "jobs.refresh_cache", S.LOST, at(DAY, 6), error_type="RunLost", error_message="worker gone"
    )
    run("jobs.refresh_cache", S.RUNNING, at(DAY, 7))
    run("jobs.refresh_cache", S.CANCELLED, at(DAY, 7, 30), 12.0, cancelled_by="bob")
    run("jobs.daily_report", S.EXPIRED, at(DAY, 8))  # a job without any duration
    # Outside the day in Shanghai; 07:00 on the next day is still DAY in UTC.
    before, after = DAY - timedelta(days=1), DAY + timedelta(days=1)
    for started_at in (at(before, 23, 59, 59, 999999), at(after, 0), at(after, 7)):
        run("jobs.housekeeping", S.FAILED, started_at, 1.0, error_type="Outside")
    return {"failed": failed, "timed_out": timed_out, "lost": lost}


def parts(message: EmailMessage) -> tuple[str, str]:
    text = cast(EmailMessage, message.get_body(("plain",))).get_content()
    html = cast(EmailMessage, message.get_body(("html",))).get_content()
    return text, html


def test_the_figures_match_the_days_runs_in_shanghai_time() -> None:
    failures = make_day()

    result = daily_report(DAY)

    report = Report.objects.get(day=DAY)
    assert result.report_id == report.pk and result.emailed_to == []
    counts = (
        *("runs", "succeeded", "failed", "skipped", "retried", "running", "cancelled"),
        *("p50", "p95"),
    )
    # A cancelled run is neither a failure nor a skip; its duration counts.
    assert [(job["job"], *(job[k] for k in counts)) for job in report.data["jobs"]] == [
        ("jobs.backup_database", 4, 1, 2, 0, 1, 0, 0, 30.0, 3900.0),
        ("jobs.daily_report", 1, 0, 0, 1, 0, 0, 0, None, None),
        ("jobs.heartbeat", 20, 20, 0, 0, 0, 0, 0, 10.0, 19.0),
        ("jobs.refresh_cache", 7, 1, 1, 3, 0, 1, 1, 2.5, 12.0),
    ]
    assert report.data["totals"] == {
        "runs": 32,
        "succeeded": 22,
        "failed": 3,
        "skipped": 4,
        "retried": 1,
        "running": 1,
        "cancelled": 1,
    }
    shown = report.data["failures"]["shown"]
    assert [f["run_id"] for f in shown] == [
        failures["timed_out"].pk,
        failures["lost"].pk,
        failures["failed"].pk,
    ]
    assert report.data["failures"]["total"] == 3 and report.data["failures"]["more"] == 0
    assert shown[0] == {
        "run_id": failures["timed_out"].pk,
        "job": "jobs.backup_database",
        "schedule": "nightshift-backup-database",
        "status": "timed_out",
        "started_at": "2025-03-10T23:59:59.999999+08:00",
        "error_type": "TimeLimitExceeded",
        "error_message": "killed at its hard time limit of 3900 s",
        "url": f"{SITE}/admin/scheduler/jobrun/{failures['timed_out'].pk}/change/",
    }
    for failure in failures.values():
        assert f'href="{run_admin_url(failure.pk)}"' in report.html
        assert run_admin_url(failure.pk) in report.text
    # Times in Shanghai; the error text escaped in HTML and verbatim in plain text.
    assert "2025-03-10 23:59:59" in report.html and "2025-03-10 23:59:59" in report.text
    assert "disk full &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in report.html
    assert "<script>" not in report.html
    assert "disk full <script>alert(1)</script> & more" in report.text
    assert "Outside" not in report.html + report.text


def test_the_report_is_emailed_once_as_text_and_html(smtp: Inbox) -> None:
    failures = make_day()

    result = daily_report(DAY)

    assert result.emailed_to == RECIPIENTS
    (received,) = smtp.messages
    assert received.rcpt_tos == RECIPIENTS
    message = received.message
    assert message["Subject"] == "Nightshift daily report 2025-03-10: 3 failures"
    assert message["From"] == "nightshift@localhost"
    assert message["To"] == "ops@example.com, dev@example.com"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)
    link = run_admin_url(failures["failed"].pk)
    assert link in text and f'href="{link}"' in html
    assert "jobs.heartbeat: 20 runs, 20 succeeded" in text
    report = Report.objects.get(day=DAY)
    assert report.emailed_at is not None
    assert report.recipients == "ops@example.com, dev@example.com"
    # SMTP carries CRLF line ends; the content is the stored report.
    assert text.replace("\r\n", "\n") == report.text
    assert html.replace("\r\n", "\n") == report.html

    # A second run replaces the stored report and sends nothing.
    late = run("jobs.heartbeat", S.FAILED, at(DAY, 12, 30), 1.0, error_type="ValueError")
    again = daily_report(DAY)
    assert again.emailed_to == [] and again.not_emailed_because == "already emailed"
    assert len(smtp.messages) == 1
    stored = Report.objects.get()
    assert stored.pk == report.pk and stored.emailed_at == report.emailed_at
    assert stored.data["failures"]["total"] == 4
    assert run_admin_url(late.pk) in stored.text

    # force sends the current report again.
    forced = daily_report(DAY, force=True)
    assert forced.emailed_to == RECIPIENTS
    assert len(smtp.messages) == 2
    assert smtp.messages[1].message["Subject"] == "Nightshift daily report 2025-03-10: 4 failures"
    assert Report.objects.count() == 1


def test_without_report_recipients_it_goes_to_the_admins(smtp: Inbox, settings: Any) -> None:
    settings.REPORT_RECIPIENTS = []
    settings.ADMINS = [("Ops", "oncall@example.com")]

    daily_report(DAY)

    (received,) = smtp.messages
    assert received.rcpt_tos == ["oncall@example.com"]
    assert received.message["Subject"] == "Nightshift daily report 2025-03-10: no failures"
    assert Report.objects.get().recipients == "oncall@example.com"


def test_with_no_recipients_at_all_it_is_stored_and_a_warning_logged(
    smtp: Inbox, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REPORT_RECIPIENTS = []
    make_day()

    with caplog.at_level(logging.WARNING, logger="jobs.reports"):
        result = daily_report(DAY)

    assert result.emailed_to == [] and result.not_emailed_because == "no recipients"
    assert smtp.messages == []
    report = Report.objects.get()
    assert report.emailed_at is None and report.data["totals"]["runs"] == 32
    assert "REPORT_RECIPIENTS and ADMINS are empty" in caplog.text


def test_when_smtp_is_down_the_run_fails_and_the_next_one_sends(smtp: Inbox, settings: Any) -> None:
    make_day()
    settings.EMAIL_PORT = free_port()  # nothing listens there

    with pytest.raises(ConnectionRefusedError):
        daily_report(DAY)

    report = Report.objects.get()
    assert report.emailed_at is None and report.recipients == ""
    assert report.data["failures"]["total"] == 3

    settings.EMAIL_PORT = smtp.port
    result = daily_report(DAY)

    assert result.emailed_to == RECIPIENTS and len(smtp.messages) == 1
    assert Report.objects.get().emailed_at is not None


def test_the_failure_list_is_bounded() -> None:
    create_runs(
        job_run(
            task_id=f"t{i}",
            job="jobs.refresh_cache",
            trigger=JobRun.Trigger.SCHEDULE,
            started_at=at(DAY, 10) + timedelta(minutes=i),
            duration_seconds=1.0,
            status=S.FAILED,
            error_type="KeyError",
            error_message="x" * 1000,
        )
        for i in range(53)
    )

    daily_report(DAY)

    report = Report.objects.get()
    failures = report.data["failures"]
    assert (failures["total"], len(failures["shown"]), failures["more"]) == (53, 50, 3)
    assert failures["shown"][0]["started_at"] == "2025-03-10T10:52:00+08:00"
    assert len(failures["shown"][0]["error_message"]) == 300
    assert "and 3 more" in report.html and "and 3 more" in report.text


def test_yesterday_is_the_default_day_in_shanghai() -> None:
    make_day()
    # 00:30 on 11 March in Shanghai is still 10 March in UTC: yesterday is 10 March here.
    with time_machine.travel(at(DAY + timedelta(days=1), 0, 30), tick=False):
        result = daily_report()

    assert result.day == DAY
    report = Report.objects.get()
    assert report.day == DAY and report.data["totals"]["runs"] == 32
    assert report.data["generated_at"] == "2025-03-11T00:30:00+08:00"


def test_today_and_later_days_are_refused_and_nothing_is_stored() -> None:
    today = timezone.localdate()
    for day in (today, today + timedelta(days=1)):
        with pytest.raises(ValueError, match="the day must be before today"):
            daily_report(day)
    assert not Report.objects.exists()


def test_backup_status_shows_the_latest_verified_backup() -> None:
    now = timezone.now()

    def backup(name: str, age: timedelta, verified: bool, **fields: Any) -> Backup:
        return Backup.objects.create(
            created_at=now - age,
            path=f"/srv/backups/{name}",
            size_bytes=fields.pop("size_bytes", 1000),
            sha256="0" * 64,
            duration_seconds=60.0,
            engine=Backup.Engine.POSTGRESQL,
            verified=verified,
            **fields,
        )

    backup("old.dump", timedelta(days=2, hours=5), True)
    latest = backup("latest.dump", timedelta(hours=5, minutes=30), True, size_bytes=3 * 2**29)
    backup("newest.dump", timedelta(hours=1), False, verification="pg_restore: truncated file")

    daily_report(DAY)

    report = Report.objects.get()
    verified = report.data["backup"]["latest_verified"]
    assert verified["id"] == latest.pk and verified["size_bytes"] == 3 * 2**29
    assert verified["age_seconds"] == (report.created_at - latest.created_at).total_seconds()
    assert report.data["backup"]["newer_unverified"]["name"] == "newest.dump"
    expected = "Latest verified backup: latest.dump, 1.5 GB"
    assert expected in report.text and expected in report.html
    assert "(5 hours, 30 minutes before this report)" in report.text
    assert "Newer backup not verified: newest.dump" in report.text
    assert "pg_restore: truncated file" in report.html
    assert "NO VERIFIED BACKUP" not in report.text + report.html


def test_no_verified_backup_is_shown_loudly() -> None:
    Backup.objects.create(
        created_at=timezone.now(),
        path="/srv/backups/bad.dump",
        size_bytes=10,
        sha256="0" * 64,
        duration_seconds=1.0,
        engine=Backup.Engine.SQLITE,
        verified=False,
        verification="integrity_check failed",
    )

    daily_report(DAY)

    report = Report.objects.get()
    assert report.data["backup"]["latest_verified"] is None
    assert "NO VERIFIED BACKUP" in report.text and "NO VERIFIED BACKUP" in report.html
    assert "integrity_check failed" in report.text


def test_a_stale_backup_is_flagged() -> None:
    Backup.objects.create(
        created_at=timezone.now() - timedelta(days=3),
        path="/srv/backups/stale.dump",
        size_bytes=10,
        sha256="0" * 64,
        duration_seconds=1.0,
        engine=Backup.Engine.SQLITE,
        verified=True,
    )

    daily_report(DAY)

    assert "OLDER THAN TWO DAYS" in Report.objects.get().text


def test_database_size_and_row_changes_since_the_previous_report() -> None:
    previous_day = DAY - timedelta(days=1)
    for hour in range(3):
        run("jobs.heartbeat", S.SUCCEEDED, at(previous_day, hour), 1.0)
    daily_report(previous_day)
    first = Report.objects.get(day=previous_day).data["database"]
    for hour in range(5):
        run("jobs.heartbeat", S.SUCCEEDED, at(DAY, hour), 1.0)

    daily_report(DAY)

    second = Report.objects.get(day=DAY)
    database = second.data["database"]
    assert database["engine"] == connection.vendor and database["size_bytes"] > 0
    assert len(database["tables"]) == 10
    before = {t["name"]: t for t in first["tables"]}
    after = {t["name"]: t for t in database["tables"]}
    assert (
        before["scheduler_jobrun"]["rows"] == 3
        and before["scheduler_jobrun"]["rows_change"] is None
    )
    assert after["scheduler_jobrun"]["rows"] == 8 and after["scheduler_jobrun"]["rows_change"] == 5
    assert after["scheduler_jobrun"]["rows_exact"] and after["scheduler_jobrun"]["size_bytes"] > 0
    assert "scheduler_jobrun" in second.html
    assert "scheduler_jobrun: " in second.text and "8 rows (+5 since last report)" in second.text


def test_the_management_command(smtp: Inbox) -> None:
    make_day()

    def command(*args: str) -> str:
        out = StringIO()
        call_command("daily_report", *args, stdout=out)
        return out.getvalue()

    first = command("--day", "2025-03-10")
    report = Report.objects.get()
    assert first == (
        f"report 2025-03-10 stored (id {report.pk}), emailed to ops@example.com, dev@example.com\n"
    )
    assert "not emailed: it was emailed before (--force sends it again)" in command(
        "--day", "2025-03-10"
    )
    assert len(smtp.messages) == 1
    assert "emailed to" in command("--day", "2025-03-10", "--force")
    assert len(smtp.messages) == 2

    with pytest.raises(CommandError, match="expected a day as YYYY-MM-DD, got '2025-13-01'"):
        command("--day", "2025-13-01")
    with pytest.raises(CommandError, match="must be before today"):
        command("--day", timezone.localdate().isoformat())
    assert Report.objects.count() == 1 and len(smtp.messages) == 2
