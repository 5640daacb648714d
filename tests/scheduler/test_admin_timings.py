"""The timing rows several schedules share (crontab, interval, solar, clocked): edited only through
the schedule form, never deleted while a schedule uses them, and their stock pages not for editors.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import ProtectedError
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule

from scheduler.models import Schedule
from tests.factories import make_schedule
from tests.scheduler.schedule_pages import change_data, change_url

pytestmark = pytest.mark.django_db

CRONTABS = "/admin/django_celery_beat/crontabschedule/"
INTERVALS = "/admin/django_celery_beat/intervalschedule/"


def _shared_interval() -> IntervalSchedule:
    every_5 = IntervalSchedule.objects.create(every=5, period="minutes")
    for name in ("alpha", "beta", "gamma"):
        Schedule.objects.create(name=name, task="jobs.heartbeat", interval=every_5)
    return every_5


def test_an_editor_cannot_retime_or_delete_a_shared_row_behind_the_form(
    editor_client: Client,
) -> None:
    every_5 = _shared_interval()
    crontab = make_schedule("nightly", "15 7 * * mon-fri").crontab

    assert editor_client.get(INTERVALS).status_code == 403
    assert editor_client.get(CRONTABS).status_code == 403
    for url in (f"{INTERVALS}{every_5.pk}/change/", f"{CRONTABS}{crontab.pk}/change/"):
        assert editor_client.get(url).status_code == 403
    moved = editor_client.post(
        f"{INTERVALS}{every_5.pk}/change/", {"every": "1", "period": "seconds"}
    )
    assert moved.status_code == 403
    gone = editor_client.post(f"{INTERVALS}{every_5.pk}/delete/", {"post": "yes"})
    assert gone.status_code == 403
    bulk = editor_client.post(
        INTERVALS, {"action": "delete_selected", "_selected_action": [every_5.pk], "post": "yes"}
    )
    assert bulk.status_code == 403

    every_5.refresh_from_db()
    assert (every_5.every, every_5.period) == (5, "minutes")
    assert Schedule.objects.filter(interval=every_5).count() == 3
    assert CrontabSchedule.objects.filter(pk=crontab.pk).exists()
    index = editor_client.get("/admin/").content.decode()
    assert INTERVALS not in index and CRONTABS not in index


def test_an_editor_adds_a_new_interval_from_the_form_but_cannot_edit_a_picked_one(
    editor_client: Client,
) -> None:
    every_5 = _shared_interval()
    page = editor_client.get(change_url(Schedule.objects.get(name="alpha"))).content.decode()
    assert 'id="add_id_interval"' in page
    assert 'id="change_id_interval"' not in page and 'id="view_id_interval"' not in page

    added = editor_client.post(
        f"{INTERVALS}add/?_to_field=id&_popup=1",
        {"every": "10", "period": "minutes", "_popup": "1", "_to_field": "id"},
    )
    assert added.status_code == 200  # the popup's closing page
    assert IntervalSchedule.objects.filter(every=10, period="minutes").exists()
    every_5.refresh_from_db()
    assert every_5.every == 5


def test_the_schedule_form_never_changes_a_row_another_schedule_uses(
    editor_client: Client,
) -> None:
    first = make_schedule("first", "15 7 * * mon-fri")
    second = make_schedule("second", "15 7 * * mon-fri")
    shared = first.crontab
    assert second.crontab == shared

    response = editor_client.post(change_url(first), change_data(first, minute="5"))
    assert response.status_code == 302
    first.refresh_from_db()
    shared.refresh_from_db()
    assert first.crontab != shared and first.crontab.minute == "5"
    assert (shared.minute, shared.hour) == ("15", "7")
    assert Schedule.objects.get(name="second").crontab == shared


def test_a_superuser_sees_read_only_lists_in_words(admin_client: Client) -> None:
    crontab = make_schedule("nightly", "15 7 * * mon-fri").crontab
    listing = admin_client.get(CRONTABS).content.decode()
    assert ">At 07:15, Monday through Friday (Asia/Shanghai)</a></th>" in listing

    page = admin_client.get(f"{CRONTABS}{crontab.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in html
    assert "<h2>At 07:15, Monday through Friday (Asia/Shanghai)</h2>" in html
    assert "Sunday is 0 or 7" not in html
    refused = admin_client.post(f"{CRONTABS}{crontab.pk}/change/", {"minute": "5", "hour": "7"})
    assert refused.status_code == 403
    crontab.refresh_from_db()
    assert crontab.minute == "15"


def test_a_superuser_cannot_delete_a_row_in_use_and_is_told_which_schedules_use_it(
    admin_client: Client,
) -> None:
    every_5 = _shared_interval()
    page = admin_client.post(f"{INTERVALS}{every_5.pk}/delete/", {"post": "yes"})
    html = page.content.decode()
    assert page.status_code == 200  # the refusal page, not a redirect after deleting
    assert "protected related objects" in html
    for name in ("alpha", "beta", "gamma"):
        assert f"Schedule {name} (uses Every 5 minutes; give it another timing first)" in html
    bulk = admin_client.post(
        INTERVALS, {"action": "delete_selected", "_selected_action": [every_5.pk], "post": "yes"}
    )
    assert "Schedule alpha (uses Every 5 minutes" in bulk.content.decode()
    assert IntervalSchedule.objects.filter(pk=every_5.pk).exists()
    assert Schedule.objects.filter(interval=every_5).count() == 3


def test_a_superuser_may_delete_a_row_nothing_uses(admin_client: Client) -> None:
    unused = IntervalSchedule.objects.create(every=7, period="days")
    response = admin_client.post(f"{INTERVALS}{unused.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not IntervalSchedule.objects.filter(pk=unused.pk).exists()


def test_code_cannot_delete_a_row_in_use_either() -> None:
    crontab = make_schedule("nightly", "15 7 * * mon-fri").crontab
    make_schedule("weekday-backup", "15 7 * * mon-fri")

    # The refusal comes inside the deletion's transaction: a savepoint here, as a caller that
    # carries on would need.
    with pytest.raises(ProtectedError) as refused, transaction.atomic():
        crontab.delete()
    assert str(refused.value.args[0]) == (
        "Cannot delete the crontab 'At 07:15, Monday through Friday (Asia/Shanghai)': "
        "2 schedule(s) use it (nightly, weekday-backup). "
        "Give them another timing in the schedule form, or delete them, first."
    )
    with pytest.raises(ProtectedError), transaction.atomic():
        CrontabSchedule.objects.filter(pk=crontab.pk).delete()
    assert CrontabSchedule.objects.filter(pk=crontab.pk).exists()
    assert Schedule.objects.filter(crontab=crontab).count() == 2

    Schedule.objects.filter(crontab=crontab).delete()
    crontab.delete()  # unused now
    assert not CrontabSchedule.objects.filter(pk=crontab.pk).exists()


def test_titles_and_messages_show_the_schedule_in_words(
    editor_client: Client, editor: User
) -> None:
    schedule = make_schedule("nightly", "15 7 * * mon-fri")
    page = editor_client.get(change_url(schedule)).content.decode()
    assert "nightly: At 07:15, Monday through Friday (Asia/Shanghai)" in page
    saved = editor_client.post(change_url(schedule), change_data(schedule), follow=True)
    html = saved.content.decode()
    assert "nightly: At 07:15, Monday through Friday (Asia/Shanghai)" in html
    assert "m/h/dM/MY/d" not in html
