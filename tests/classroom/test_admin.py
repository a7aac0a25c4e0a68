"""Django admin: staff see everything; analysis records are read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse
from factories import AdminFactory, FaceObservationFactory, SessionReportFactory, TeacherFactory

pytestmark = pytest.mark.django_db

MODELS = ["user", "classsession", "participant", "frameresult", "sessionreport"]


@pytest.fixture
def data():
    face = FaceObservationFactory()
    report = SessionReportFactory()
    return {
        "user": face.frame.participant.session.teacher,
        "classsession": face.frame.participant.session,
        "participant": face.frame.participant,
        "frameresult": face.frame,
        "sessionreport": report,
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
