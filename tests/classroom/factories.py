"""factory_boy factories and real test images for the classroom tests.

Import as ``from factories import ...`` (this folder is on ``sys.path`` under pytest's default
import mode; it has no ``__init__.py`` on purpose: a package here would be named ``classroom``).
"""

from __future__ import annotations

import io
from datetime import timedelta

import factory
import numpy as np
from django.utils import timezone
from factory.django import DjangoModelFactory
from PIL import Image

from classroom.choices import EXPRESSIONS, SessionStatus, UserRole
from classroom.events import encode_frame
from classroom.models import (
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
    User,
)

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
