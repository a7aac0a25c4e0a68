"""Sending Celery tasks BY NAME (classroom never imports the worker).

Frames travel base64-encoded inside the task message and are never logged: ``kwargsrepr``
replaces the payload with its size in Celery's logs and events. Callers (``services``) send
from ``transaction.on_commit`` so a task never runs before the rows it needs are committed.
"""

from __future__ import annotations

import base64
import logging

from celery import current_app
from django.conf import settings

from contracts import (
    ANALYZE_FRAME_TASK,
    BUILD_REPORT_TASK,
    DEFAULT_QUEUE,
    INFERENCE_QUEUE,
    PARTICIPANT_HEADER,
    SEQ_HEADER,
    AnalysisMode,
    StreamSource,
)

logger = logging.getLogger(__name__)


def send_analyze_frame(
    *,
    participant_id: int,
    seq: int,
    image: bytes,
    key: int | None = None,
    captured_at: float | None,
    received_at: float,
    source: str = StreamSource.WEBCAM,
    analysis: str = AnalysisMode.EXPRESSION,
) -> None:
    """Queue one frame for analysis (at-most-once: short expiry, no retry).

    Args:
        participant_id: ``Participant.pk``.
        seq: client sequence number (uint32): what the student's ``result`` or ``dropped``
            message names.
        key: the frame's server key (``Participant.frames_received`` after it), unique per
            participant; the stored result is unique on it. ``None``: ``seq`` is the key.
        image: JPEG/PNG/WebP bytes (already validated by ``services.accept_frame``).
        captured_at: client capture time, ms since the Unix epoch, or ``None``.
        received_at: server arrival time, ms since the Unix epoch.
        source: ``choices.StreamSource`` value, ``"webcam"`` or ``"screen"``: selects the
            worker's face-detection settings.
        analysis: ``choices.AnalysisMode`` value of the session, ``"expression"`` or
            ``"attention"`` (the worker then never calls the expression classifier).

    The message expires after ``settings.ENGAGEMENT_FRAME_TTL_S`` seconds (~10): a stale live
    frame is worth nothing. It carries the headers ``contracts.PARTICIPANT_HEADER`` and
    ``contracts.SEQ_HEADER`` (ids only, no payload) so the worker can count an expired message.
    """
    current_app.send_task(
        ANALYZE_FRAME_TASK,
        kwargs={
            "participant_id": participant_id,
            "seq": seq,
            "key": key,
            "frame_b64": base64.b64encode(image).decode("ascii"),
            "captured_at": captured_at,
            "received_at": received_at,
            "source": source,
            "analysis": analysis,
        },
        headers={PARTICIPANT_HEADER: participant_id, SEQ_HEADER: seq},
        queue=INFERENCE_QUEUE,
        expires=settings.ENGAGEMENT_FRAME_TTL_S,
        argsrepr="()",
        kwargsrepr=(
            f"{{participant_id: {participant_id}, seq: {seq}, key: {key}, "
            f"<frame {len(image)} bytes>}}"
        ),
    )


def send_build_report(*, session_id) -> None:
    """Queue the report task of a session (at-least-once; the task is idempotent).

    Args:
        session_id: ``ClassSession.pk`` (UUID or its string).
    """
    current_app.send_task(
        BUILD_REPORT_TASK, kwargs={"session_id": str(session_id)}, queue=DEFAULT_QUEUE
    )
    logger.info("queued report for session %s", session_id)
