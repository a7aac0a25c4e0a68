"""Recording what the worker found: one analysed frame, or one frame that was dropped.

The worker calls these through ``classroom.services``. Only numbers are stored (boxes,
probabilities, labels, head pose, timings); the result is read through the typed contract
:class:`contracts.FrameResultPayload`.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from classroom import realtime, selectors
from classroom.choices import AnalysisMode, SessionStatus
from classroom.models import FaceObservation, FrameResult, Participant
from classroom.services.timeline import add_frame_to_timeline
from classroom.services.tracks import track_faces
from contracts import FRAME_DROP_REASONS, FacePayload, FrameResultPayload

logger = logging.getLogger(__name__)


def ms_to_datetime(ms) -> datetime | None:
    """Milliseconds since the Unix epoch to an aware UTC datetime; ``None`` if absent/invalid."""
    if ms is None or isinstance(ms, bool):
        return None
    try:
        value = float(ms)
        if not math.isfinite(value):
            return None
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def face_observation(index: int, face: FacePayload) -> FaceObservation:
    """An unsaved ``FaceObservation`` of a validated face (no frame, no track yet)."""
    x, y, w, h = face.box
    return FaceObservation(
        index=index,
        box_x=x,
        box_y=y,
        box_w=w,
        box_h=h,
        score=face.score,
        label=face.label,
        confidence=face.confidence,
        probabilities=None if face.probabilities is None else list(face.probabilities),
        yaw_deg=face.yaw_deg,
        pitch_deg=face.pitch_deg,
        attentive=face.attentive,
        assessed=face.assessed,
        quality_issue=face.quality_issue,
    )


def record_frame_result(
    *,
    participant_id: int,
    seq: int,
    result: dict,
    captured_at: float | None = None,
    received_at: float | None = None,
    key: int | None = None,
) -> FrameResult | None:
    """Store the analysis of one frame, idempotently on ``(participant, key)``.

    Called by the inference worker. Only numbers are stored (boxes, probabilities, labels, head
    pose, timings). All in ONE transaction whose first statement, the ``frames_analysed``
    increment, locks the participant's row (so concurrent workers are serialised per
    participant on PostgreSQL; SQLite serialises writers anyway): the ``FrameResult``, the faces
    matched to the participant's ``Track`` rows (``classroom.tracking``: IoU/centre matching,
    time-aware EMA of the probabilities with ``ENGAGEMENT_SMOOTHING_TAU_S``), one
    ``FaceObservation`` per face (raw and smoothed expression, head pose) and the participant's
    ``TimelineBucket`` for the arrival time. A duplicate key (a redelivered message) fails the
    unique constraint and rolls everything back, so it changes nothing. On commit the session's dashboards refresh and
    the student's socket gets a ``result`` message.

    In attention-only sessions (``session.analysis == "attention"``) every expression field is
    stored as NULL whatever the worker sent, and tracks carry no smoothed probabilities.

    Args:
        participant_id: ``Participant.pk``.
        seq: the frame's client sequence number (named in the student's ``result`` message).
        result: the result dict, ``FrameAnalysis.to_dict()``: the schema of
            :class:`contracts.FrameResultPayload` (sizes in pixels, boxes normalised to 0..1
            and clipped to the frame here, 7 probabilities in FER2013 order or none, head
            pose, ``timings_ms``).
        captured_at: client capture time, ms since the Unix epoch (ignored if not finite).
        received_at: server arrival time, ms since the Unix epoch; default now. It is the time
            axis of tracks, smoothing and timeline buckets.
        key: the frame's server key from the intake (``FrameResult.seq`` is set to it: unique
            and increasing per participant even when the client's seq restarts); ``None`` uses
            ``seq`` (messages queued before keys existed).

    Returns:
        The saved ``FrameResult``, or ``None`` (logged at INFO) when the participant is gone
        or withdrew, its session is not live any more, or this key was already recorded.

    Raises:
        contracts.ContractError: ``result`` does not follow the schema (a bug in the caller;
            a ``ValueError``); nothing is written.
    """
    participant = selectors.participant_for_stream(participant_id)
    if participant is None:
        logger.info("result for frame %s dropped: participant %s is gone", seq, participant_id)
        return None
    session = participant.session
    if session.status != SessionStatus.LIVE:
        logger.info(
            "result for frame %s of participant %s dropped: session %s is %s",
            seq,
            participant_id,
            session.pk,
            session.status,
        )
        return None
    payload = FrameResultPayload.from_dict(
        result, with_expressions=session.analysis != AnalysisMode.ATTENTION
    )
    observations = [face_observation(i, face) for i, face in enumerate(payload.faces)]
    seq = int(seq)
    frame_key = seq if key is None else int(key)

    analysed_at = timezone.now()
    arrived_at = ms_to_datetime(received_at) or analysed_at
    try:
        with transaction.atomic():
            # The counter UPDATE also takes the participant's row lock, which serialises
            # concurrent workers per participant until commit (tracks and buckets below rely
            # on it). A duplicate seq then fails the unique constraint on insert, which rolls
            # the whole transaction back, counter included.
            # A withdrawn participant's late results are refused here, under the row lock, so
            # none can be written after the withdrawal deleted their rows.
            if not Participant.objects.filter(pk=participant.pk, withdrawn_at__isnull=True).update(
                frames_analysed=F("frames_analysed") + 1
            ):
                logger.info(
                    "result for frame %s dropped: participant %s is gone or withdrew",
                    seq,
                    participant_id,
                )
                return None
            frame = FrameResult.objects.create(
                participant=participant,
                seq=frame_key,
                captured_at=ms_to_datetime(captured_at),
                received_at=arrived_at,
                analysed_at=analysed_at,
                face_count=len(observations),
                width=payload.width,
                height=payload.height,
                timings_ms=payload.timings_ms,
            )
            track_faces(participant, session, observations, seq=frame_key, received_at=arrived_at)
            for observation in observations:
                observation.frame = frame
            FaceObservation.objects.bulk_create(observations)
            add_frame_to_timeline(participant.pk, session, observations, arrived_at)
            transaction.on_commit(
                partial(_after_result, session.pk, participant.pk, seq, len(observations))
            )
    except IntegrityError:
        if FrameResult.objects.filter(participant=participant, seq=frame_key).exists():
            logger.info(
                "duplicate result for frame %s of participant %s ignored",
                seq,
                participant_id,
            )
            return None
        raise
    return frame


def _after_result(session_id, participant_id: int, seq: int, faces: int) -> None:
    realtime.broadcast(session_id)
    realtime.notify_frame_result(participant_id, seq, faces)


def record_frame_dropped(*, participant_id: int, seq: int | None, reason: str) -> bool:
    """Count one accepted frame that will never be analysed (``Participant.frames_dropped``).

    Logged at INFO without payload; on commit the session's dashboards refresh (the board shows
    drops) and, when ``seq`` is known, the student's socket is told (``dropped``), so that every
    acknowledged frame gets a result or a drop. Never fails for a missing participant.

    Args:
        participant_id: ``Participant.pk``.
        seq: the frame's seq, or ``None`` when unknown (only logged).
        reason: one of ``contracts.FRAME_DROP_REASONS``.

    Returns:
        True when counted; False (no error) when the participant no longer exists.

    Raises:
        ValueError: ``reason`` is not one of ``contracts.FRAME_DROP_REASONS`` (a bug in the caller).
    """
    if reason not in FRAME_DROP_REASONS:
        raise ValueError(f"reason must be one of {FRAME_DROP_REASONS}, got {reason!r}")
    try:
        pk = int(participant_id)
    except (TypeError, ValueError):
        logger.info("dropped frame %s not counted: bad participant id", seq)
        return False
    with transaction.atomic():
        session_id = Participant.objects.filter(pk=pk).values_list("session_id", flat=True).first()
        counted = session_id is not None and bool(
            Participant.objects.filter(pk=pk).update(frames_dropped=F("frames_dropped") + 1)
        )
        if counted:
            transaction.on_commit(partial(realtime.broadcast, session_id))
            if seq is not None:
                transaction.on_commit(partial(realtime.notify_frame_dropped, pk, int(seq), reason))
    if not counted:
        logger.info("dropped frame %s not counted: participant %s is gone", seq, pk)
        return False
    logger.info("frame %s of participant %s dropped (%s)", seq, pk, reason)
    return True
