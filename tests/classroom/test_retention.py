"""Retention: per-frame and per-face rows of old sessions go, the stored report stays and the
report page and exports keep working from it; an audit record says what went."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from classroom import services
from classroom.models import (
    AuditEvent,
    ClassSession,
    FaceObservation,
    FrameResult,
    SessionReport,
    TimelineBucket,
    Track,
)
from tests.classroom.factories import face_row, store_frame

pytestmark = pytest.mark.django_db


def _ended_session(teacher, title: str, ended_days_ago: float) -> ClassSession:
    session = services.start_session(
        services.create_session(teacher=teacher, title=title), by=teacher
    )
    alan = services.join_session(code=session.join_code, display_name="Alan", consent=True)
    store_frame(alan, 1, [face_row("happy"), face_row("sad")])
    store_frame(alan, 2, [face_row("happy")])
    services.end_session(session, by=teacher)
    ClassSession.objects.filter(pk=session.pk).update(
        ended_at=timezone.now() - timedelta(days=ended_days_ago)
    )
    session.refresh_from_db()
    return session


def _rows(session) -> dict[str, int]:
    return {
        "frames": FrameResult.objects.filter(participant__session=session).count(),
        "faces": FaceObservation.objects.filter(frame__participant__session=session).count(),
        "tracks": Track.objects.filter(participant__session=session).count(),
        "buckets": TimelineBucket.objects.filter(participant__session=session).count(),
    }


def test_old_sessions_lose_their_rows_and_keep_their_report(client, teacher, settings):
    settings.ENGAGEMENT_RETENTION_DAYS = 30
    old = _ended_session(teacher, "Old class", ended_days_ago=31)
    recent = _ended_session(teacher, "Recent class", ended_days_ago=2)
    assert _rows(old)["faces"] == 3 and _rows(recent)["faces"] == 3
    client.force_login(teacher)
    before = client.get(reverse("classroom:session_export_json", args=[old.pk])).json()

    totals = services.apply_retention()

    assert totals == {
        "sessions": 1,
        "frames": 2,
        "faces": 3,
        "tracks": _rows(recent)["tracks"],
        "buckets": _rows(recent)["buckets"],
    }
    assert set(_rows(old).values()) == {0}
    assert _rows(recent)["faces"] == 3  # not yet due
    old.refresh_from_db()
    assert old.rows_deleted_at is not None and SessionReport.objects.filter(session=old).exists()
    # The report page and the exports still show the session's figures, from the stored report.
    page = client.get(reverse("classroom:session_report", args=[old.pk]))
    assert page.status_code == 200 and b"Alan" in page.content
    after = client.get(reverse("classroom:session_export_json", args=[old.pk])).json()
    assert after["totals"] == before["totals"] and after["mix"] == before["mix"]
    assert after["totals"]["faces"] == 3
    # A redelivered report task does not overwrite the stored report with empty figures.
    services.build_session_report(old.pk)
    assert SessionReport.objects.get(session=old).summary["totals"]["faces"] == 3
    # One audit record with the counts; a second run deletes nothing.
    (event,) = AuditEvent.objects.filter(action="retention_deleted")
    assert event.actor_name == "system" and event.session == old and event.detail["faces"] == 3
    assert services.apply_retention()["sessions"] == 0


def test_the_retention_task_is_scheduled_on_the_default_queue(settings):
    from inference_worker.celery import app

    entry = app.conf.beat_schedule["retention"]
    assert entry["task"] == "classroom.tasks.apply_retention"
    assert entry["options"]["queue"] == "default"
    assert entry["schedule"] == settings.ENGAGEMENT_RETENTION_INTERVAL_S
    from classroom import tasks

    assert json.loads(json.dumps(tasks.apply_retention())) == {
        "sessions": 0,
        "frames": 0,
        "faces": 0,
        "tracks": 0,
        "buckets": 0,
    }
