"""classroom.services: sessions, joining, frame intake and results."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from classroom import services
from classroom.choices import JOIN_CODE_ALPHABET, SessionStatus
from classroom.dispatch import ANALYZE_FRAME_TASK, BUILD_REPORT_TASK
from classroom.models import ClassSession, FaceObservation, FrameResult, Participant
from tests.classroom.factories import (
    AdminFactory,
    ClassSessionFactory,
    ParticipantFactory,
    TeacherFactory,
    face_dict,
    frame_message,
    image_bytes,
    result_dict,
)

pytestmark = pytest.mark.django_db


# --- sessions -------------------------------------------------------------------------------------


def test_create_session_is_draft_with_join_code():
    teacher = TeacherFactory()
    session = services.create_session(teacher=teacher, title="  Maths   3B ")
    assert session.status == SessionStatus.DRAFT
    assert session.title == "Maths 3B"
    assert session.frame_interval_s == 1.0
    assert len(session.join_code) == 6 and set(session.join_code) <= set(JOIN_CODE_ALPHABET)
    assert session.teacher == teacher
    assert session.analysis == "expression"


def test_create_attention_only_session():
    session = services.create_session(teacher=TeacherFactory(), title="Exam", analysis="attention")
    session.refresh_from_db()
    assert session.analysis == "attention"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"title": ""},
        {"title": "x" * 201},
        {"frame_interval_s": 0.1},
        {"frame_interval_s": 10.5},
        {"frame_interval_s": "abc"},
        {"analysis": "emotion"},
        {"analysis": None},
    ],
)
def test_create_session_validates(kwargs):
    with pytest.raises(ValidationError):
        services.create_session(teacher=TeacherFactory(), **{"title": "Class", **kwargs})
    assert not ClassSession.objects.exists()


def test_create_session_needs_an_account():
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(PermissionDenied):
        services.create_session(teacher=AnonymousUser(), title="Class")


def test_frame_interval_range_is_a_database_constraint():
    with pytest.raises(IntegrityError), transaction.atomic():
        ClassSessionFactory(frame_interval_s=20.0)


def test_status_timestamps_are_a_database_constraint():
    with pytest.raises(IntegrityError), transaction.atomic():
        ClassSessionFactory(status=SessionStatus.LIVE, started_at=None)


def test_start_and_end_state_machine(django_capture_on_commit_callbacks, celery_app_mock):
    teacher = TeacherFactory()
    session = services.create_session(teacher=teacher, title="Class")
    services.start_session(session, by=teacher)
    assert session.status == SessionStatus.LIVE and session.started_at is not None
    started_at = session.started_at
    services.start_session(session, by=teacher)  # idempotent
    assert session.started_at == started_at

    with django_capture_on_commit_callbacks(execute=True):
        services.end_session(session, by=teacher)
    assert session.status == SessionStatus.ENDED and session.ended_at >= started_at
    celery_app_mock.send_task.assert_called_once_with(
        BUILD_REPORT_TASK, kwargs={"session_id": str(session.pk)}, queue="default"
    )
    services.end_session(session, by=teacher)  # idempotent, no second report
    assert celery_app_mock.send_task.call_count == 1

    with pytest.raises(services.SessionStateError):
        services.start_session(session, by=teacher)


def test_draft_session_can_be_ended():
    teacher = TeacherFactory()
    session = ClassSessionFactory(teacher=teacher)
    services.end_session(session, by=teacher)
    assert session.status == SessionStatus.ENDED and session.started_at is None


def test_only_teacher_or_admin_may_start_or_end():
    session = ClassSessionFactory()
    other = TeacherFactory()
    with pytest.raises(PermissionDenied):
        services.start_session(session, by=other)
    with pytest.raises(PermissionDenied):
        services.end_session(session, by=other)
    session.refresh_from_db()
    assert session.status == SessionStatus.DRAFT
    admin = AdminFactory()
    services.start_session(session, by=admin)
    services.end_session(session, by=admin)
    assert session.status == SessionStatus.ENDED


# --- joining --------------------------------------------------------------------------------------


def test_join_session_stores_consent_time():
    session = ClassSessionFactory(live=True)
    before = time.time()
    participant = services.join_session(
        code=session.join_code.lower(), display_name=" Ada  L ", consent=True
    )
    assert participant.session == session
    assert participant.display_name == "Ada L"
    assert participant.consent_given_at.timestamp() >= before - 1
    assert participant.consent_given_at.tzinfo is not None


def test_join_draft_session_is_allowed():
    session = ClassSessionFactory()
    assert services.join_session(code=session.join_code, display_name="Ada", consent=True).pk


@pytest.mark.parametrize(
    ("code_of", "name", "consent", "expected"),
    [
        (lambda s: "ZZZZZZ", "Ada", True, "unknown_code"),
        (lambda s: "", "Ada", True, "unknown_code"),
        (lambda s: s.join_code, "", True, "bad_name"),
        (lambda s: s.join_code, "   ", True, "bad_name"),
        (lambda s: s.join_code, "x" * 41, True, "bad_name"),
        (lambda s: s.join_code, "Ada", False, "consent_required"),
    ],
)
def test_join_session_errors(code_of, name, consent, expected):
    session = ClassSessionFactory(live=True, join_code="ABCDEF")
    with pytest.raises(services.JoinError) as info:
        services.join_session(code=code_of(session), display_name=name, consent=consent)
    assert info.value.code == expected
    assert info.value.message
    assert not Participant.objects.exists()


def test_join_ended_session():
    session = ClassSessionFactory(ended=True)
    with pytest.raises(services.JoinError) as info:
        services.join_session(code=session.join_code, display_name="Ada", consent=True)
    assert info.value.code == "unknown_code"  # the same answer as a code that never existed


# --- frame intake -------------------------------------------------------------------------------


def test_accept_frame_counts_and_dispatches(django_capture_on_commit_callbacks, celery_app_mock):
    participant = ParticipantFactory()
    image = image_bytes("JPEG")
    with django_capture_on_commit_callbacks(execute=True):
        accepted = services.accept_frame(participant.pk, frame_message(7, image, 1.7e12))
    assert accepted == services.FrameAccepted(seq=7)
    participant.refresh_from_db()
    assert (participant.frames_received, participant.frames_rejected) == (1, 0)
    assert participant.last_seen_at is not None
    name = celery_app_mock.send_task.call_args.args[0]
    kwargs = celery_app_mock.send_task.call_args.kwargs
    assert name == ANALYZE_FRAME_TASK
    assert kwargs["queue"] == "inference"
    assert kwargs["kwargs"]["participant_id"] == participant.pk
    assert kwargs["kwargs"]["seq"] == 7


def test_ended_session_accepts_no_frames(celery_app_mock):
    participant = ParticipantFactory(session=ClassSessionFactory(ended=True))
    with pytest.raises(services.FrameRejected) as info:
        services.accept_frame(participant.pk, frame_message(3))
    assert (info.value.code, info.value.seq) == ("session_not_live", 3)
    participant.refresh_from_db()
    assert (participant.frames_received, participant.frames_rejected) == (1, 1)
    celery_app_mock.send_task.assert_not_called()


def test_unknown_participant_is_rejected():
    with pytest.raises(services.FrameRejected) as info:
        services.accept_frame(999_999, frame_message(1))
    assert info.value.code == "session_not_live"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (b"\x00\x00\x00\x01", "bad_header"),
        (frame_message(1, b"")[:12], "bad_header"),
        (frame_message(1, captured_at_ms=float("nan")), "bad_header"),
        (frame_message(1, image_bytes("GIF")), "bad_format"),
        (frame_message(1, b"\xff\xd8\xff\xe0" + b"\x00" * 200), "undecodable"),
        (frame_message(1, image_bytes("JPEG", (320, 240))[:600]), "undecodable"),
        (frame_message(1, image_bytes("JPEG", (1281, 2))), "too_many_pixels"),
        (frame_message(1, image_bytes("JPEG", (2, 1281))), "too_many_pixels"),
        (frame_message(1, image_bytes("PNG", (64, 48))), "bad_format"),
        (frame_message(1, image_bytes("WEBP", (64, 48))), "bad_format"),
    ],
)
def test_accept_frame_rejections(message, code):
    participant = ParticipantFactory()
    with pytest.raises(services.FrameRejected) as info:
        services.accept_frame(participant.pk, message)
    assert info.value.code == code


def test_accept_frame_takes_the_jpeg_the_page_sends_at_the_largest_side_it_sends():
    participant = ParticipantFactory()
    assert services.accept_frame(participant.pk, frame_message(1, image_bytes("JPEG"))).seq == 1
    big = image_bytes("JPEG", (1280, 720), quality=80)
    assert services.accept_frame(participant.pk, frame_message(2, big)).seq == 2


def test_accept_frame_size_limit(settings):
    settings.ENGAGEMENT_MAX_FRAME_BYTES = 2000
    participant = ParticipantFactory()
    image = image_bytes("JPEG", (64, 64), quality=100)
    assert len(image) > 2000
    with pytest.raises(services.FrameRejected) as info:
        services.accept_frame(participant.pk, frame_message(1, image))
    assert info.value.code == "too_large"


def test_rate_limiter_token_bucket():
    now = [0.0]
    limiter = services.FrameRateLimiter(burst=3, rate_factor=1.5, clock=lambda: now[0])
    assert [limiter.allow(1, 1.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow(2, 1.0)  # buckets are per participant
    now[0] += 1 / 1.5  # one token refilled at 1.5 frames per interval
    assert limiter.allow(1, 1.0)
    assert not limiter.allow(1, 1.0)
    # sustained: 1.5 frames per interval pass, 2 per interval do not
    passed = 0
    for _ in range(60):
        now[0] += 0.5
        passed += limiter.allow(1, 1.0)
    assert passed == pytest.approx(45, abs=3)
    # a slower session allows proportionally fewer frames
    now[0] += 100
    assert [limiter.allow(3, 10.0) for _ in range(4)] == [True, True, True, False]
    now[0] += 10 / 1.5
    assert limiter.allow(3, 10.0)


def test_accept_frame_rate_limited():
    participant = ParticipantFactory(session=ClassSessionFactory(live=True, frame_interval_s=10.0))
    codes = []
    for seq in range(1, 6):
        try:
            services.accept_frame(participant.pk, frame_message(seq))
            codes.append("ack")
        except services.FrameRejected as exc:
            codes.append(exc.code)
    assert codes == ["ack", "ack", "ack", "rate_limited", "rate_limited"]
    participant.refresh_from_db()
    assert (participant.frames_received, participant.frames_rejected) == (5, 2)


# --- results --------------------------------------------------------------------------------------


def test_record_frame_result_stores_numbers_only():
    participant = ParticipantFactory()
    frame = services.record_frame_result(
        participant_id=participant.pk,
        seq=5,
        result=result_dict("happy", "sad"),
        captured_at=1.7e12,
        received_at=time.time() * 1000,
    )
    assert frame.face_count == 2 and (frame.width, frame.height) == (640, 480)
    assert frame.captured_at.timestamp() == pytest.approx(1.7e9)
    assert frame.timings_ms["total"] == 8.2
    assert frame.received_at <= frame.analysed_at
    labels = list(frame.faces.order_by("index").values_list("label", flat=True))
    assert labels == ["happy", "sad"]
    face = frame.faces.get(index=0)
    assert (face.box_x, face.box_y, face.box_w, face.box_h) == pytest.approx((0.1, 0.2, 0.15, 0.3))
    assert len(face.probabilities) == 7 and face.score == 0.9


def test_record_frame_result_is_idempotent_on_seq():
    participant = ParticipantFactory()
    first = services.record_frame_result(
        participant_id=participant.pk, seq=1, result=result_dict("happy")
    )
    again = services.record_frame_result(
        participant_id=participant.pk, seq=1, result=result_dict("sad")
    )
    assert first is not None and again is None
    assert FrameResult.objects.filter(participant=participant, seq=1).count() == 1
    assert FaceObservation.objects.get().label == "happy"


def test_unique_constraint_on_participant_seq():
    participant = ParticipantFactory()
    services.record_frame_result(participant_id=participant.pk, seq=1, result=result_dict())
    with pytest.raises(IntegrityError), transaction.atomic():
        FrameResult.objects.create(
            participant=participant, seq=1, received_at=participant.joined_at, width=1, height=1
        )


def test_record_frame_result_duplicate_is_rolled_back_by_the_constraint():
    """No pre-check: the unique (participant, seq) constraint catches the duplicate, and the
    transaction's earlier writes (the frames_analysed increment) are rolled back with it."""
    participant = ParticipantFactory()
    services.record_frame_result(participant_id=participant.pk, seq=1, result=result_dict())
    assert (
        services.record_frame_result(participant_id=participant.pk, seq=1, result=result_dict())
        is None
    )
    participant.refresh_from_db()
    assert FrameResult.objects.count() == 1
    assert participant.frames_analysed == 1


def test_record_frame_result_dropped_for_ended_or_missing():
    participant = ParticipantFactory(session=ClassSessionFactory(ended=True))
    assert (
        services.record_frame_result(participant_id=participant.pk, seq=1, result=result_dict())
        is None
    )
    assert services.record_frame_result(participant_id=123456, seq=1, result=result_dict()) is None
    assert not FrameResult.objects.exists()


def test_record_frame_result_clips_boxes_to_the_frame():
    participant = ParticipantFactory()
    result = {
        "width": 100,
        "height": 100,
        "timings_ms": {},
        "faces": [face_dict("angry", box=(-0.1, 0.9, 0.3, 0.3))],
    }
    frame = services.record_frame_result(participant_id=participant.pk, seq=1, result=result)
    face = frame.faces.get()
    assert (face.box_x, face.box_y) == (0.0, 0.9)
    assert face.box_w == pytest.approx(0.2) and face.box_h == pytest.approx(0.1)


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 10, "height": 10, "faces": [face_dict() | {"label": "bored"}]},
        {"width": 10, "height": 10, "faces": [face_dict() | {"probabilities": [1.0]}]},
        {"width": 10, "height": 10, "faces": [face_dict() | {"box": [0, 0, 1]}]},
        {"width": "ten", "height": 10, "faces": []},
        {"width": 10, "height": 10, "faces": "none"},
    ],
)
def test_record_frame_result_rejects_malformed(bad):
    participant = ParticipantFactory()
    with pytest.raises(ValueError):
        services.record_frame_result(participant_id=participant.pk, seq=1, result=bad)
    assert not FrameResult.objects.exists()


def test_build_session_report_upserts():
    participant = ParticipantFactory()
    services.record_frame_result(participant_id=participant.pk, seq=1, result=result_dict("happy"))
    session = participant.session
    first = services.build_session_report(session.pk)
    second = services.build_session_report(str(session.pk))
    assert first.pk == second.pk
    assert ClassSession.objects.get(pk=session.pk).report.summary["totals"]["faces"] == 1
    assert services.build_session_report("00000000-0000-0000-0000-000000000000") is None


def test_a_restarted_client_counter_loses_no_frame(
    django_capture_on_commit_callbacks, celery_app_mock
):
    """A page without localStorage counts from 1 again after a reload: the server's key keeps
    both frames apart, and a redelivered message is still recorded once."""
    participant = ParticipantFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.accept_frame(participant.pk, frame_message(1))
        services.accept_frame(participant.pk, frame_message(2))
        services.frame_rate_limiter.forget(participant.pk)
        services.accept_frame(participant.pk, frame_message(1))  # the counter restarted
    sent = [c.kwargs["kwargs"] for c in celery_app_mock.send_task.call_args_list]
    assert [(k["seq"], k["key"]) for k in sent] == [(1, 1), (2, 2), (1, 3)]
    for kwargs in sent:
        services.record_frame_result(
            participant_id=participant.pk,
            seq=kwargs["seq"],
            key=kwargs["key"],
            result=result_dict("happy"),
        )
    again = services.record_frame_result(
        participant_id=participant.pk, seq=1, key=3, result=result_dict("happy")
    )
    assert again is None  # redelivered: recorded once
    participant.refresh_from_db()
    assert participant.frames_analysed == 3
    assert sorted(participant.frame_results.values_list("seq", flat=True)) == [1, 2, 3]


def test_frame_bytes_are_budgeted_per_client_address_across_participants(settings):
    """Ten joins from one client do not multiply what it may make the server decode."""
    settings.ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS = 10_000  # a burst of 20 kB
    image = image_bytes("JPEG", (64, 64), quality=100)
    assert 7_000 < len(image) < 10_000
    students = [ParticipantFactory() for _ in range(3)]
    address = "192.0.2.77"
    codes = []
    for n, student in enumerate(students, start=1):
        try:
            services.accept_frame(student.pk, frame_message(n, image), client_address=address)
            codes.append("ack")
        except services.FrameRejected as exc:
            codes.append(exc.code)
    assert codes == ["ack", "ack", "rate_limited"]
    # another address has its own budget; no address, no budget
    assert (
        services.accept_frame(
            students[2].pk, frame_message(9, image), client_address="192.0.2.78"
        ).seq
        == 9
    )
