"""Celery tasks of the worker: thin wrappers that unpack JSON values and call plain functions.

Importing this module loads neither TensorFlow nor MediaPipe: models are loaded by
:mod:`inference_worker.runtime` on first use, once per worker process, after the fork.

Backpressure (issue #4): a live frame older than ``ENGAGEMENT_FRAME_TTL_S`` is not analysed and
is counted with ``classroom.services.record_frame_dropped``, in two places:

* ``reason="expired"``: Celery itself discards a message whose ``expires`` has passed when the
  worker receives it or is about to hand it to a pool process (``Request.revoked()`` in
  ``celery/worker/request.py`` and ``celery/worker/strategy.py``, Celery 5.x), and sends the
  ``task_revoked`` signal with ``expired=True`` **in the worker's main process**. The body is
  never decoded then, so the frame is identified by the message headers that
  ``classroom.dispatch.send_analyze_frame`` adds (:data:`PARTICIPANT_HEADER`,
  :data:`SEQ_HEADER`); Celery copies custom headers into the signal's ``request``.
* ``reason="stale"``: a message that reached a pool process in time but waited there (or whose
  expiry the broker never saw) is checked against its ``received_at`` when the task starts.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

from celery.signals import task_revoked, worker_process_init
from django.conf import settings
from django.db import close_old_connections

from classroom import services
from inference_worker import pipeline, runtime
from inference_worker.celery import app

logger = logging.getLogger(__name__)

ANALYZE_FRAME_TASK = "inference_worker.tasks.analyze_frame_task"
"""The task name the classroom sends by (``current_app.send_task``)."""

#: Message headers naming the frame; the same names as ``classroom.dispatch`` (which the worker
#: may not import) sets, checked by the tests.
PARTICIPANT_HEADER = "engagement_participant_id"
SEQ_HEADER = "engagement_seq"

#: ``analysis`` values (``classroom.choices.AnalysisMode``): attention never calls the classifier.
ANALYSIS_MODES = ("expression", "attention")


def frame_age_s(received_at: float | None, *, now_s: float | None = None) -> float | None:
    """Seconds since the server received a frame.

    Args:
        received_at: server receive time, ms since the Unix epoch, or ``None``.
        now_s: the current time, s since the Unix epoch; default ``time.time()``.

    Returns:
        The age in seconds (negative if the clocks disagree), or ``None`` without a time.
    """
    if received_at is None:
        return None
    return (time.time() if now_s is None else now_s) - float(received_at) / 1000.0


@app.task(name=ANALYZE_FRAME_TASK, ignore_result=True, max_retries=0, acks_late=False)
def analyze_frame_task(
    participant_id: int,
    seq: int,
    frame_b64: str,
    captured_at: float | None = None,
    received_at: float | None = None,
    source: str = "webcam",
    analysis: str = "expression",
):
    """Analyse one live frame and record the result.

    Delivery: AT MOST ONCE. The sender sets a short ``expires`` (``ENGAGEMENT_FRAME_TTL_S``,
    ~10 s), the message is acknowledged before the task runs (no ``acks_late``), and a failed
    frame is never retried: a stale frame is worth nothing, the next one is already on its way.
    Recording is idempotent on ``(participant, seq)`` anyway. A frame received more than
    ``ENGAGEMENT_FRAME_TTL_S`` seconds before the task starts is not analysed and is counted
    with ``services.record_frame_dropped(reason="stale")`` (expired messages, which Celery
    discards before the task runs, are counted by :func:`count_expired_frame`).

    The frame's bytes are never logged or stored; only derived numbers reach the database.

    Args:
        participant_id: ``classroom`` Participant primary key.
        seq: the client's frame counter (``>= 1``).
        frame_b64: base64 of the JPEG/PNG/WebP bytes.
        captured_at: client capture time, ms since the Unix epoch (client clock), or ``None``.
        received_at: server receive time, ms since the Unix epoch, or ``None`` (never stale).
        source: ``"webcam"`` or ``"screen"``: the detector mode
            (``runtime.get_detector(source)``).
        analysis: ``"expression"`` (faces are classified) or ``"attention"`` (the classifier is
            not called: ``pipeline.analyze_bytes(..., classify=False)``).

    Returns:
        What ``classroom.services.record_frame_result`` returns (the saved ``FrameResult``, or
        ``None`` for a duplicate/stale frame), or ``None`` when the frame is stale, cannot be
        decoded, or names an unknown source or analysis mode (logged, never raised).
    """
    age_s = frame_age_s(received_at)
    if age_s is not None and age_s > settings.ENGAGEMENT_FRAME_TTL_S:
        logger.debug(
            "frame dropped (participant %s, seq %s): stale, received %.1f s ago",
            participant_id,
            seq,
            age_s,
        )
        services.record_frame_dropped(participant_id=participant_id, seq=seq, reason="stale")
        return None
    if analysis not in ANALYSIS_MODES:
        logger.warning(
            "frame not analysed (participant %s, seq %s): unknown analysis mode %r",
            participant_id,
            seq,
            analysis,
        )
        return None
    try:
        detector = runtime.get_detector(source=source)
    except ValueError as exc:
        logger.warning("frame not analysed (participant %s, seq %s): %s", participant_id, seq, exc)
        return None
    try:
        data = base64.b64decode(frame_b64, validate=True)
        result = pipeline.analyze_bytes(
            data,
            detector,
            runtime.get_classifier(),
            classify=analysis == "expression",
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
        result=result.to_dict(),
        captured_at=captured_at,
        received_at=received_at,
    )


def _header_int(request, name: str) -> int | None:
    """An integer message header of a Celery request ``Context`` (or dict), or ``None``."""
    if request is None:
        return None
    value = request.get(name) if hasattr(request, "get") else None
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@task_revoked.connect(dispatch_uid="inference_worker.count_expired_frames")
def count_expired_frame(sender=None, request=None, expired=False, **kwargs) -> bool:
    """``task_revoked`` receiver: count a live frame that Celery discarded because it expired.

    Runs in the worker's main process (where Celery checks ``expires``), once per discarded
    message. Frames revoked for other reasons (``celery control revoke``, terminated) are not
    drops and are ignored, as are other tasks' messages. Never raises: a failure is logged, so
    the worker's consumer keeps going.

    Args:
        sender: the task object whose message was discarded.
        request: Celery's request ``Context`` (headers only; the body is not decoded).
        expired: ``True`` when the message was discarded because ``expires`` had passed.

    Returns:
        ``True`` when a drop was recorded.
    """
    if not expired or getattr(sender, "name", sender) != ANALYZE_FRAME_TASK:
        return False
    participant_id = _header_int(request, PARTICIPANT_HEADER)
    if participant_id is None:
        logger.warning("expired frame without a participant header: not counted")
        return False
    seq = _header_int(request, SEQ_HEADER)
    # The main process runs no tasks, so nothing else recycles its database connection.
    close_old_connections()
    try:
        return bool(
            services.record_frame_dropped(participant_id=participant_id, seq=seq, reason="expired")
        )
    except Exception:
        logger.exception("could not count the expired frame of participant %s", participant_id)
        return False


@worker_process_init.connect(dispatch_uid="inference_worker.warm_models")
def _warm_models_after_fork(**kwargs) -> None:
    """Load the models in each new worker process when ``ENGAGEMENT_WARM_MODELS`` is set."""
    runtime.warm_if_configured()
