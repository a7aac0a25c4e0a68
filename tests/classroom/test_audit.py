"""The audit log: one append-only record per report view, export, start and end; admins read
it (read-only) and export it as CSV; it holds no frame data."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from classroom import services
from classroom.models import AuditEvent
from tests.classroom.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user():
    return get_user_model().objects.create_user(
        username="root", password=PASSWORD, role="admin", is_staff=True
    )


def test_start_end_views_and_exports_each_leave_one_record(client, teacher):
    session = services.create_session(teacher=teacher, title="=Maths 3B")
    services.start_session(session, by=teacher)
    services.start_session(session, by=teacher)  # a no-op: no second record
    services.end_session(session, by=teacher)
    client.force_login(teacher)
    client.get(reverse("classroom:session_report", args=[session.pk]))
    client.get(reverse("classroom:session_report", args=[session.pk]))
    client.get(reverse("classroom:session_export_csv", args=[session.pk]) + "?table=timeline")
    client.get(reverse("classroom:session_export_json", args=[session.pk]))
    events = list(AuditEvent.objects.order_by("at", "id"))
    assert [e.action for e in events] == [
        "session_started",
        "session_ended",
        "report_viewed",
        "report_viewed",
        "report_exported",
        "report_exported",
    ]
    assert {e.actor_name for e in events} == {"ada"} and all(e.session == session for e in events)
    assert events[4].detail == {"format": "csv", "table": "timeline"}


def test_another_teachers_refused_view_leaves_no_record(client, teacher):
    session = services.create_session(teacher=teacher, title="Maths")
    other = get_user_model().objects.create_user(username="eve", password=PASSWORD, role="teacher")
    client.force_login(other)
    assert client.get(reverse("classroom:session_report", args=[session.pk])).status_code == 404
    assert not AuditEvent.objects.exists()


def test_records_are_append_only(teacher):
    event = services.record_event("report_viewed", actor=teacher)
    event.actor_name = "someone else"
    with pytest.raises(ValueError):
        event.save()
    with pytest.raises(ValueError):
        event.delete()
    with pytest.raises(ValueError):
        services.record_event("frames_peeked", actor=teacher)
    assert AuditEvent.objects.get().actor_name == "ada"


def test_admins_read_the_log_and_export_it_as_csv_without_formulas(client, teacher, admin_user):
    session = services.create_session(teacher=teacher, title="=HYPERLINK(1)")
    services.start_session(session, by=teacher)
    client.force_login(admin_user)
    changelist = reverse("admin:classroom_auditevent_changelist")
    page = client.get(changelist)
    assert page.status_code == 200 and b"session_started" in page.content
    event = AuditEvent.objects.get()
    # read-only: no change form, no delete
    assert (
        client.post(reverse("admin:classroom_auditevent_delete", args=[event.pk])).status_code
        == 403
    )
    response = client.post(changelist, {"action": "export_csv", "_selected_action": [event.pk]})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["at", "actor", "action", "session", "session_title", "detail"]
    assert rows[1][1:5] == ["ada", "session_started", str(session.pk), "'=HYPERLINK(1)"]
    assert AuditEvent.objects.count() == 1
