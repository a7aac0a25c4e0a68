"""Celery tasks of the worker: thin wrappers that unpack JSON values and call plain functions.

Importing this module loads neither TensorFlow nor MediaPipe: models are loaded by
:mod:`inference_worker.runtime` on first use, once per worker process, after the fork.
"""

from __future__ import annotations

import base64
import binascii
import logging

from celery.signals import worker_process_init
from django.conf import settings

from classroom import services
from inference_worker import pipeline, runtime
from inference_worker.celery import app

logger = logging.getLogger(__name__)

ANALYZE_FRAME_TASK = "inference_worker.tasks.analyze_frame_task"
"""The task name the classroom sends by (``current_app.send_task``)."""


@app.task(name=ANALYZE_FRAME_TASK, ignore_result=True, max_retries=0, acks_late=False)
def analyze_frame_task(
    participant_id: int,
    seq: int,
    frame_b64: str,
    captured_at: float | None = None,
    received_at: float | None = None,
):
    """Analyse one live frame and record the result.

    Delivery: AT MOST ONCE. The sender sets a short ``expires`` (``ENGAGEMENT_FRAME_TTL_S``,
    ~10 s), the message is acknowledged before the task runs (no ``acks_late``), and a failed
    frame is never retried: a stale frame is worth nothing, the next one is already on its way.
    Recording is idempotent on ``(participant, seq)`` anyway.

    The frame's bytes are never logged or stored; only derived numbers reach the database.

    Args:
        participant_id: ``classroom`` Participant primary key.
        seq: the client's frame counter (``>= 1``).
        frame_b64: base64 of the JPEG/PNG/WebP bytes.
        captured_at: client capture time, ms since the Unix epoch (client clock), or ``None``.
        received_at: server receive time, ms since the Unix epoch, or ``None``.

    Returns:
        What ``classroom.services.record_frame_result`` returns (the saved ``FrameResult``, or
        ``None`` for a duplicate/stale frame), or ``None`` when the frame cannot be decoded.
    """
    try:
        data = base64.b64decode(frame_b64, validate=True)
        analysis = pipeline.analyze_bytes(
            data,
            runtime.get_detector(),
            runtime.get_classifier(),
            max_side=settings.ENGAGEMENT_MAX_FRAME_SIDE,
        )
    except (binascii.Error, pipeline.FrameDecodeError) as exc:
        # The exception text names sizes only, never the payload.
        logger.warning(
            "frame not analysed (participant %s, seq %s): undecodable: %s", participant_id, seq, exc
        )
        return None
    return services.record_frame_result(
        participant_id=participant_id,
        seq=seq,
        result=analysis.to_dict(),
        captured_at=captured_at,
        received_at=received_at,
    )


@worker_process_init.connect(dispatch_uid="inference_worker.warm_models")
def _warm_models_after_fork(**kwargs) -> None:
    """Load the models in each new worker process when ``ENGAGEMENT_WARM_MODELS`` is set."""
    runtime.warm_if_configured()
