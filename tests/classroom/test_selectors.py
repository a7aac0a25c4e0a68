"""classroom.selectors: visibility, dashboard snapshot and report shapes."""

from __future__ import annotations

import json
import random
import re
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from classroom import aggregates, selectors, services
from classroom.choices import EXPRESSIONS, AnalysisMode
from classroom.models import FaceObservation, FrameResult, Participant, TimelineBucket
from tests.classroom.factories import (
    AdminFactory,
    ClassSessionFactory,
    ParticipantFactory,
    TeacherFactory,
    TrackFactory,
    face_row,
    store_frame,
)
from tests.classroom.recount import timeline_recount

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


def live_session(seconds: float = 30.0, **kwargs):
    """A live session started ``seconds`` ago, and its reference time ``now``."""
    now = timezone.now()
    session = ClassSessionFactory(live=True, started_at=now - timedelta(seconds=seconds), **kwargs)
    return session, now


def test_dashboard_snapshot_shape_and_values():
    session, now = live_session()
    a, b, c = (ParticipantFactory(session=session) for _ in range(3))
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    store_frame(a, 1, [face_row("happy"), face_row("happy")], received_at=ago(20))  # old
    # raw labels flicker, the board shows the smoothed ones
    store_frame(
        a,
        2,
        [face_row("sad", "happy"), face_row("sad", attentive=False)],
        received_at=ago(2),
        lag_ms=300,
        captured_at=ago(2.1),
    )
    store_frame(
        b, 1, [face_row("angry", "neutral", attentive=None)], received_at=ago(1), lag_ms=100
    )
    store_frame(c, 1, [face_row("angry")], received_at=ago(25))
    a.refresh_from_db()
    type(a).objects.filter(pk=a.pk).update(frames_received=5, frames_rejected=1, frames_dropped=2)

    snap = selectors.dashboard_snapshot(session, now=now)
    assert set(snap) == {
        "min_group_size",
        "suppressed",
        "type",
        "session",
        "status",
        "analysis",
        "faces_now",
        "participants",
        "frames_received",
        "frames_rejected",
        "frames_analysed",
        "frames_dropped",
        "mix",
        "coverage",
        "attention",
        "lag_ms",
        "lag_p95_ms",
        "latest",
        "full",
        "timeline",
    }
    assert snap["type"] == "session.update"
    assert snap["session"] == str(session.pk)
    assert (snap["status"], snap["analysis"]) == ("live", "expression")
    assert snap["faces_now"] == 3  # 2 (a's latest) + 1 (b)
    assert snap["participants"] == 2
    assert (snap["frames_analysed"], snap["frames_received"]) == (4, 5)
    assert (snap["frames_rejected"], snap["frames_dropped"]) == (1, 2)
    assert list(snap["mix"]) == list(EXPRESSIONS)
    # smoothed labels of the last 10 s: happy, sad, neutral (raw: sad, sad, angry)
    assert snap["mix"]["happy"] == pytest.approx(1 / 3, abs=1e-4)
    assert snap["mix"]["neutral"] == pytest.approx(1 / 3, abs=1e-4)
    assert snap["mix"]["angry"] == 0.0
    assert snap["coverage"] == {
        "faces": 3,
        "read": 3,
        "not_read": {"too_small": 0, "turned_away": 0, "too_dark": 0, "blurred": 0},
    }
    assert snap["attention"] == 0.5  # 1 of the 2 faces with a pose
    assert snap["lag_ms"] == pytest.approx(100.0)  # b's frame was analysed last
    # p95 of [300, 100] by linear interpolation: 100 + 0.95 * 200
    assert snap["lag_p95_ms"] == pytest.approx(290.0)
    assert snap["latest"] == {
        str(a.pk): {
            "seq": 2,
            "captured_at": round((now - timedelta(seconds=2.1)).timestamp() * 1000),
        },
        str(b.pk): {"seq": 1, "captured_at": None},
    }
    assert snap["full"] is True
    assert 6 <= len(snap["timeline"]) <= 7  # 30 s of 5-s buckets
    point = snap["timeline"][0]
    assert set(point) == {"t", "faces", "mix", "attention", "suppressed"}
    assert sum(p["faces"] for p in snap["timeline"]) == 2 + 1 + 2 + 1
    json.dumps(snap)  # JSON-able


def test_dashboard_snapshot_of_empty_draft():
    snap = selectors.dashboard_snapshot(ClassSessionFactory())
    assert snap["status"] == "draft"
    assert (snap["faces_now"], snap["participants"], snap["frames_analysed"]) == (0, 0, 0)
    assert snap["mix"] == {} and snap["timeline"] == [] and snap["lag_ms"] is None
    assert snap["attention"] is None and snap["lag_p95_ms"] is None and snap["latest"] == {}


def test_refresh_sends_only_the_last_two_timeline_points():
    session, now = live_session(seconds=42)
    p = ParticipantFactory(session=session)
    for i in range(40):
        faces = [face_row("happy" if i % 3 else "sad")] * (1 + i % 2)
        store_frame(p, i + 1, faces, received_at=session.started_at + timedelta(seconds=i + 0.5))
    full = selectors.dashboard_snapshot(session, now=now)
    tail = selectors.dashboard_snapshot(session, now=now, full_timeline=False)
    assert full["full"] is True and tail["full"] is False
    assert len(full["timeline"]) == 8  # buckets 0..7; bucket 8 [40, 45) has no frame
    assert tail["timeline"] == full["timeline"][-2:]
    assert {k: v for k, v in tail.items() if k not in ("timeline", "full")} == {
        k: v for k, v in full.items() if k not in ("timeline", "full")
    }
    by_id = selectors.dashboard_snapshot_by_id(str(session.pk), now=now, full_timeline=False)
    assert by_id == tail
    assert selectors.dashboard_snapshot_by_id(uuid.uuid4()) is None


def test_bucket_timeline_equals_the_row_recount():
    session, now = live_session(seconds=58)
    rng = random.Random(4)
    participants = [ParticipantFactory(session=session) for _ in range(3)]
    for p in participants:
        for seq in range(1, 26):
            faces = [
                face_row(
                    rng.choice(EXPRESSIONS),
                    rng.choice(EXPRESSIONS),
                    attentive=rng.choice([True, False, None]),
                )
                for _ in range(rng.choice([0, 1, 2, 3]))
            ]
            when = session.started_at + timedelta(seconds=rng.uniform(0, 57))
            store_frame(p, seq, faces, received_at=when)
    recount = timeline_recount(session, now=now)
    assert len(recount) == 12
    assert any(point["attention"] is not None for point in recount)
    recount = [{**point, "suppressed": False} for point in recount]  # 4 faces, threshold 1
    assert selectors.dashboard_snapshot(session, now=now)["timeline"] == recount
    assert selectors.session_report(session, now=now)["timeline"] == recount


def _bulk_history(participant, seconds: int, start):
    """One frame per second with one face for ``seconds`` s, and its buckets, in 4 queries."""
    frames = FrameResult.objects.bulk_create(
        FrameResult(
            participant=participant,
            seq=i + 1,
            received_at=start + timedelta(seconds=i),
            analysed_at=start + timedelta(seconds=i, milliseconds=30),
            face_count=1,
            width=640,
            height=480,
        )
        for i in range(seconds)
    )
    FaceObservation.objects.bulk_create(
        FaceObservation(
            frame=f,
            index=0,
            box_x=0.1,
            box_y=0.1,
            box_w=0.2,
            box_h=0.2,
            label="happy",
            confidence=0.9,
            probabilities=[0.1] * 7,
            smoothed_label="happy",
            attentive=True,
        )
        for f in frames
    )
    TimelineBucket.objects.bulk_create(
        TimelineBucket(
            participant=participant,
            index=k,
            frames=5,
            face_sum=5,
            pose_faces=5,
            attentive_faces=5,
            happy=5,
        )
        for k in range(seconds // 5)
    )
    Participant.objects.filter(pk=participant.pk).update(frames_analysed=seconds)


@pytest.mark.parametrize("seconds", [20, 1200])
def test_refresh_cost_does_not_grow_with_the_session(
    seconds, django_assert_max_num_queries, django_assert_num_queries
):
    """A refresh reads a 10-s window and the last buckets: same queries and rows after 20 s
    or 20 min of class."""
    now = timezone.now()
    session = ClassSessionFactory(live=True, started_at=now - timedelta(seconds=seconds))
    participants = [ParticipantFactory(session=session) for _ in range(2)]
    for p in participants:
        _bulk_history(p, seconds, session.started_at)

    seen: dict[str, int] = {}

    def spy(name):
        real = getattr(aggregates, name)

        def wrapper(rows, *args, **kwargs):
            rows = list(rows)
            seen[name] = len(rows)
            return real(rows, *args, **kwargs)

        return wrapper

    with (
        mock.patch.object(aggregates, "live_counts", spy("live_counts")),
        mock.patch.object(aggregates, "window_mix", spy("window_mix")),
        mock.patch.object(aggregates, "bucket_timeline", spy("bucket_timeline")),
    ):
        with django_assert_num_queries(4):
            snap = selectors.dashboard_snapshot(session, now=now, full_timeline=False)
        with django_assert_max_num_queries(5):
            selectors.dashboard_snapshot_by_id(session.pk, now=now, full_timeline=False)
    # rows read, whatever the length: the frames at now-9 s .. now-1 s (the window is
    # (now-10 s, now]) and their faces, 2 participants; the last 3 buckets' indices per
    # participant, of which the newest (containing now) has no row yet
    assert seen == {"live_counts": 2 * 9, "window_mix": 2 * 9, "bucket_timeline": 2 * 2}
    assert snap["frames_analysed"] == 2 * seconds
    assert len(snap["timeline"]) == 2 and snap["timeline"][-1]["faces"] == 2
    assert snap["mix"]["happy"] == 1.0 and snap["attention"] == 1.0


def test_attention_only_snapshot_has_no_expression():
    session, now = live_session(analysis=AnalysisMode.ATTENTION)
    p = ParticipantFactory(session=session)
    store_frame(
        p,
        1,
        [face_row(None, None, attentive=True), face_row(None, None, attentive=False)],
        received_at=now - timedelta(seconds=3),
    )
    store_frame(
        p, 2, [face_row(None, None, attentive=True)], received_at=now - timedelta(seconds=1)
    )
    snap = selectors.dashboard_snapshot(session, now=now)
    assert snap["analysis"] == "attention"
    assert snap["mix"] == {}
    assert snap["attention"] == pytest.approx(2 / 3, abs=1e-4)
    assert snap["faces_now"] == 1
    assert all(point["mix"] == {} for point in snap["timeline"])
    assert snap["timeline"][-1]["attention"] == pytest.approx(2 / 3, abs=1e-4)
    assert not LABEL_WORDS.search(json.dumps(snap))


LABEL_WORDS = re.compile(r"\b(" + "|".join(EXPRESSIONS) + r")\b", re.I)


def test_session_report():
    session, _ = live_session()
    a, b = ParticipantFactory(session=session), ParticipantFactory(session=session)
    t1, t2 = TrackFactory(participant=a, number=1), TrackFactory(participant=a, number=2)
    store_frame(a, 1, [face_row("happy", track=t1), face_row("sad", "neutral", track=t2)])
    store_frame(a, 2, [face_row("sad", "happy", attentive=False, track=t1)])
    store_frame(b, 1)
    Participant.objects.filter(pk=a.pk).update(frames_received=4, frames_dropped=1)
    services.end_session(session, by=session.teacher)
    report = selectors.session_report(session)
    json.dumps(report)
    assert report["status"] == "ended" and report["analysis"] == "expression"
    assert report["totals"]["participants"] == 2
    assert report["totals"]["frames_analysed"] == 3
    assert report["totals"]["frames_dropped"] == 1
    assert report["totals"]["faces"] == 3
    assert report["totals"]["faces_per_frame"] == 1.0
    assert report["totals"]["tracks"] == 2
    # smoothed: happy, neutral, happy; raw: happy, sad, sad
    assert report["mix"]["happy"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["mix_raw"]["sad"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["attention"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["duration_s"] > 0
    assert set(report["lag_ms"]) == {"mean", "p50", "p95", "max"}
    first = report["participants"][0]
    assert first["id"] == a.pk and first["frames_analysed"] == 2 and first["faces"] == 3
    assert (first["frames_received"], first["frames_dropped"], first["tracks"]) == (4, 1, 2)
    # participation only: no individual expression or attention figure
    assert set(first) == set(selectors.PARTICIPATION_KEYS)
    second = report["participants"][1]
    assert set(second) == set(selectors.PARTICIPATION_KEYS) and second["tracks"] == 0
    # all frames in the last bucket: a saw (2 + 1) / 2 faces per frame -> 2, b 0
    assert report["timeline"][-1]["faces"] == 2 + 0


def test_attention_only_report_and_face_export_have_no_expression():
    session, _ = live_session(analysis=AnalysisMode.ATTENTION)
    p = ParticipantFactory(session=session)
    track = TrackFactory(participant=p, number=1)
    store_frame(p, 1, [face_row(None, None, attentive=True, yaw_deg=12.5, track=track)])
    store_frame(p, 2, [face_row(None, None, attentive=False, yaw_deg=40.0, track=track)])
    report = selectors.session_report(session)
    assert report["analysis"] == "attention"
    assert report["mix"] == {} and report["mix_raw"] == {}
    assert report["attention"] == 0.5 and report["totals"]["tracks"] == 1
    assert set(report["participants"][0]) == set(selectors.PARTICIPATION_KEYS)
    assert not LABEL_WORDS.search(json.dumps(report))

    header, rows = selectors.face_export(session)
    assert header == list(selectors.FACE_EXPORT_COLUMNS)
    rows = list(rows)
    assert len(rows) == 2
    first = dict(zip(header, rows[0], strict=True))
    assert first["face_index"] == 0
    assert "participant_id" not in first and "seq" not in first  # anonymous faces
    assert (first["track"], first["yaw_deg"], first["attentive"]) == (1, 12.5, True)


def test_face_export_has_raw_and_smoothed_labels():
    session, _ = live_session()
    p = ParticipantFactory(session=session)
    store_frame(p, 1, [face_row("sad", "happy", attentive=None, pitch_deg=-5.0)])
    header, rows = selectors.face_export(session)
    assert header[-4:] == ["label", "confidence", "smoothed_label", "smoothed_confidence"]
    [row] = [dict(zip(header, r, strict=True)) for r in rows]
    assert (row["label"], row["smoothed_label"]) == ("sad", "happy")
    assert row["confidence"] == pytest.approx(0.94) and row["smoothed_confidence"] == pytest.approx(
        0.94
    )
    assert row["attentive"] is None and row["pitch_deg"] == -5.0 and row["track"] is None
