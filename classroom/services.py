"""All writes of the classroom app, and the only place that broadcasts or queues tasks.

Called by views, consumers, tasks, management commands and the inference worker
(``record_frame_result``). Broadcasts and task sends happen in ``transaction.on_commit`` so no
one is told about rows that are not committed.

Frames are never stored or logged: ``accept_frame`` validates the bytes and hands them to the
broker; only derived numbers (counts, boxes, probabilities, timings) reach the database.
"""

from __future__ import annotations

import io
import logging
import math
import numbers
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from classroom import dispatch, events, realtime, selectors, tracking
from classroom.choices import (
    DISPLAY_NAME_MAX_LENGTH,
    EXPRESSIONS,
    MAX_FRAME_INTERVAL_S,
    MIN_FRAME_INTERVAL_S,
    TIMELINE_BUCKET_S,
    TITLE_MAX_LENGTH,
    AnalysisMode,
    FrameErrorCode,
    JoinErrorCode,
    SessionStatus,
    StreamSource,
)
from classroom.models import (
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
    TimelineBucket,
    Track,
    generate_join_code,
)

logger = logging.getLogger(__name__)

#: Key of the participant id in the student's Django session (set by the join view, read by
#: ``StudentStreamConsumer`` from ``scope["session"]``).
PARTICIPANT_SESSION_KEY = "participant_id"

#: Magic bytes of the accepted image formats.
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --- errors and results -------------------------------------------------------------------------


class JoinError(Exception):
    """A student cannot join; ``code`` is a :class:`~classroom.choices.JoinErrorCode` value."""

    def __init__(self, code: str, message: str | None = None):
        self.code = str(code)
        self.message = message or JoinErrorCode(code).label
        super().__init__(self.message)


class SessionStateError(ValueError):
    """A session transition that its status does not allow (e.g. starting an ended session)."""


class FrameRejected(Exception):
    """A frame was refused at intake; the socket stays open.

    Attributes:
        code: a :class:`~classroom.choices.FrameErrorCode` value.
        message: human-readable reason (never contains frame data).
        seq: the frame's sequence number, or ``None`` when the header could not be read.
    """

    def __init__(self, code: str, message: str | None = None, seq: int | None = None):
        self.code = str(code)
        self.message = message or FrameErrorCode(code).label
        self.seq = seq
        super().__init__(f"{self.code}: {self.message}")


@dataclass(frozen=True)
class FrameAccepted:
    """A frame passed intake and is queued for analysis (after commit)."""

    seq: int


# --- rate limiting ------------------------------------------------------------------------------


class FrameRateLimiter:
    """Per-participant token bucket, kept in this process's memory.

    Each participant has a bucket of ``burst`` tokens (3), refilled continuously at
    ``rate_factor / frame_interval_s`` tokens per second (1.5x the session's frame rate, so
    jitter and a slow client catching up pass, a flood does not). A frame costs one token;
    with no token left it is rejected with ``rate_limited``. State is per process: a student's
    socket lives in one server process, so the limit holds per connection; with several server
    processes a reconnecting student may get a fresh bucket (at most ``burst`` extra frames).
    Buckets idle for ``idle_ttl_s`` are dropped (by then they would be full anyway).
    Thread-safe.
    """

    def __init__(
        self,
        burst: float = 3.0,
        rate_factor: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
        idle_ttl_s: float = 120.0,
    ):
        self.burst = burst
        self.rate_factor = rate_factor
        self.clock = clock
        self.idle_ttl_s = idle_ttl_s
        self._buckets: dict[int, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def allow(self, key: int, frame_interval_s: float) -> bool:
        """Take one token from ``key``'s bucket.

        Args:
            key: participant id.
            frame_interval_s: the session's frame interval, seconds (> 0).

        Returns:
            Whether the frame may pass.
        """
        rate = self.rate_factor / max(frame_interval_s, 1e-3)
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * rate)
            allowed = tokens >= 1.0 - 1e-9  # tolerate float rounding of the refill
            if allowed:
                tokens = max(0.0, tokens - 1.0)
            self._buckets[key] = (tokens, now)
            self._calls += 1
            if self._calls % 1000 == 0:
                self._prune(now)
        return allowed

    def _prune(self, now: float) -> None:
        stale = [key for key, (_, last) in self._buckets.items() if now - last > self.idle_ttl_s]
        for key in stale:
            del self._buckets[key]

    def forget(self, key: int) -> None:
        """Drop ``key``'s bucket."""
        with self._lock:
            self._buckets.pop(key, None)

    def reset(self) -> None:
        """Drop every bucket (tests)."""
        with self._lock:
            self._buckets.clear()


#: The process-wide limiter used by :func:`accept_frame`.
frame_rate_limiter = FrameRateLimiter()


# --- permissions ------------------------------------------------------------------------------


def _require_manager(session: ClassSession, user) -> None:
    if not session.can_be_managed_by(user):
        raise PermissionDenied("Only the session's teacher or an admin may do this.")


# --- sessions -----------------------------------------------------------------------------------


def create_session(
    *,
    teacher,
    title: str,
    frame_interval_s: float = 1.0,
    analysis: str = AnalysisMode.EXPRESSION,
) -> ClassSession:
    """Create a draft session with a fresh join code.

    Args:
        teacher: the owning user (authenticated, active).
        title: 1 to 200 characters after collapsing whitespace.
        frame_interval_s: seconds between frames per student, in [0.2, 10].
        analysis: ``choices.AnalysisMode`` value: ``"expression"`` (expressions and attention,
            the default) or ``"attention"`` (attention only: no expression is computed, stored
            or shown).

    Returns:
        The saved ``ClassSession`` (status ``draft``).

    Raises:
        PermissionDenied: ``teacher`` is anonymous or inactive.
        ValidationError: bad title, interval (code ``bad_interval``) or analysis mode (code
            ``bad_analysis``).
    """
    if not getattr(teacher, "is_authenticated", False) or not teacher.is_active:
        raise PermissionDenied("Sign in to create a session.")
    title = " ".join(str(title or "").split())
    if not title or len(title) > TITLE_MAX_LENGTH:
        raise ValidationError(
            f"Title must be 1 to {TITLE_MAX_LENGTH} characters.", code="bad_title"
        )
    try:
        interval = float(frame_interval_s)
    except (TypeError, ValueError):
        interval = math.nan
    if not (MIN_FRAME_INTERVAL_S <= interval <= MAX_FRAME_INTERVAL_S):
        raise ValidationError(
            f"Frame interval must be between {MIN_FRAME_INTERVAL_S} and {MAX_FRAME_INTERVAL_S} s.",
            code="bad_interval",
        )
    if analysis not in AnalysisMode.values:
        raise ValidationError(
            f"Analysis must be one of {', '.join(AnalysisMode.values)}.", code="bad_analysis"
        )
    for _ in range(10):
        code = generate_join_code()
        try:
            with transaction.atomic():
                session = ClassSession.objects.create(
                    teacher=teacher,
                    title=title,
                    frame_interval_s=interval,
                    join_code=code,
                    analysis=str(analysis),
                )
        except IntegrityError:
            if ClassSession.objects.filter(join_code=code).exists():
                continue  # join code collision (about 1 in 1e9 per live code): draw again
            raise
        logger.info("session %s created by user %s", session.pk, teacher.pk)
        return session
    raise RuntimeError("could not draw a unique join code")


def start_session(session: ClassSession, *, by) -> ClassSession:
    """Start a draft session (draft -> live). Starting a live session is a no-op.

    Args:
        session: the session.
        by: the acting user; must be the session's teacher or an admin.

    Returns:
        The session, refreshed from the database.

    Raises:
        PermissionDenied: ``by`` may not manage the session.
        SessionStateError: the session has ended.
    """
    _require_manager(session, by)
    with transaction.atomic():
        changed = ClassSession.objects.filter(pk=session.pk, status=SessionStatus.DRAFT).update(
            status=SessionStatus.LIVE, started_at=timezone.now()
        )
        session.refresh_from_db()
        if not changed and session.status == SessionStatus.ENDED:
            raise SessionStateError("This session has ended and cannot be started again.")
        if changed:
            transaction.on_commit(partial(realtime.broadcast, session.pk))
    if changed:
        logger.info("session %s started by user %s", session.pk, by.pk)
    return session


def end_session(session: ClassSession, *, by) -> ClassSession:
    """End a session (live -> ended, or draft -> ended to cancel). Ending twice is a no-op.

    On commit: the dashboards refresh, every student socket gets ``session.ended`` and closes,
    and the report task ``classroom.tasks.build_session_report`` is queued by name.

    Args:
        session: the session.
        by: the acting user; must be the session's teacher or an admin.

    Returns:
        The session, refreshed from the database.

    Raises:
        PermissionDenied: ``by`` may not manage the session.
    """
    _require_manager(session, by)
    with transaction.atomic():
        changed = ClassSession.objects.filter(
            pk=session.pk, status__in=[SessionStatus.DRAFT, SessionStatus.LIVE]
        ).update(status=SessionStatus.ENDED, ended_at=timezone.now())
        session.refresh_from_db()
        if changed:
            participant_ids = list(session.participants.values_list("pk", flat=True))
            transaction.on_commit(partial(_after_end, session.pk, participant_ids))
    if changed:
        logger.info("session %s ended by user %s", session.pk, by.pk)
    return session


def _after_end(session_id, participant_ids: list[int]) -> None:
    for participant_id in participant_ids:
        frame_rate_limiter.forget(participant_id)
    realtime.broadcast(session_id)
    realtime.notify_session_ended(participant_ids)
    dispatch.send_build_report(session_id=session_id)


# --- joining ----------------------------------------------------------------------------------


def _clean_display_name(display_name) -> str:
    name = " ".join(str(display_name or "").split())
    if not name or len(name) > DISPLAY_NAME_MAX_LENGTH or not name.isprintable():
        raise JoinError(JoinErrorCode.BAD_NAME)
    return name


def join_session(*, code: str, display_name: str, consent: bool) -> Participant:
    """Add a student to a session (draft or live) after explicit consent.

    The caller (the join view) stores ``participant.pk`` in the student's Django session under
    :data:`PARTICIPANT_SESSION_KEY`.

    Args:
        code: join code; case, spaces and dashes are ignored.
        display_name: 1 to 40 printable characters after collapsing whitespace.
        consent: whether the student ticked the consent box; must be true.

    Returns:
        The new ``Participant`` with ``consent_given_at`` set to now.

    Raises:
        JoinError: ``code`` is ``"unknown_code"``, ``"session_ended"``, ``"bad_name"`` or
            ``"consent_required"`` (checked in that order).
    """
    session = selectors.session_by_code(code or "")
    if session is None:
        raise JoinError(JoinErrorCode.UNKNOWN_CODE)
    if session.status == SessionStatus.ENDED:
        raise JoinError(JoinErrorCode.SESSION_ENDED)
    name = _clean_display_name(display_name)
    if consent is not True:
        raise JoinError(JoinErrorCode.CONSENT_REQUIRED)
    now = timezone.now()
    participant = Participant.objects.create(
        session=session, display_name=name, consent_given_at=now, joined_at=now
    )
    logger.info("participant %s joined session %s", participant.pk, session.pk)
    return participant


# --- frame intake -------------------------------------------------------------------------------


def _check_format(image: bytes) -> None:
    if image.startswith(_JPEG_MAGIC) or image.startswith(_PNG_MAGIC):
        return
    if len(image) >= 12 and image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return
    raise FrameRejected(FrameErrorCode.BAD_FORMAT, "Frames must be JPEG, PNG or WebP.")


def _check_decodable(image: bytes, max_side: int) -> tuple[int, int]:
    """Read the dimensions from the header, then decode; return ``(width, height)``."""
    try:
        # Image.open reads only the header: the size is checked before any pixel is decoded.
        with Image.open(io.BytesIO(image)) as im:
            width, height = im.size
            if width > max_side or height > max_side:
                raise FrameRejected(
                    FrameErrorCode.TOO_MANY_PIXELS,
                    f"Image is {width}x{height}; at most {max_side}x{max_side} is allowed.",
                )
            # JPEG: decode at 1/8 scale (DCT scaling): all entropy-coded data is still read,
            # so truncation and corruption are caught, for a fraction of the cost.
            im.draft(None, (max(1, width // 8), max(1, height // 8)))
            im.load()
    except FrameRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise FrameRejected(FrameErrorCode.TOO_MANY_PIXELS, "Image has too many pixels.") from exc
    except UnidentifiedImageError as exc:
        raise FrameRejected(FrameErrorCode.UNDECODABLE, "The image cannot be decoded.") from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a decoder on untrusted bytes
        raise FrameRejected(FrameErrorCode.UNDECODABLE, "The image cannot be decoded.") from exc
    return width, height


def _validate_frame(
    participant: Participant, data: bytes, seq: int | None
) -> tuple[events.FrameHeader, bytes]:
    session = participant.session
    if session.status != SessionStatus.LIVE:
        raise FrameRejected(
            FrameErrorCode.SESSION_NOT_LIVE, f"The session is {session.status}, not live.", seq
        )
    if participant.consent_given_at is None:
        raise FrameRejected(FrameErrorCode.NO_CONSENT, seq=seq)
    if not frame_rate_limiter.allow(participant.pk, session.frame_interval_s):
        raise FrameRejected(
            FrameErrorCode.RATE_LIMITED,
            f"Send at most one frame every {session.frame_interval_s:g} s.",
            seq,
        )
    parsed = events.parse_frame_header(data)
    if parsed is None:
        raise FrameRejected(
            FrameErrorCode.BAD_HEADER,
            "Expected a 12-byte header (seq uint32 BE, captured_at float64 BE ms) and an image.",
            seq,
        )
    header, image = parsed
    max_bytes = settings.ENGAGEMENT_MAX_FRAME_BYTES
    if len(image) > max_bytes:
        raise FrameRejected(
            FrameErrorCode.TOO_LARGE, f"Image is {len(image)} bytes; at most {max_bytes}.", seq
        )
    try:
        _check_format(image)
        _check_decodable(image, settings.ENGAGEMENT_MAX_FRAME_SIDE)
    except FrameRejected as exc:
        exc.seq = seq
        raise
    return header, image


def accept_frame(participant_id: int, data: bytes, *, source: str = "webcam") -> FrameAccepted:
    """Validate one binary frame message and queue it for analysis.

    Checks, in order: the participant exists, its session is live, consent was given, the rate
    (:data:`frame_rate_limiter`), the header, size <= ``ENGAGEMENT_MAX_FRAME_BYTES``, magic bytes
    (JPEG/PNG/WebP), dimensions <= ``ENGAGEMENT_MAX_FRAME_SIDE`` read from the image header
    before decoding, and that it decodes. Counts ``frames_received`` (every message of an
    existing participant) and ``frames_rejected``, and updates ``last_seen_at``. The frame is
    sent on commit with ``dispatch.send_analyze_frame``, with the stream's ``source`` and the
    session's ``analysis`` mode; it is never stored or logged.

    Args:
        participant_id: ``Participant.pk`` from the student's Django session.
        data: 12-byte header (seq uint32 BE, captured_at float64 BE, ms since epoch) + image.
        source: what the student streams, a ``StreamSource`` value (``"webcam"`` or
            ``"screen"``; the stream consumer validates the client's choice).

    Returns:
        ``FrameAccepted(seq)``.

    Raises:
        ValueError: ``source`` is not a ``StreamSource`` value (a caller bug; nothing counted).
        FrameRejected: with ``code`` ``session_not_live`` (also when the participant no longer
            exists), ``no_consent``, ``rate_limited``, ``bad_header``, ``too_large``,
            ``bad_format``, ``too_many_pixels`` or ``undecodable``.
    """
    if source not in StreamSource.values:
        raise ValueError(f"source must be one of {StreamSource.values}, got {source!r}")
    received_ms = time.time() * 1000.0
    seq = events.peek_seq(data)
    participant = selectors.participant_for_stream(participant_id)
    if participant is None:
        raise FrameRejected(FrameErrorCode.SESSION_NOT_LIVE, "You are not part of a session.", seq)
    try:
        header, image = _validate_frame(participant, data, seq)
    except FrameRejected as exc:
        _count_frame(participant.pk, rejected=True)
        logger.debug("frame %s of participant %s rejected: %s", seq, participant.pk, exc.code)
        raise
    with transaction.atomic():
        _count_frame(participant.pk, rejected=False)
        transaction.on_commit(
            partial(
                dispatch.send_analyze_frame,
                participant_id=participant.pk,
                seq=header.seq,
                image=image,
                captured_at=header.captured_at_ms,
                received_at=received_ms,
                source=source,
                analysis=participant.session.analysis,
            )
        )
    return FrameAccepted(seq=header.seq)


def _count_frame(participant_id: int, *, rejected: bool) -> None:
    Participant.objects.filter(pk=participant_id).update(
        frames_received=F("frames_received") + 1,
        frames_rejected=F("frames_rejected") + (1 if rejected else 0),
        last_seen_at=timezone.now(),
    )


# --- results ------------------------------------------------------------------------------------


def _ms_to_datetime(ms) -> datetime | None:
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


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    return float(value)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _angle(value, what: str, limit: float) -> float | None:
    if value is None:
        return None
    angle = _finite(value, what)
    if not -limit <= angle <= limit:
        raise ValueError(f"{what} must be in [-{limit:g}, {limit:g}] degrees")
    return angle


def _expression(face: dict) -> tuple[str | None, float | None, list[float] | None]:
    """``(label, confidence, probabilities)`` of one face, all ``None`` when none was computed."""
    probabilities = face.get("probabilities")
    label = face.get("label")
    confidence = face.get("confidence")
    if probabilities is None and label is None and confidence is None:
        return None, None, None
    if not isinstance(probabilities, list | tuple) or len(probabilities) != len(EXPRESSIONS):
        raise ValueError(f"face probabilities must be {len(EXPRESSIONS)} numbers")
    if label not in EXPRESSIONS:
        raise ValueError(f"unknown expression label {label!r}")
    return (
        label,
        _unit(_finite(confidence, "confidence")),
        [_finite(p, "probability") for p in probabilities],
    )


def _face_observations(faces, *, attention_only: bool = False) -> list[FaceObservation]:
    """Validate the result's faces and build unsaved ``FaceObservation`` rows (no frame/track).

    Args:
        faces: ``result["faces"]``: a list of dicts with ``box`` [x, y, w, h] (normalised,
            clipped to the frame here), ``score`` (0..1 or None), ``probabilities`` (7 numbers),
            ``label``, ``confidence`` (all three None, or all three given), ``yaw_deg``
            ([-180, 180] or None), ``pitch_deg`` ([-90, 90] or None), ``attentive`` (bool or
            None); missing keys read as None.
        attention_only: the session computes no expression: the expression fields are stored as
            NULL whatever the worker sent (they are not validated either).

    Raises:
        ValueError: a face does not follow that schema.
    """
    if not isinstance(faces, list):
        raise ValueError("result['faces'] must be a list")
    observations = []
    for index, face in enumerate(faces):
        if not isinstance(face, dict):
            raise ValueError("each face must be a dict")
        box = face.get("box")
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise ValueError("face box must be [x, y, w, h]")
        x, y, w, h = (_finite(v, "box value") for v in box)
        # Detector boxes may reach past the frame's edges: keep the visible part, normalised.
        x0, y0, x1, y1 = _unit(x), _unit(y), _unit(x + max(w, 0.0)), _unit(y + max(h, 0.0))
        label, confidence, probabilities = (
            (None, None, None) if attention_only else _expression(face)
        )
        score = face.get("score")
        attentive = face.get("attentive")
        if attentive is not None and not isinstance(attentive, bool):
            raise ValueError("face attentive must be true, false or null")
        observations.append(
            FaceObservation(
                index=index,
                box_x=x0,
                box_y=y0,
                box_w=x1 - x0,
                box_h=y1 - y0,
                score=None if score is None else _unit(_finite(score, "score")),
                label=label,
                confidence=confidence,
                probabilities=probabilities,
                yaw_deg=_angle(face.get("yaw_deg"), "yaw_deg", 180.0),
                pitch_deg=_angle(face.get("pitch_deg"), "pitch_deg", 90.0),
                attentive=attentive,
            )
        )
    return observations


def _track_state(row: Track) -> tracking.TrackState:
    return tracking.TrackState(
        number=row.number,
        box=tracking.Box(row.box_x, row.box_y, row.box_w, row.box_h),
        first_seen_s=row.first_seen_at.timestamp(),
        last_seen_s=row.last_seen_at.timestamp(),
        last_seq=row.last_seq,
        hits=row.hits,
        smoothed=None if row.smoothed_probabilities is None else tuple(row.smoothed_probabilities),
    )


_TRACK_FIELDS = [
    "first_seen_at",
    "last_seen_at",
    "last_seq",
    "box_x",
    "box_y",
    "box_w",
    "box_h",
    "hits",
    "smoothed_probabilities",
]


def _track_faces(
    participant: Participant,
    session: ClassSession,
    observations: list[FaceObservation],
    *,
    seq: int,
    received_at: datetime,
) -> None:
    """Match the frame's faces to the participant's live tracks (``classroom.tracking``).

    Creates and updates ``Track`` rows and sets ``track``, ``smoothed_probabilities`` and
    ``smoothed_label`` on each (unsaved) observation. Call with the participant row locked.
    Time is the frame's arrival time (server clock); a track is live while
    ``received_at - last_seen_at <= tracking.max_age_s(ENGAGEMENT_TRACK_MAX_AGE_S, interval)``.
    """
    if not observations:
        return
    now_s = received_at.timestamp()
    max_age = tracking.max_age_s(settings.ENGAGEMENT_TRACK_MAX_AGE_S, session.frame_interval_s)
    rows = {
        row.number: row
        for row in Track.objects.filter(
            participant=participant, last_seen_at__gte=received_at - timedelta(seconds=max_age)
        )
    }
    last_number = Track.objects.filter(participant=participant).aggregate(n=Max("number"))["n"]
    detections = [
        tracking.Detection(
            box=tracking.Box(o.box_x, o.box_y, o.box_w, o.box_h),
            probabilities=None if o.probabilities is None else tuple(o.probabilities),
        )
        for o in observations
    ]
    outcome = tracking.step(
        [_track_state(row) for row in rows.values()],
        detections,
        now_s=now_s,
        seq=seq,
        next_number=(last_number or 0) + 1,
        max_age=max_age,
        tau_s=settings.ENGAGEMENT_SMOOTHING_TAU_S,
    )
    created, changed = [], []
    for number, state in outcome.tracks.items():
        row = rows.get(number)
        if row is None:
            row = Track(participant=participant, number=number)
            created.append(row)
        else:
            changed.append(row)
        # Times come from received_at itself, not from the float seconds, so that they round-trip
        # exactly (a late frame leaves last_seen_at as it was).
        if row.pk is None or state.first_seen_s == now_s:
            row.first_seen_at = received_at
        if row.pk is None or state.last_seen_s == now_s:
            row.last_seen_at = received_at
        row.last_seq = state.last_seq
        row.box_x, row.box_y, row.box_w, row.box_h = (
            state.box.x,
            state.box.y,
            state.box.w,
            state.box.h,
        )
        row.hits = state.hits
        row.smoothed_probabilities = None if state.smoothed is None else list(state.smoothed)
        rows[number] = row
    Track.objects.bulk_create(created)
    if changed:
        Track.objects.bulk_update(changed, _TRACK_FIELDS)
    for observation, assignment in zip(observations, outcome.assignments, strict=True):
        observation.track = rows[assignment.number]
        if assignment.smoothed is None:
            observation.smoothed_probabilities = None
            observation.smoothed_label = None
        else:
            observation.smoothed_probabilities = list(assignment.smoothed)
            observation.smoothed_label = tracking.argmax_label(assignment.smoothed, EXPRESSIONS)


def _bucket_index(session: ClassSession, received_at: datetime) -> int:
    """Timeline bucket of a frame: ``floor((received_at - started_at) / TIMELINE_BUCKET_S)``.

    Returns:
        The index k >= 0 (arrivals before ``started_at``, or a session without one, count in 0).
    """
    if session.started_at is None:
        return 0
    elapsed = (received_at - session.started_at).total_seconds()
    return max(0, math.floor(elapsed / TIMELINE_BUCKET_S))


def _count_in_bucket(
    participant_id: int,
    session: ClassSession,
    observations: list[FaceObservation],
    received_at: datetime,
) -> None:
    """Add one frame to the participant's ``TimelineBucket`` (``F()`` increments).

    Call with the participant row locked (see :func:`record_frame_result`).

    ``pose_faces`` counts faces whose ``attentive`` is not None (a head pose was estimated),
    ``attentive_faces`` those with ``attentive`` true; the expression columns count SMOOTHED
    labels (no expression column moves in attention-only sessions).
    """
    index = _bucket_index(session, received_at)
    counts = {
        "frames": 1,
        "face_sum": len(observations),
        "pose_faces": sum(o.attentive is not None for o in observations),
        "attentive_faces": sum(o.attentive is True for o in observations),
    }
    for label in EXPRESSIONS:
        count = sum(o.smoothed_label == label for o in observations)
        if count:
            counts[label] = count
    # One UPDATE in the common case; the row is created once per bucket. No race between the
    # two: the caller holds the participant's row lock, and only this participant's frames
    # write this participant's buckets.
    updated = TimelineBucket.objects.filter(participant_id=participant_id, index=index).update(
        **{name: F(name) + value for name, value in counts.items()}
    )
    if not updated:
        TimelineBucket.objects.create(participant_id=participant_id, index=index, **counts)


def record_frame_result(
    *,
    participant_id: int,
    seq: int,
    result: dict,
    captured_at: float | None = None,
    received_at: float | None = None,
) -> FrameResult | None:
    """Store the analysis of one frame, idempotently on ``(participant, seq)``.

    Called by the inference worker. Only numbers are stored (boxes, probabilities, labels, head
    pose, timings). All in ONE transaction whose first statement, the ``frames_analysed``
    increment, locks the participant's row (so concurrent workers are serialised per
    participant on PostgreSQL; SQLite serialises writers anyway): the ``FrameResult``, the faces
    matched to the participant's ``Track`` rows (``classroom.tracking``: IoU/centre matching,
    time-aware EMA of the probabilities with ``ENGAGEMENT_SMOOTHING_TAU_S``), one
    ``FaceObservation`` per face (raw and smoothed expression, head pose) and the participant's
    ``TimelineBucket`` for the arrival time. A duplicate seq fails the unique constraint and
    rolls everything back, so it changes nothing. On commit the session's dashboards refresh and
    the student's socket gets a ``result`` message.

    In attention-only sessions (``session.analysis == "attention"``) every expression field is
    stored as NULL whatever the worker sent, and tracks carry no smoothed probabilities.

    Args:
        participant_id: ``Participant.pk``.
        seq: the frame's client sequence number.
        result: ``FrameAnalysis.to_dict()`` (CONTRACTS.md, CONTRACTS4.md): ``width``,
            ``height`` (pixels), ``faces`` (see ``_face_observations``: box normalised 0..1,
            clipped here; score; 7 probabilities in FER2013 order, label, confidence, or all
            three None; yaw_deg, pitch_deg, attentive) and ``timings_ms``.
        captured_at: client capture time, ms since the Unix epoch (ignored if not finite).
        received_at: server arrival time, ms since the Unix epoch; default now. It is the time
            axis of tracks, smoothing and timeline buckets.

    Returns:
        The saved ``FrameResult``, or ``None`` (logged at INFO) when the participant is gone,
        its session is not live any more, or this seq was already recorded.

    Raises:
        ValueError: ``result`` does not follow the schema (a bug in the caller); nothing is
            written.
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
    if not isinstance(result, dict):
        raise ValueError("result must be a dict")
    width = int(_finite(result.get("width"), "width"))
    height = int(_finite(result.get("height"), "height"))
    if width < 0 or height < 0:
        raise ValueError("width and height must be >= 0")
    observations = _face_observations(
        result.get("faces", []), attention_only=session.analysis == AnalysisMode.ATTENTION
    )
    timings = result.get("timings_ms") or {}
    if not isinstance(timings, dict):
        raise ValueError("result['timings_ms'] must be a dict")
    timings = {str(k): round(_finite(v, "timing"), 3) for k, v in timings.items()}
    seq = int(seq)

    analysed_at = timezone.now()
    arrived_at = _ms_to_datetime(received_at) or analysed_at
    try:
        with transaction.atomic():
            # The counter UPDATE also takes the participant's row lock, which serialises
            # concurrent workers per participant until commit (tracks and buckets below rely
            # on it). A duplicate seq then fails the unique constraint on insert, which rolls
            # the whole transaction back, counter included.
            if not Participant.objects.filter(pk=participant.pk).update(
                frames_analysed=F("frames_analysed") + 1
            ):
                logger.info(
                    "result for frame %s dropped: participant %s is gone", seq, participant_id
                )
                return None
            frame = FrameResult.objects.create(
                participant=participant,
                seq=seq,
                captured_at=_ms_to_datetime(captured_at),
                received_at=arrived_at,
                analysed_at=analysed_at,
                face_count=len(observations),
                width=width,
                height=height,
                timings_ms=timings,
            )
            _track_faces(participant, session, observations, seq=seq, received_at=arrived_at)
            for observation in observations:
                observation.frame = frame
            FaceObservation.objects.bulk_create(observations)
            _count_in_bucket(participant.pk, session, observations, arrived_at)
            transaction.on_commit(
                partial(_after_result, session.pk, participant.pk, seq, len(observations))
            )
    except IntegrityError:
        if FrameResult.objects.filter(participant=participant, seq=seq).exists():
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


#: Why an accepted frame was never analysed (CONTRACTS4.md): it expired in the broker queue, or
#: a worker found it older than ``ENGAGEMENT_FRAME_TTL_S`` when it reached it.
FRAME_DROP_REASONS = ("expired", "stale")


def record_frame_dropped(*, participant_id: int, seq: int | None, reason: str) -> bool:
    """Count one accepted frame that will never be analysed (``Participant.frames_dropped``).

    Logged at INFO without payload; on commit the session's dashboards refresh (the board shows
    drops). Never fails for a missing participant.

    Args:
        participant_id: ``Participant.pk``.
        seq: the frame's seq, or ``None`` when unknown (only logged).
        reason: one of :data:`FRAME_DROP_REASONS`.

    Returns:
        True when counted; False (no error) when the participant no longer exists.

    Raises:
        ValueError: ``reason`` is not one of :data:`FRAME_DROP_REASONS` (a bug in the caller).
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
    if not counted:
        logger.info("dropped frame %s not counted: participant %s is gone", seq, pk)
        return False
    logger.info("frame %s of participant %s dropped (%s)", seq, pk, reason)
    return True


# --- reports ------------------------------------------------------------------------------------


def build_session_report(session_id) -> SessionReport | None:
    """Build (or rebuild) a session's report and upsert it: one ``SessionReport`` per session.

    Idempotent: running it again replaces ``summary`` and ``built_at``.

    Args:
        session_id: ``ClassSession.pk`` (UUID or string).

    Returns:
        The ``SessionReport``, or ``None`` when the session does not exist (any more).
    """
    session = ClassSession.objects.select_related("teacher").filter(pk=session_id).first()
    if session is None:
        logger.info("report for session %s skipped: session is gone", session_id)
        return None
    summary = selectors.session_report(session)
    report, created = SessionReport.objects.update_or_create(
        session=session, defaults={"summary": summary, "built_at": timezone.now()}
    )
    logger.info("report for session %s %s", session_id, "built" if created else "rebuilt")
    return report
