"""End to end: backpressure with the real Celery worker process and Redis broker.

Frames that wait longer than their time-to-live are not analysed and are counted in
``Participant.frames_dropped``: a message whose ``expires`` passed while the worker was paused is
discarded by Celery itself (signal ``task_revoked`` with ``expired=True`` in the worker's main
process, counted from the message headers), and a frame that reaches the task already older than
``ENGAGEMENT_FRAME_TTL_S`` is dropped as stale.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from celery import Celery

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sender(live_stack, monkeypatch):
    """``classroom.dispatch`` sending to the live stack's broker (this process's own is unused)."""
    from classroom import dispatch

    app = Celery("e2e-sender", broker=live_stack.env["REDIS_URL"], set_as_current=False)
    app.conf.task_serializer = "json"
    monkeypatch.setattr(dispatch, "current_app", app)
    yield dispatch
    app.close()


@pytest.fixture
def participant(live_stack):
    from django.contrib.auth import get_user_model

    from classroom import services

    teacher = get_user_model().objects.create_user(
        username="backpressure-teacher", password="e2e-Backpressure-1", role="teacher"
    )
    session = services.create_session(teacher=teacher, title="Backpressure", frame_interval_s=1.0)
    services.start_session(session, by=teacher)
    return services.join_session(code=session.join_code, display_name="Eve", consent=True)


def _wait_for_drops(participant, expected: int, live_stack, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        participant.refresh_from_db()
        if participant.frames_dropped >= expected or time.monotonic() > deadline:
            return participant.frames_dropped
        time.sleep(0.25)


def test_expired_and_stale_frames_are_dropped_and_counted(
    live_stack, sender, participant, settings, webcam_photo
):
    from classroom.models import FrameResult

    jpeg = webcam_photo.read_bytes()
    expired = 3

    # Pause the worker's main process: nothing is received or handed to the pool meanwhile.
    os.kill(live_stack.worker_pid, signal.SIGSTOP)
    try:
        settings.ENGAGEMENT_FRAME_TTL_S = 0.5
        for seq in range(1, expired + 1):
            now_ms = time.time() * 1000.0
            sender.send_analyze_frame(
                participant_id=participant.pk,
                seq=seq,
                image=jpeg,
                captured_at=now_ms - 20.0,
                received_at=now_ms,
            )
        time.sleep(1.5)  # three times the time-to-live
    finally:
        os.kill(live_stack.worker_pid, signal.SIGCONT)

    assert _wait_for_drops(participant, expired, live_stack) == expired, live_stack.logs()
    log = live_stack.worker_log.read_text(errors="replace")
    assert "Discarding revoked task" in log, log[-3000:]

    # A frame the broker delivers in time but that the server received long ago (the worker's
    # ENGAGEMENT_FRAME_TTL_S is 10 s): the task drops it as stale without analysing it.
    settings.ENGAGEMENT_FRAME_TTL_S = 60.0
    now_ms = time.time() * 1000.0
    sender.send_analyze_frame(
        participant_id=participant.pk,
        seq=expired + 1,
        image=jpeg,
        captured_at=now_ms - 30_000.0,
        received_at=now_ms - 30_000.0,
    )
    assert _wait_for_drops(participant, expired + 1, live_stack) == expired + 1, live_stack.logs()

    # ... and a fresh one is analysed as usual, so the worker was only paused, never broken.
    sender.send_analyze_frame(
        participant_id=participant.pk,
        seq=expired + 2,
        image=jpeg,
        captured_at=time.time() * 1000.0,
        received_at=time.time() * 1000.0,
    )
    deadline = time.monotonic() + 60
    while not FrameResult.objects.filter(participant=participant).exists():
        assert time.monotonic() < deadline, live_stack.logs()
        time.sleep(0.25)
    assert list(
        FrameResult.objects.filter(participant=participant).values_list("seq", flat=True)
    ) == [expired + 2]
    participant.refresh_from_db()
    assert participant.frames_dropped == expired + 1
    assert participant.frames_analysed == 1
