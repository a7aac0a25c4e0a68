"""Property-based fuzzing of the frame intake (Hypothesis), through the real stream consumer.

Any sequence of binary messages from a joined student, well-formed or not: the consumer answers
each one with an ``ack`` or an ``error`` and stays open, the participant's counters add up, and
every acknowledged frame, once the worker has run on the queued message, has a stored result or
a counted drop (never silence). Bounded: 40 examples of at most 6 messages, no deadline.

Client sequence numbers may repeat (a restarted counter): the server's frame key keeps them
apart.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.sessions.backends.db import SessionStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from classroom import services
from classroom.models import FrameResult, Participant
from classroom.routing import websocket_urlpatterns
from inference_worker import live, runtime
from inference_worker.pipeline import Detection
from tests.classroom.factories import ClassSessionFactory
from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def _jpeg(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=80)
    return out.getvalue()


JPEGS = [_jpeg(64, 48, 0), _jpeg(160, 120, 1), _jpeg(8, 8, 2)]


@st.composite
def images(draw) -> bytes:
    """Valid JPEGs, cut, corrupted or replaced by noise."""
    base = draw(st.sampled_from(JPEGS))
    kind = draw(st.sampled_from(["valid", "cut", "flipped", "noise", "jpeg-magic-noise"]))
    if kind == "valid":
        return base
    if kind == "cut":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "flipped":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    noise = draw(st.binary(max_size=256))
    return (b"\xff\xd8\xff" + noise) if kind == "jpeg-magic-noise" else noise


@st.composite
def messages(draw) -> list[bytes]:
    seqs = draw(
        st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)), min_size=1, max_size=6)
    )
    out = []
    for seq in seqs:
        if draw(st.booleans()) and draw(st.booleans()):
            out.append(draw(st.binary(min_size=1, max_size=40)))  # not even a header
            continue
        captured = draw(st.one_of(st.just(1.7e12), st.floats(allow_nan=True, allow_infinity=True)))
        out.append(struct.pack(">Id", seq, captured) + draw(images()))
    return out


@pytest.fixture
def fake_models(monkeypatch):
    detector = FakeDetector([Detection(box=(2.0, 2.0, 40.0, 40.0), score=0.9)])
    monkeypatch.setattr(runtime, "get_detector", lambda *a, **k: detector)
    monkeypatch.setattr(runtime, "get_classifier", lambda *a, **k: FakeClassifier())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=messages())
def test_no_message_crashes_the_intake_or_goes_unanswered(batch, celery_app_mock, fake_models):
    session = ClassSessionFactory(live=True, frame_interval_s=0.2)
    participant = Participant.objects.create(
        session=session, display_name="Fuzz", consent_given_at=session.started_at
    )
    store = SessionStore()
    store[services.PARTICIPANT_SESSION_KEY] = participant.pk
    store.save()
    headers = [(b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={store.session_key}".encode())]
    celery_app_mock.send_task.reset_mock()

    async def scenario():
        communicator = WebsocketCommunicator(APP, "/ws/stream/", headers=headers)
        connected, _ = await communicator.connect()
        assert connected
        replies = []
        for message in batch:
            await communicator.send_to(bytes_data=message)
            replies.append(await communicator.receive_json_from(timeout=5))
        assert await communicator.receive_nothing(timeout=0.05)  # still open, nothing else
        await communicator.disconnect()
        return replies

    replies = async_to_sync(scenario)()
    assert all(r["type"] in ("ack", "error") for r in replies), replies
    acked = [r["seq"] for r in replies if r["type"] == "ack"]
    errors = [r for r in replies if r["type"] == "error"]
    assert all(r["code"] and r["message"] for r in errors)

    participant.refresh_from_db()
    assert participant.frames_received == len(batch)
    assert participant.frames_rejected == len(errors)

    # The worker runs on every queued message (no broker: the task's kwargs as sent).
    sent = [call.kwargs["kwargs"] for call in celery_app_mock.send_task.call_args_list]
    assert sorted(k["seq"] for k in sent) == sorted(acked)
    for kwargs in sent:
        live.analyze_live_frame(**{**kwargs, "received_at": None})
    participant.refresh_from_db()
    stored = set(FrameResult.objects.filter(participant=participant).values_list("seq", flat=True))
    assert len(stored) + participant.frames_dropped == len(acked), (acked, stored)
    assert stored <= {k["key"] for k in sent}  # results are stored under the server's key
