"""No figures about individuals: expression and attention figures only for groups of at least
``ENGAGEMENT_MIN_GROUP_SIZE`` faces (default 5), on the board, in the report and its exports."""

from __future__ import annotations

import pytest
from django.urls import reverse

from classroom import aggregates, selectors, services
from tests.classroom.factories import TrackFactory, face_row, store_frame

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def default_threshold(settings):
    settings.ENGAGEMENT_MIN_GROUP_SIZE = 5  # the default (the classroom tests' conftest says 1)


def _class_of(teacher, n_students: int):
    session = services.start_session(
        services.create_session(teacher=teacher, title="M"), by=teacher
    )
    for n in range(n_students):
        p = services.join_session(code=session.join_code, display_name=f"S{n}", consent=True)
        track = TrackFactory(participant=p, number=1)
        store_frame(p, 1, [face_row("happy" if n % 2 else "sad", track=track)])
    return session


def test_four_faces_show_no_expression_or_attention_anywhere(client, teacher):
    session = _class_of(teacher, 4)
    snap = selectors.dashboard_snapshot(session)
    assert snap["faces_now"] == 4 and snap["suppressed"] is True
    assert snap["mix"] == {} and snap["attention"] is None and snap["coverage"] is None
    assert all(p["mix"] == {} and p["attention"] is None for p in snap["timeline"])
    report = selectors.session_report(session)
    assert report["suppressed"] is True and report["mix"] == {} and report["attention"] is None
    client.force_login(teacher)
    board = client.get(reverse("classroom:session_detail", args=[session.pk])).content.decode()
    assert "until 5 or more faces are in view" in board
    page = client.get(reverse("classroom:session_report", args=[session.pk])).content.decode()
    assert "fewer than 5 faces" in page.lower() and 'id="mix-chart"' not in page
    exported = client.get(reverse("classroom:session_export_json", args=[session.pk])).json()
    assert exported["mix"] == {} and exported["attention"] is None


def test_five_faces_show_the_class_figures(teacher):
    session = _class_of(teacher, 5)
    snap = selectors.dashboard_snapshot(session)
    assert snap["suppressed"] is False and snap["mix"]["sad"] == pytest.approx(0.6)
    report = selectors.session_report(session)
    assert report["suppressed"] is False and report["mix"]["happy"] == pytest.approx(0.4)


def test_timeline_points_below_the_threshold_are_blank():
    points = [
        {"t": "a", "faces": 4, "mix": {"happy": 1.0}, "attention": 0.5},
        {"t": "b", "faces": 5, "mix": {"happy": 1.0}, "attention": 0.5},
    ]
    out = aggregates.suppress_small_groups(points, 5)
    assert out[0] == {"t": "a", "faces": 4, "mix": {}, "attention": None, "suppressed": True}
    assert out[1]["mix"] == {"happy": 1.0} and out[1]["suppressed"] is False
