"""classroom.selectors: visibility, dashboard snapshot and report shapes."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from factories import (
    AdminFactory,
    ClassSessionFactory,
    ParticipantFactory,
    TeacherFactory,
    result_dict,
)

from classroom import selectors, services
from classroom.choices import EXPRESSIONS

pytestmark = pytest.mark.django_db


def test_sessions_for_visibility():
    teacher, other = TeacherFactory(), TeacherFactory()
    mine = ClassSessionFactory(teacher=teacher)
    theirs = ClassSessionFactory(teacher=other)
    ParticipantFactory(session=mine)
    assert list(selectors.sessions_for(teacher)) == [mine]
    assert list(selectors.sessions_for(teacher))[0].participant_count == 1
    assert set(selectors.sessions_for(AdminFactory())) == {mine, theirs}
    assert set(selectors.sessions_for(TeacherFactory(is_superuser=True))) == {mine, theirs}
    assert not selectors.sessions_for(AnonymousUser()).exists()


def test_session_for_permissions():
    session = ClassSessionFactory()
    assert selectors.session_for(session.teacher, session.pk) == session
    assert selectors.session_for(session.teacher, str(session.pk)) == session
    assert selectors.session_for(TeacherFactory(), session.pk) is None
    assert selectors.session_for(AdminFactory(), session.pk) == session
    assert selectors.session_for(AnonymousUser(), session.pk) is None
    assert selectors.session_for(session.teacher, "not-a-uuid") is None
    inactive = TeacherFactory(is_active=False)
    session.teacher = inactive
    assert not session.can_be_managed_by(inactive)


def record(participant, seq, *labels, seconds_ago=0.0):
    received = (time.time() - seconds_ago) * 1000
    return services.record_frame_result(
        participant_id=participant.pk, seq=seq, result=result_dict(*labels), received_at=received
    )


def test_dashboard_snapshot_shape_and_values():
    session = ClassSessionFactory(live=True)
    session.started_at = timezone.now() - timedelta(seconds=30)
    session.save()
    a, b, c = (ParticipantFactory(session=session) for _ in range(3))
    record(a, 1, "happy", "happy", seconds_ago=20)  # out of the 10-s window
    record(a, 2, "happy", "sad", seconds_ago=2)
    record(b, 1, "neutral", seconds_ago=1)
    record(c, 1, "angry", seconds_ago=25)

    snap = selectors.dashboard_snapshot(session)
    assert set(snap) == {
        "type",
        "session",
        "status",
        "faces_now",
        "participants",
        "frames_analysed",
        "mix",
        "timeline",
        "lag_ms",
    }
    assert snap["type"] == "session.update"
    assert snap["session"] == str(session.pk)
    assert snap["status"] == "live"
    assert snap["faces_now"] == 3  # 2 (a's latest) + 1 (b)
    assert snap["participants"] == 2
    assert snap["frames_analysed"] == 4
    assert list(snap["mix"]) == list(EXPRESSIONS)
    assert snap["mix"]["happy"] == pytest.approx(1 / 3, abs=1e-4)
    assert sum(snap["mix"].values()) == pytest.approx(1.0, abs=1e-3)
    assert isinstance(snap["lag_ms"], float)
    assert 6 <= len(snap["timeline"]) <= 8  # 30 s of 5-s buckets
    point = snap["timeline"][0]
    assert set(point) == {"t", "faces", "mix"}
    assert sum(p["faces"] for p in snap["timeline"]) == 2 + 1 + 2 + 1
    json.dumps(snap)  # JSON-able


def test_dashboard_snapshot_of_empty_draft():
    snap = selectors.dashboard_snapshot(ClassSessionFactory())
    assert snap["status"] == "draft"
    assert (snap["faces_now"], snap["participants"], snap["frames_analysed"]) == (0, 0, 0)
    assert snap["mix"] == {} and snap["timeline"] == [] and snap["lag_ms"] is None


def test_session_report():
    session = ClassSessionFactory(live=True)
    a, b = ParticipantFactory(session=session), ParticipantFactory(session=session)
    record(a, 1, "happy", "sad")
    record(a, 2, "happy")
    record(b, 1)
    services.end_session(session, by=session.teacher)
    report = selectors.session_report(session)
    json.dumps(report)
    assert report["status"] == "ended"
    assert report["totals"]["participants"] == 2
    assert report["totals"]["frames_analysed"] == 3
    assert report["totals"]["faces"] == 3
    assert report["totals"]["faces_per_frame"] == 1.0
    assert report["mix"]["happy"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["duration_s"] > 0
    assert set(report["lag_ms"]) == {"mean", "p50", "p95", "max"}
    first = report["participants"][0]
    assert first["id"] == a.pk and first["frames_analysed"] == 2 and first["faces"] == 3
    assert first["mix"]["sad"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["participants"][1]["mix"] == {}
    assert report["timeline"]
