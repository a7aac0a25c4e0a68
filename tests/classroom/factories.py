"""factory_boy factories and real test images for the classroom tests.

Import as ``from tests.classroom.factories import ...`` (this folder is on ``sys.path`` under pytest's default
import mode; it has no ``__init__.py`` on purpose: a package here would be named ``classroom``).
"""

from __future__ import annotations

import io
from datetime import timedelta

import factory
import numpy as np
from django.db.models import F
from django.utils import timezone
from factory.django import DjangoModelFactory
from PIL import Image

from classroom.choices import EXPRESSIONS, SessionStatus, UserRole
from classroom.models import (
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
    TimelineBucket,
    Track,
    User,
)
from classroom.services.timeline import add_frame_to_timeline
from contracts import encode_frame

PASSWORD = "test-password-not-secret"


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.org")
    password = factory.django.Password(PASSWORD)
    role = UserRole.TEACHER


class TeacherFactory(UserFactory):
    username = factory.Sequence(lambda n: f"teacher{n}")
    role = UserRole.TEACHER


class AdminFactory(UserFactory):
    """A staff admin (sees every session, may use Django admin)."""

    username = factory.Sequence(lambda n: f"admin{n}")
    role = UserRole.ADMIN
    is_staff = True


class ClassSessionFactory(DjangoModelFactory):
    """A draft session; ``live=True`` or ``ended=True`` for the other states."""

    class Meta:
        model = ClassSession

    teacher = factory.SubFactory(TeacherFactory)
    title = factory.Sequence(lambda n: f"Class {n}")
    frame_interval_s = 1.0
    status = SessionStatus.DRAFT

    class Params:
        live = factory.Trait(
            status=SessionStatus.LIVE,
            started_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=60)),
        )
        ended = factory.Trait(
            status=SessionStatus.ENDED,
            started_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=120)),
            ended_at=factory.LazyFunction(timezone.now),
        )


class ParticipantFactory(DjangoModelFactory):
    """A consenting participant of a live session."""

    class Meta:
        model = Participant

    session = factory.SubFactory(ClassSessionFactory, live=True)
    display_name = factory.Sequence(lambda n: f"Student {n}")
    consent_given_at = factory.LazyFunction(timezone.now)


class FrameResultFactory(DjangoModelFactory):
    class Meta:
        model = FrameResult

    participant = factory.SubFactory(ParticipantFactory)
    seq = factory.Sequence(lambda n: n + 1)
    received_at = factory.LazyFunction(timezone.now)
    analysed_at = factory.LazyAttribute(lambda o: o.received_at + timedelta(milliseconds=40))
    face_count = 0
    width = 640
    height = 480
    timings_ms = factory.LazyFunction(lambda: {"total": 12.5})


class FaceObservationFactory(DjangoModelFactory):
    class Meta:
        model = FaceObservation

    frame = factory.SubFactory(FrameResultFactory)
    index = factory.Sequence(lambda n: n)
    box_x = 0.1
    box_y = 0.2
    box_w = 0.3
    box_h = 0.4
    score = 0.9
    label = "neutral"
    confidence = 0.8
    probabilities = factory.LazyFunction(lambda: [0.2 / 6] * 6 + [0.8])


class SessionReportFactory(DjangoModelFactory):
    class Meta:
        model = SessionReport

    session = factory.SubFactory(ClassSessionFactory, ended=True)
    summary = factory.LazyFunction(dict)


# --- analysis results, as the worker sends them -------------------------------------------------


def face_dict(label: str = "happy", box=(0.1, 0.2, 0.2, 0.3), score: float = 0.9) -> dict:
    """One face of ``FrameAnalysis.to_dict()`` with ``label`` as the top class (p = 0.94)."""
    probabilities = [0.01] * len(EXPRESSIONS)
    probabilities[EXPRESSIONS.index(label)] = 1 - 0.01 * (len(EXPRESSIONS) - 1)
    return {
        "box": list(box),
        "score": score,
        "probabilities": probabilities,
        "label": label,
        "confidence": max(probabilities),
    }


def result_dict(*labels: str, width: int = 640, height: int = 480) -> dict:
    """``FrameAnalysis.to_dict()`` with one face per label."""
    return {
        "width": width,
        "height": height,
        "faces": [
            face_dict(label, box=(0.1 + 0.2 * i, 0.2, 0.15, 0.3)) for i, label in enumerate(labels)
        ],
        "timings_ms": {"decode": 1.0, "detect": 5.0, "crop": 0.2, "classify": 2.0, "total": 8.2},
    }


# --- real images --------------------------------------------------------------------------------


def image_bytes(
    fmt: str = "JPEG", size: tuple[int, int] = (64, 48), seed: int = 0, **save_kwargs
) -> bytes:
    """A real encoded image of random noise.

    Args:
        fmt: Pillow format name ("JPEG", "PNG", "WEBP", "GIF", ...).
        size: (width, height) in pixels.
        seed: RNG seed (same seed, same bytes).
    """
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def frame_message(
    seq: int = 1, image: bytes | None = None, captured_at_ms: float = 1.7e12
) -> bytes:
    """A binary /ws/stream/ message: 12-byte header + image (a small JPEG by default)."""
    return encode_frame(seq, captured_at_ms, image if image is not None else image_bytes())


# --- tracks, timeline buckets, and analysed frames stored directly -------------------------------


class TrackFactory(DjangoModelFactory):
    """An anonymous face track of a participant (``number`` 1, 2, ... per factory call)."""

    class Meta:
        model = Track

    participant = factory.SubFactory(ParticipantFactory)
    number = factory.Sequence(lambda n: n + 1)
    first_seen_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyAttribute(lambda o: o.first_seen_at)
    last_seq = 1
    box_x = 0.1
    box_y = 0.2
    box_w = 0.3
    box_h = 0.4
    hits = 1


class TimelineBucketFactory(DjangoModelFactory):
    class Meta:
        model = TimelineBucket

    participant = factory.SubFactory(ParticipantFactory)
    index = 0


def face_row(
    label: str | None = "neutral",
    smoothed: str | None = "",
    *,
    attentive: bool | None = True,
    yaw_deg: float | None = 0.0,
    pitch_deg: float | None = 0.0,
    track: Track | None = None,
    quality_issue: str | None = None,
) -> dict:
    """One face for :func:`store_frame`: raw ``label`` (``None``: no expression computed), the
    smoothed label (``""``: same as ``label``), head pose and track. A ``quality_issue`` makes
    it a face the gate did not assess (give it no label)."""
    return {
        "quality_issue": quality_issue,
        "label": label,
        "smoothed": label if smoothed == "" else smoothed,
        "attentive": attentive,
        "yaw_deg": yaw_deg,
        "pitch_deg": pitch_deg,
        "track": track,
    }


def _probabilities(label: str) -> list[float]:
    probabilities = [0.01] * len(EXPRESSIONS)
    probabilities[EXPRESSIONS.index(label)] = 1 - 0.01 * (len(EXPRESSIONS) - 1)
    return probabilities


def store_frame(
    participant: Participant,
    seq: int,
    faces=(),
    *,
    received_at=None,
    lag_ms: float = 40.0,
    captured_at=None,
) -> FrameResult:
    """Store one analysed frame with chosen raw AND smoothed labels (no tracking, no smoothing).

    Creates the ``FrameResult`` and its ``FaceObservation`` rows (raw and smoothed labels, pose,
    track), adds the frame to its ``TimelineBucket`` with the recording code itself
    (``services.timeline.add_frame_to_timeline``) and increments
    ``Participant.frames_analysed``, as ``services.record_frame_result`` does. Tests that need
    real tracks and smoothing call ``record_frame_result`` instead.

    Args:
        participant: a participant of a started session.
        seq: frame sequence number.
        faces: :func:`face_row` dicts.
        received_at: arrival time (aware); default now.
        lag_ms: analysed_at - received_at.
        captured_at: client capture time (aware) or None.
    """
    received_at = received_at or timezone.now()
    frame = FrameResult.objects.create(
        participant=participant,
        seq=seq,
        captured_at=captured_at,
        received_at=received_at,
        analysed_at=received_at + timedelta(milliseconds=lag_ms),
        face_count=len(faces),
        width=640,
        height=480,
        timings_ms={"total": 8.0},
    )
    observations = []
    for i, face in enumerate(faces):
        label, smoothed = face["label"], face["smoothed"]
        observations.append(
            FaceObservation.objects.create(
                frame=frame,
                index=i,
                track=face["track"],
                box_x=0.1,
                box_y=0.2,
                box_w=0.2,
                box_h=0.3,
                score=0.9,
                label=label,
                confidence=None if label is None else max(_probabilities(label)),
                probabilities=None if label is None else _probabilities(label),
                smoothed_label=smoothed,
                smoothed_probabilities=None if smoothed is None else _probabilities(smoothed),
                yaw_deg=face["yaw_deg"],
                pitch_deg=face["pitch_deg"],
                attentive=face["attentive"],
                assessed=face["quality_issue"] is None,
                quality_issue=face["quality_issue"],
            )
        )
    add_frame_to_timeline(participant.pk, participant.session, observations, received_at)
    Participant.objects.filter(pk=participant.pk).update(
        frames_analysed=F("frames_analysed") + 1, last_seen_at=received_at
    )
    return frame
