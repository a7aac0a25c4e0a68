"""Live frames, from a task's arguments to a recorded result or a counted drop.

What :mod:`inference_worker.tasks` calls: the Celery tasks there only unpack their arguments.

Backpressure: a live frame older than ``ENGAGEMENT_FRAME_TTL_S`` is not analysed and is counted
with ``classroom.services.record_frame_dropped``, in two places:

* ``reason="expired"`` (:func:`count_expired_frame`): Celery itself discards a message whose
  ``expires`` has passed when the worker receives it or is about to hand it to a pool process
  (``Request.revoked()`` in ``celery/worker/request.py`` and ``celery/worker/strategy.py``,
  Celery 5.x), and sends the ``task_revoked`` signal with ``expired=True`` **in the worker's
  main process**. The body is never decoded then, so the frame is identified by the message
  headers that ``classroom.dispatch.send_analyze_frame`` adds (``contracts.PARTICIPANT_HEADER``,
  ``contracts.SEQ_HEADER``); Celery copies custom headers into the signal's ``request``.
* ``reason="stale"`` (:func:`analyze_live_frame`): a message that reached a pool process in time
  but waited there (or whose expiry the broker never saw) is checked against its
  ``received_at`` when the task starts.

The frame's bytes are never logged or stored: log lines name ids, sizes and reasons only.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

from django.db import close_old_connections

from classroom import services
from contracts import PARTICIPANT_HEADER, SEQ_HEADER, AnalysisMode, StreamSource
from inference_worker import pipeline, runtime
from inference_worker.config import setting

logger = logging.getLogger(__name__)

_ANALYSIS_MODES = frozenset(mode.value for mode in AnalysisMode)


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


def analyze_live_frame(
    *,
    participant_id: int,
    seq: int,
    frame_b64: str,
    captured_at: float | None = None,
    received_at: float | None = None,
    source: str = StreamSource.WEBCAM,
    analysis: str = AnalysisMode.EXPRESSION,
    key: int | None = None,
) -> Any:
    """Analyse one live frame and record the result, or count it as dropped when stale.

    Args:
        participant_id: ``classroom`` Participant primary key.
        seq: the client's frame counter.
        frame_b64: base64 of the JPEG/PNG/WebP bytes.
        captured_at: client capture time, ms since the Unix epoch (client clock), or ``None``.
        received_at: server receive time, ms since the Unix epoch, or ``None`` (never stale).
        source: a ``contracts.StreamSource`` value: the face detection mode
            (``runtime.get_detector(source=...)``).
        analysis: a ``contracts.AnalysisMode`` value; ``"attention"`` never calls the
            expression classifier.
        key: the frame's server key (unique per participant), or ``None`` to use ``seq``.

    Returns:
        What ``classroom.services.record_frame_result`` returns (the saved ``FrameResult``, or
        ``None`` for a duplicate frame or one whose session ended), or ``None`` when the frame
        is stale, cannot be decoded, or names an unknown source or analysis mode (logged at
        WARNING, never raised: a live frame is not retried).
    """
    age_s = frame_age_s(received_at)
    if age_s is not None and age_s > setting("ENGAGEMENT_FRAME_TTL_S"):
        logger.debug(
            "frame dropped (participant %s, seq %s): stale, received %.1f s ago",
            participant_id,
            seq,
            age_s,
        )
        services.record_frame_dropped(participant_id=participant_id, seq=seq, reason="stale")
        return None
    if analysis not in _ANALYSIS_MODES:
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
    # The site-wide off-switch wins over a session's mode (sessions made before it was set).
    classify = analysis == AnalysisMode.EXPRESSION and runtime.emotion_inference_enabled()
    try:
        data = base64.b64decode(frame_b64, validate=True)
        result = pipeline.analyze_bytes(
            data,
            detector,
            runtime.get_classifier() if classify else None,
            classify=classify,
            max_side=setting("ENGAGEMENT_MAX_FRAME_SIDE"),
        )
    except (binascii.Error, pipeline.FrameDecodeError) as exc:
        # The exception text names sizes only, never the payload. The student is told (the
        # intake's check let the frame through, so it was acknowledged).
        logger.warning(
            "frame not analysed (participant %s, seq %s): undecodable: %s", participant_id, seq, exc
        )
        services.record_frame_dropped(participant_id=participant_id, seq=seq, reason="undecodable")
        return None
    return services.record_frame_result(
        participant_id=participant_id,
        seq=seq,
        key=key,
        result=result.to_dict(),
        captured_at=captured_at,
        received_at=received_at,
    )


def _header_int(request: Any, name: str) -> int | None:
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


def count_expired_frame(request: Any) -> bool:
    """Count a live frame that Celery discarded because its ``expires`` had passed.

    Runs in the worker's main process, which runs no task and so recycles no database
    connection by itself: old or broken connections are closed first. Never raises: a
    failure is logged, so the worker's consumer keeps going.

    Args:
        request: the ``task_revoked`` signal's request (a Celery ``Context`` of the message
            headers; the body is not decoded).

    Returns:
        ``True`` when a drop was recorded; ``False`` without a usable participant header, for
        a participant that is gone, or on an error.
    """
    participant_id = _header_int(request, PARTICIPANT_HEADER)
    if participant_id is None:
        logger.warning("expired frame without a participant header: not counted")
        return False
    seq = _header_int(request, SEQ_HEADER)
    close_old_connections()
    try:
        return bool(
            services.record_frame_dropped(participant_id=participant_id, seq=seq, reason="expired")
        )
    except Exception:
        logger.exception("could not count the expired frame of participant %s", participant_id)
        return False
