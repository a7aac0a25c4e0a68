"""Withdrawal of consent: by the student or by their teacher; rows gone, totals changed, the
stream refused, the stored report rebuilt, an audit record written."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from classroom import services
from classroom.models import AuditEvent, FaceObservation, FrameResult, Participant, SessionReport
from tests.classroom.factories import face_row, frame_message, store_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(teacher):
    return services.start_session(services.create_session(teacher=teacher, title="M"), by=teacher)


def _join(client, session, name):
    response = client.post(
        reverse("classroom:join"),
        {"code": session.join_code, "display_name": name, "consent": "on"},
        REMOTE_ADDR=f"198.51.100.{len(name)}",
    )
    assert response.status_code == 302
    return Participant.objects.get(session=session, display_name=name)


def test_a_student_withdraws_and_their_rows_and_figures_are_gone(client, teacher, live):
    from django.test import Client

    alan = _join(client, live, "Alan")
    eve = _join(Client(), live, "Eve")
    store_frame(alan, 1, [face_row("happy"), face_row("happy")])
    store_frame(eve, 1, [face_row("sad")])
    teacher_client = Client()
    teacher_client.force_login(teacher)
    url = reverse("classroom:session_export_json", args=[live.pk])
    assert teacher_client.get(url).json()["totals"]["faces"] == 3

    response = client.post(reverse("classroom:student_withdraw"))

    assert response.status_code == 302
    assert not FrameResult.objects.filter(participant=alan).exists()
    assert not FaceObservation.objects.filter(frame__participant=alan).exists()
    report = teacher_client.get(url).json()
    assert report["totals"]["faces"] == 1 and report["mix"] == {"sad": 1.0} | {
        e: 0.0 for e in report["mix"] if e != "sad"
    }
    alan.refresh_from_db()
    assert alan.withdrawn_at is not None
    # the browser forgot the participant; a frame sent as them is refused
    assert services.PARTICIPANT_SESSION_KEY not in client.session
    with pytest.raises(services.FrameRejected) as info:
        services.accept_frame(alan.pk, frame_message(5))
    assert info.value.code == "no_consent"
    (event,) = AuditEvent.objects.filter(action="participant_withdrawn")
    assert event.detail["by"] == "student" and event.detail["faces"] == 2


def test_a_teacher_withdraws_a_participant_of_an_ended_session(client, teacher, live):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    eve = services.join_session(code=live.join_code, display_name="Eve", consent=True)
    store_frame(alan, 1, [face_row("happy")])
    store_frame(eve, 1, [face_row("sad"), face_row("sad")])
    services.end_session(live, by=teacher)
    services.build_session_report(live.pk)
    assert SessionReport.objects.get(session=live).summary["totals"]["faces"] == 3
    client.force_login(teacher)
    page = client.get(reverse("classroom:session_report", args=[live.pk])).content.decode()
    withdraw = reverse("classroom:participant_withdraw", args=[live.pk, eve.pk])
    assert withdraw in page and "data-confirm" in page

    assert client.post(withdraw).status_code == 302

    # the stored report was rebuilt without Eve's faces
    assert SessionReport.objects.get(session=live).summary["totals"]["faces"] == 1
    page = client.get(reverse("classroom:session_report", args=[live.pk])).content.decode()
    assert "withdrawn" in page
    (event,) = AuditEvent.objects.filter(action="participant_withdrawn")
    assert event.actor_name == "ada" and event.detail["by"] == "staff"


def test_another_teacher_cannot_withdraw_anyone(client, live):
    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    store_frame(alan, 1, [face_row("happy")])
    other = get_user_model().objects.create_user(username="eve", password="x-42-y", role="teacher")
    client.force_login(other)
    url = reverse("classroom:participant_withdraw", args=[live.pk, alan.pk])
    assert client.post(url).status_code == 404
    assert FrameResult.objects.filter(participant=alan).exists()


def test_a_late_result_of_a_withdrawn_participant_is_refused(live):
    from tests.classroom.factories import result_dict

    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    services.withdraw_participant(alan)
    assert (
        services.record_frame_result(participant_id=alan.pk, seq=1, result=result_dict("happy"))
        is None
    )
    assert not FrameResult.objects.filter(participant=alan).exists()


def test_withdrawal_after_retention_removes_the_row_from_the_stored_report(teacher, live):
    from datetime import timedelta

    from django.utils import timezone

    from classroom.models import ClassSession

    alan = services.join_session(code=live.join_code, display_name="Alan", consent=True)
    eve = services.join_session(code=live.join_code, display_name="Eve", consent=True)
    store_frame(alan, 1, [face_row("happy")])
    services.end_session(live, by=teacher)
    ClassSession.objects.filter(pk=live.pk).update(ended_at=timezone.now() - timedelta(days=40))
    assert services.apply_retention()["sessions"] == 1
    services.withdraw_participant(eve)
    names = [
        p["display_name"] for p in SessionReport.objects.get(session=live).summary["participants"]
    ]
    assert names == ["Alan"]
