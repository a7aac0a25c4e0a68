"""Django admin: staff see everything; analysis records are read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from classroom.choices import AnalysisMode
from tests.classroom.factories import (
    AdminFactory,
    ClassSessionFactory,
    FaceObservationFactory,
    ParticipantFactory,
    SessionReportFactory,
    TeacherFactory,
    TrackFactory,
    face_row,
    store_frame,
)

pytestmark = pytest.mark.django_db

MODELS = ["user", "classsession", "participant", "frameresult", "sessionreport", "track"]


@pytest.fixture
def data():
    face = FaceObservationFactory()
    report = SessionReportFactory()
    track = TrackFactory(participant=face.frame.participant, smoothed_probabilities=[0.1] * 7)
    return {
        "user": face.frame.participant.session.teacher,
        "classsession": face.frame.participant.session,
        "participant": face.frame.participant,
        "frameresult": face.frame,
        "sessionreport": report,
        "track": track,
    }


@pytest.mark.parametrize("model", MODELS)
def test_staff_without_permissions_sees_lists_and_objects(client, data, model):
    client.force_login(AdminFactory())  # is_staff, no model permissions, not superuser
    assert client.get(reverse(f"admin:classroom_{model}_changelist")).status_code == 200
    assert (
        client.get(reverse(f"admin:classroom_{model}_change", args=[data[model].pk])).status_code
        == 200
    )


def test_session_list_shows_counts(client, data):
    client.force_login(AdminFactory(is_superuser=True))
    page = client.get(reverse("admin:classroom_classsession_changelist")).content.decode()
    assert data["classsession"].join_code in page
    assert "frames analysed" in page.lower()


def test_results_cannot_be_added_or_changed(client, data):
    client.force_login(AdminFactory(is_superuser=True))
    assert client.get(reverse("admin:classroom_frameresult_add")).status_code == 403
    response = client.post(
        reverse("admin:classroom_frameresult_change", args=[data["frameresult"].pk]), {"seq": 99}
    )
    assert response.status_code == 403
    data["frameresult"].refresh_from_db()
    assert data["frameresult"].seq != 99


def test_teacher_cannot_use_admin(client):
    client.force_login(TeacherFactory())
    response = client.get(reverse("admin:classroom_classsession_changelist"))
    assert response.status_code == 302


def test_frame_page_shows_tracks_pose_and_smoothed_fields(client):
    """Issue 4 fields, including an attention-only face whose expression columns are NULL."""
    participant = ParticipantFactory(
        session=ClassSessionFactory(live=True, analysis=AnalysisMode.ATTENTION),
        frames_analysed=7,
        frames_dropped=3,
    )
    track = TrackFactory(participant=participant, number=4)
    frame = store_frame(
        participant,
        1,
        [face_row(None, None, attentive=False, yaw_deg=-41.5, pitch_deg=8.25, track=track)],
    )
    client.force_login(AdminFactory(is_superuser=True))
    page = client.get(reverse("admin:classroom_frameresult_change", args=[frame.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    for text in ("Smoothed label", "Yaw deg", "Pitch deg", "Attentive", "track 4 of participant"):
        assert text.lower() in content.lower(), text
    assert "-41.5" in content and "8.25" in content
    participants = client.get(reverse("admin:classroom_participant_changelist")).content.decode()
    assert "frames dropped" in participants.lower() and "frames analysed" in participants.lower()
    tracks = client.get(reverse("admin:classroom_track_changelist")).content.decode()
    assert participant.display_name in tracks


def test_tracks_cannot_be_added_or_changed(client, data):
    client.force_login(AdminFactory(is_superuser=True))
    assert client.get(reverse("admin:classroom_track_add")).status_code == 403
    response = client.post(
        reverse("admin:classroom_track_change", args=[data["track"].pk]), {"hits": 99}
    )
    assert response.status_code == 403
    data["track"].refresh_from_db()
    assert data["track"].hits == 1
