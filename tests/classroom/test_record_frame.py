"""``services.record_frame_result`` with tracks, smoothing, head pose and timeline buckets, and
``services.record_frame_dropped``, on the real database (PostgreSQL when ``DATABASE_URL`` is set).
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter, defaultdict
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.db.models import F

from classroom import services, tracking
from classroom.choices import EXPRESSIONS, TIMELINE_BUCKET_S, AnalysisMode
from classroom.models import FaceObservation, FrameResult, Participant, TimelineBucket, Track
from tests.classroom.factories import ClassSessionFactory, ParticipantFactory, face_dict

TAU_S = 3.0
MAX_AGE_S = 5.0


@pytest.fixture(autouse=True)
def _tracking_settings(settings):
    settings.ENGAGEMENT_SMOOTHING_TAU_S = TAU_S
    settings.ENGAGEMENT_TRACK_MAX_AGE_S = MAX_AGE_S


def at(session, seconds: float) -> float:
    """Arrival time ``seconds`` after the session's start, ms since the epoch."""
    return (session.started_at + timedelta(seconds=seconds)).timestamp() * 1000.0


def face(label="happy", box=(0.1, 0.2, 0.15, 0.3), yaw=5.0, pitch=-3.0, attentive=True) -> dict:
    return face_dict(label, box=box) | {"yaw_deg": yaw, "pitch_deg": pitch, "attentive": attentive}


def result(*faces: dict) -> dict:
    return {"width": 640, "height": 480, "faces": list(faces), "timings_ms": {"total": 5.0}}


def record(participant, seq, seconds, *faces):
    return services.record_frame_result(
        participant_id=participant.pk,
        seq=seq,
        result=result(*faces),
        received_at=at(participant.session, seconds),
    )


def snapshot(participant) -> dict:
    """Everything a recorded frame may change, for before/after comparisons."""
    return {
        "frames_analysed": Participant.objects.get(pk=participant.pk).frames_analysed,
        "frames": list(FrameResult.objects.filter(participant=participant).values()),
        "faces": list(FaceObservation.objects.filter(frame__participant=participant).values()),
        "tracks": list(Track.objects.filter(participant=participant).values()),
        "buckets": list(TimelineBucket.objects.filter(participant=participant).values()),
    }


def recount_buckets(session) -> dict[tuple[int, int], dict[str, int]]:
    """The timeline buckets recomputed from the stored frames and faces."""
    counts: dict[tuple[int, int], Counter] = defaultdict(Counter)
    frames = FrameResult.objects.filter(participant__session=session)
    for frame in frames:
        k = math.floor((frame.received_at - session.started_at).total_seconds() / TIMELINE_BUCKET_S)
        counts[frame.participant_id, k]["frames"] += 1
        for obs in frame.faces.all():
            counts[frame.participant_id, k]["face_sum"] += 1
            counts[frame.participant_id, k]["pose_faces"] += obs.attentive is not None
            counts[frame.participant_id, k]["attentive_faces"] += obs.attentive is True
            if obs.smoothed_label:
                counts[frame.participant_id, k][obs.smoothed_label] += 1
    columns = ["frames", "face_sum", "pose_faces", "attentive_faces", *EXPRESSIONS]
    return {key: {c: value[c] for c in columns} for key, value in counts.items()}


def stored_buckets(session) -> dict[tuple[int, int], dict[str, int]]:
    columns = ["frames", "face_sum", "pose_faces", "attentive_faces", *EXPRESSIONS]
    return {
        (b["participant_id"], b["index"]): {c: b[c] for c in columns}
        for b in TimelineBucket.objects.filter(participant__session=session).values()
    }


# --- tracks and smoothing -----------------------------------------------------------------------


@pytest.mark.django_db
def test_smoothed_follows_the_time_aware_ema_and_differs_from_raw():
    participant = ParticipantFactory()
    record(participant, 1, 1.0, face("happy"))
    record(participant, 2, 2.5, face("sad", box=(0.11, 0.2, 0.15, 0.3)))
    first, second = FaceObservation.objects.order_by("frame__seq")
    assert first.track_id == second.track_id
    assert first.smoothed_probabilities == pytest.approx(first.probabilities)  # first = raw
    alpha = 1 - math.exp(-1.5 / TAU_S)
    expected = [
        p + alpha * (q - p) for p, q in zip(first.probabilities, second.probabilities, strict=True)
    ]
    assert second.smoothed_probabilities == pytest.approx(expected)
    assert second.label == "sad" and second.smoothed_label == "happy"  # one sad frame of two
    track = Track.objects.get()
    assert track.smoothed_probabilities == pytest.approx(expected)
    assert (track.number, track.hits, track.last_seq) == (1, 2, 2)
    assert track.first_seen_at == first.frame.received_at
    assert track.last_seen_at == second.frame.received_at
    assert (track.box_x, track.box_w) == pytest.approx((0.11, 0.15))


@pytest.mark.django_db
def test_faces_keep_their_numbers_whatever_the_detector_order():
    participant = ParticipantFactory()
    boxes = [(0.05, 0.1, 0.1, 0.15), (0.45, 0.1, 0.1, 0.15), (0.75, 0.5, 0.1, 0.15)]
    labels = ["happy", "sad", "neutral"]
    record(
        participant, 1, 0.5, *(face(label, box) for label, box in zip(labels, boxes, strict=True))
    )
    record(
        participant,
        2,
        1.5,
        *(face(label, box) for label, box in zip(labels[::-1], boxes[::-1], strict=True)),
    )
    numbers = defaultdict(set)
    for obs in FaceObservation.objects.select_related("track"):
        numbers[obs.box_x].add(obs.track.number)
    assert sorted(numbers) == sorted(b[0] for b in boxes)
    assert all(len(n) == 1 for n in numbers.values())
    assert sorted(n.pop() for n in numbers.values()) == [1, 2, 3]


@pytest.mark.django_db
def test_track_survives_a_brief_miss_and_dies_after_max_age():
    participant = ParticipantFactory()
    record(participant, 1, 0.0, face())
    record(participant, 2, 1.0)  # no face
    record(participant, 3, 4.5, face())  # 4.5 s after the last match
    record(participant, 4, 10.0, face())  # 5.5 s: the track is dead
    numbers = list(FaceObservation.objects.order_by("frame__seq").values_list("track__number"))
    assert numbers == [(1,), (1,), (2,)]
    # ... and its smoothing starts over: the first observation of track 2 is raw again.
    newest = FaceObservation.objects.get(frame__seq=4)
    assert newest.smoothed_probabilities == pytest.approx(newest.probabilities)


@pytest.mark.django_db
def test_slow_sessions_keep_tracks_for_three_frame_intervals():
    participant = ParticipantFactory(session=ClassSessionFactory(live=True, frame_interval_s=10))
    record(participant, 1, 0.0, face())
    record(participant, 2, 20.0, face())  # one frame missed at 10 s
    assert Track.objects.get().hits == 2


@pytest.mark.django_db
def test_late_frame_gets_its_track_but_leaves_its_state():
    participant = ParticipantFactory()
    record(participant, 1, 1.0, face("happy"))
    record(participant, 3, 3.0, face("sad"))
    track_before = Track.objects.values().get()
    record(participant, 2, 2.0, face("angry"))
    track_after = Track.objects.values().get()
    late = FaceObservation.objects.get(frame__seq=2)
    assert late.track_id == track_before["id"] and late.label == "angry"
    assert late.smoothed_probabilities == track_before["smoothed_probabilities"]
    assert track_after == track_before | {"hits": 3}


@pytest.mark.django_db
def test_frame_without_faces_counts_but_creates_no_track(django_capture_on_commit_callbacks):
    participant = ParticipantFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        frame = record(participant, 1, 0.0)
    assert frame.face_count == 0 and len(callbacks) == 1
    assert not Track.objects.exists()
    participant.refresh_from_db()
    assert participant.frames_analysed == 1
    bucket = TimelineBucket.objects.get()
    assert (bucket.index, bucket.frames, bucket.face_sum) == (0, 1, 0)


# --- pose and validation ------------------------------------------------------------------------


@pytest.mark.django_db
def test_head_pose_is_stored():
    participant = ParticipantFactory()
    record(
        participant,
        1,
        0.0,
        face(yaw=-35.5, pitch=12.0, attentive=False),
        face(box=(0.6, 0.2, 0.1, 0.2), yaw=None, pitch=None, attentive=None),
    )
    first, second = FaceObservation.objects.order_by("index")
    assert (first.yaw_deg, first.pitch_deg, first.attentive) == (-35.5, 12.0, False)
    assert (second.yaw_deg, second.pitch_deg, second.attentive) == (None, None, None)
    bucket = TimelineBucket.objects.get()
    assert (bucket.face_sum, bucket.pose_faces, bucket.attentive_faces) == (2, 1, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [
        {"yaw_deg": 181.0},
        {"yaw_deg": math.nan},
        {"pitch_deg": -90.5},
        {"pitch_deg": "up"},
        {"attentive": "yes"},
        {"attentive": 1},
        {"label": None},  # expression fields: all three or none
        {"probabilities": None, "label": None},
    ],
)
def test_malformed_faces_are_rejected_and_nothing_is_written(bad):
    participant = ParticipantFactory()
    record(participant, 1, 0.0, face())
    before = snapshot(participant)
    with pytest.raises(ValueError):
        record(participant, 2, 1.0, face() | bad)
    assert snapshot(participant) == before


@pytest.mark.django_db
def test_face_without_expression_in_an_expression_session_is_stored_as_null():
    participant = ParticipantFactory()
    record(participant, 1, 0.0, face() | {"probabilities": None, "label": None, "confidence": None})
    obs = FaceObservation.objects.get()
    assert (obs.label, obs.probabilities, obs.smoothed_label, obs.track.number) == (
        None,
        None,
        None,
        1,
    )


@pytest.mark.django_db
def test_unassessed_face_keeps_its_track_and_pose_but_no_expression_and_leaves_the_smoothing():
    participant = ParticipantFactory()
    record(participant, 1, 0.0, face("happy") | {"assessed": True})
    blurred = face("happy") | {
        "probabilities": None,
        "label": None,
        "confidence": None,
        "assessed": False,
        "quality_issue": "blurred",
    }
    record(participant, 2, 1.0, blurred)
    record(participant, 3, 2.0, face("sad") | {"assessed": True})
    first, second, third = FaceObservation.objects.order_by("frame__seq")
    assert (first.assessed, first.quality_issue, first.smoothed_label) == (True, None, "happy")
    assert (second.assessed, second.quality_issue) == (False, "blurred")
    assert (second.label, second.probabilities, second.smoothed_label) == (None, None, None)
    assert second.attentive is True and second.yaw_deg == 5.0
    # one track throughout; the unread frame did not move the smoothed state
    assert first.track_id == second.track_id == third.track_id
    assert Track.objects.get().hits == 3
    dt = 2.0  # the EMA step of the third frame spans both later frames
    alpha = 1 - math.exp(-dt / TAU_S)
    happy_weight = third.smoothed_probabilities[EXPRESSIONS.index("happy")]
    expected = (1 - alpha) * first.probabilities[EXPRESSIONS.index("happy")] + alpha * (
        third.probabilities[EXPRESSIONS.index("happy")]
    )
    assert happy_weight == pytest.approx(expected)
    # the timeline bucket counts the face, not an expression, for the unread frame
    bucket = TimelineBucket.objects.get(participant=participant)
    assert bucket.face_sum == 3
    assert sum(getattr(bucket, label) for label in EXPRESSIONS) == 2  # frames 1 and 3 only


@pytest.mark.django_db
def test_the_database_refuses_an_unassessed_face_with_an_expression():
    from django.db import IntegrityError, transaction

    participant = ParticipantFactory()
    record(participant, 1, 0.0, face("happy"))
    obs = FaceObservation.objects.get()
    FaceObservation.objects.filter(pk=obs.pk).update(assessed=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        FaceObservation.objects.filter(pk=obs.pk).update(assessed=False, quality_issue="blurred")


@pytest.mark.django_db
def test_attention_only_session_stores_no_expression_even_if_the_worker_sends_one():
    session = ClassSessionFactory(live=True, analysis=AnalysisMode.ATTENTION)
    participant = ParticipantFactory(session=session)
    record(
        participant, 1, 0.0, face("happy", attentive=True), face("sad", box=(0.6, 0.2, 0.1, 0.2))
    )
    record(participant, 2, 1.0, face("happy", attentive=False))
    # Not even validated: a garbage label cannot fail an attention-only frame.
    record(participant, 3, 2.0, face() | {"label": "bored", "probabilities": [1.0]})
    faces = FaceObservation.objects.all()
    assert faces.count() == 4
    for obs in faces:
        assert (obs.label, obs.confidence, obs.probabilities) == (None, None, None)
        assert (obs.smoothed_label, obs.smoothed_probabilities) == (None, None)
        assert obs.track is not None and obs.attentive is not None
    assert list(Track.objects.values_list("number", "hits", "smoothed_probabilities")) == [
        (1, 3, None),
        (2, 1, None),
    ]
    bucket = TimelineBucket.objects.get()
    assert (bucket.frames, bucket.face_sum, bucket.pose_faces, bucket.attentive_faces) == (
        3,
        4,
        4,
        3,
    )
    assert all(getattr(bucket, label) == 0 for label in EXPRESSIONS)


# --- idempotency, counters and buckets ----------------------------------------------------------


@pytest.mark.django_db
def test_duplicate_seq_changes_nothing(django_capture_on_commit_callbacks):
    participant = ParticipantFactory()
    record(participant, 1, 0.0, face("happy"))
    record(participant, 2, 1.0, face("happy"))
    before = snapshot(participant)
    with django_capture_on_commit_callbacks() as callbacks:
        again = record(participant, 2, 1.5, face("sad"), face("sad", box=(0.6, 0.6, 0.1, 0.1)))
    assert again is None and callbacks == []
    assert snapshot(participant) == before


@pytest.mark.django_db
def test_bucket_counts_equal_a_recount_from_the_observations():
    rng = random.Random(11)
    session = ClassSessionFactory(live=True)
    participants = [ParticipantFactory(session=session) for _ in range(2)]
    tiles = [(0.05 + 0.3 * i, 0.3, 0.12, 0.18) for i in range(3)]
    for participant in participants:
        for seq in range(1, 25):
            faces = [
                face(
                    rng.choice(EXPRESSIONS),
                    box=tile,
                    attentive=rng.choice([True, False, None]),
                )
                for tile in tiles
                if rng.random() < 0.8
            ]
            # About 1 fps over ~20 s, so frames fall in 4 to 5 buckets; one arrives late.
            seconds = seq * 0.85 + rng.uniform(0, 0.3) if seq != 7 else 2.0
            record(participant, seq, seconds, *faces)
    stored = stored_buckets(session)
    assert stored == recount_buckets(session)
    assert len({index for _, index in stored}) >= 4
    for participant in participants:
        participant.refresh_from_db()
        assert participant.frames_analysed == 24
    # The buckets count smoothed labels, which here differ from the raw ones somewhere.
    assert FaceObservation.objects.exclude(label=F("smoothed_label")).exists()


@pytest.mark.django_db
def test_results_broadcast_after_commit(django_capture_on_commit_callbacks):
    participant = ParticipantFactory()
    with (
        mock.patch("classroom.realtime.broadcast") as broadcast,
        mock.patch("classroom.realtime.notify_frame_result") as notify,
        django_capture_on_commit_callbacks(execute=True),
    ):
        record(participant, 1, 0.0, face(), face(box=(0.6, 0.6, 0.1, 0.1)))
    broadcast.assert_called_once_with(participant.session.pk)
    notify.assert_called_once_with(participant.pk, 1, 2)


# --- dropped frames -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_record_frame_dropped_counts_and_broadcasts(django_capture_on_commit_callbacks, caplog):
    participant = ParticipantFactory()
    caplog.set_level("INFO", logger="classroom.services")
    with (
        mock.patch("classroom.realtime.broadcast") as broadcast,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.record_frame_dropped(participant_id=participant.pk, seq=4, reason="expired")
        assert services.record_frame_dropped(
            participant_id=participant.pk, seq=None, reason="stale"
        )
    assert broadcast.call_args_list == [mock.call(participant.session.pk)] * 2
    participant.refresh_from_db()
    assert (participant.frames_dropped, participant.frames_analysed) == (2, 0)
    assert "frame 4 of participant" in caplog.text and "expired" in caplog.text


@pytest.mark.django_db
def test_record_frame_dropped_for_a_missing_participant_is_false(
    django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.record_frame_dropped(participant_id=987654, seq=1, reason="stale") is False
        assert services.record_frame_dropped(participant_id="x", seq=1, reason="stale") is False
    assert callbacks == []


@pytest.mark.django_db
def test_record_frame_dropped_rejects_an_unknown_reason():
    participant = ParticipantFactory()
    with pytest.raises(ValueError):
        services.record_frame_dropped(participant_id=participant.pk, seq=1, reason="lost")
    participant.refresh_from_db()
    assert participant.frames_dropped == 0


# --- concurrency (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_for_one_participant_keep_tracks_and_buckets_consistent():
    """Two threads (two database connections) record interleaved frames of one participant."""
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: set DATABASE_URL=postgres://...")
    participant = ParticipantFactory()
    session = participant.session
    tiles = [(0.05 + 0.3 * i, 0.3, 0.12, 0.18) for i in range(3)]
    frames = 40
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(seqs):
        try:
            barrier.wait()
            for seq in seqs:
                labels = [EXPRESSIONS[(seq + i) % 7] for i in range(3)]
                record(
                    participant,
                    seq,
                    seq * 0.5,
                    *(face(label, box=tile) for label, tile in zip(labels, tiles, strict=True)),
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    with (
        mock.patch("classroom.realtime.broadcast"),
        mock.patch("classroom.realtime.notify_frame_result"),
    ):
        threads = [
            threading.Thread(target=worker, args=(range(start, frames + 1, 2),)) for start in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not errors, errors
    participant.refresh_from_db()
    assert participant.frames_analysed == frames
    tracks = list(Track.objects.filter(participant=participant).order_by("number"))
    assert [(t.number, t.hits) for t in tracks] == [(1, frames), (2, frames), (3, frames)]
    assert all(t.last_seq == frames for t in tracks)
    assert FaceObservation.objects.filter(frame__participant=participant).count() == 3 * frames
    for track in tracks:
        boxes = set(track.observations.values_list("box_x", flat=True))
        assert len(boxes) == 1  # one person, one track
    assert stored_buckets(session) == recount_buckets(session)
    for track in tracks:
        smoothed = track.smoothed_probabilities
        newest = track.observations.get(frame__seq=frames)
        assert newest.smoothed_probabilities == smoothed  # the newest frame set the state
        assert track.observations.exclude(smoothed_label=None).count() == frames
        assert sum(smoothed) == pytest.approx(1.0)
        assert newest.smoothed_label == tracking.argmax_label(smoothed, EXPRESSIONS)
