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
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from classroom import dispatch, events, realtime, selectors
from classroom.choices import (
    DISPLAY_NAME_MAX_LENGTH,
    EXPRESSIONS,
    MAX_FRAME_INTERVAL_S,
    MIN_FRAME_INTERVAL_S,
    TITLE_MAX_LENGTH,
    FrameErrorCode,
    JoinErrorCode,
    SessionStatus,
)
from classroom.models import (
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
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


def create_session(*, teacher, title: str, frame_interval_s: float = 1.0) -> ClassSession:
    """Create a draft session with a fresh join code.

    Args:
        teacher: the owning user (authenticated, active).
        title: 1 to 200 characters after collapsing whitespace.
        frame_interval_s: seconds between frames per student, in [0.2, 10].

    Returns:
        The saved ``ClassSession`` (status ``draft``).

    Raises:
        PermissionDenied: ``teacher`` is anonymous or inactive.
        ValidationError: bad title or interval.
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
    for _ in range(10):
        code = generate_join_code()
        try:
            with transaction.atomic():
                session = ClassSession.objects.create(
                    teacher=teacher, title=title, frame_interval_s=interval, join_code=code
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


def accept_frame(participant_id: int, data: bytes) -> FrameAccepted:
    """Validate one binary frame message and queue it for analysis.

    Checks, in order: the participant exists, its session is live, consent was given, the rate
    (:data:`frame_rate_limiter`), the header, size <= ``ENGAGEMENT_MAX_FRAME_BYTES``, magic bytes
    (JPEG/PNG/WebP), dimensions <= ``ENGAGEMENT_MAX_FRAME_SIDE`` read from the image header
    before decoding, and that it decodes. Counts ``frames_received`` (every message of an
    existing participant) and ``frames_rejected``, and updates ``last_seen_at``. The frame is
    sent on commit with ``dispatch.send_analyze_frame``; it is never stored or logged.

    Args:
        participant_id: ``Participant.pk`` from the student's Django session.
        data: 12-byte header (seq uint32 BE, captured_at float64 BE, ms since epoch) + image.

    Returns:
        ``FrameAccepted(seq)``.

    Raises:
        FrameRejected: with ``code`` ``session_not_live`` (also when the participant no longer
            exists), ``no_consent``, ``rate_limited``, ``bad_header``, ``too_large``,
            ``bad_format``, ``too_many_pixels`` or ``undecodable``.
    """
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


def _face_observations(faces) -> list[FaceObservation]:
    if not isinstance(faces, list):
        raise ValueError("result['faces'] must be a list")
    observations = []
    for index, face in enumerate(faces):
        box = face.get("box")
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise ValueError("face box must be [x, y, w, h]")
        x, y, w, h = (_finite(v, "box value") for v in box)
        # Detector boxes may reach past the frame's edges: keep the visible part, normalised.
        x0, y0, x1, y1 = _unit(x), _unit(y), _unit(x + max(w, 0.0)), _unit(y + max(h, 0.0))
        probabilities = face.get("probabilities")
        if not isinstance(probabilities, list | tuple) or len(probabilities) != len(EXPRESSIONS):
            raise ValueError(f"face probabilities must be {len(EXPRESSIONS)} numbers")
        label = face.get("label")
        if label not in EXPRESSIONS:
            raise ValueError(f"unknown expression label {label!r}")
        score = face.get("score")
        observations.append(
            FaceObservation(
                index=index,
                box_x=x0,
                box_y=y0,
                box_w=x1 - x0,
                box_h=y1 - y0,
                score=None if score is None else _unit(_finite(score, "score")),
                label=label,
                confidence=_unit(_finite(face.get("confidence"), "confidence")),
                probabilities=[_finite(p, "probability") for p in probabilities],
            )
        )
    return observations


def record_frame_result(
    *,
    participant_id: int,
    seq: int,
    result: dict,
    captured_at: float | None = None,
    received_at: float | None = None,
) -> FrameResult | None:
    """Store the analysis of one frame, idempotently on ``(participant, seq)``.

    Called by the inference worker. Only numbers are stored (boxes, probabilities, labels,
    timings); on commit the session's dashboards refresh and the student's socket gets a
    ``result`` message.

    Args:
        participant_id: ``Participant.pk``.
        seq: the frame's client sequence number.
        result: ``FrameAnalysis.to_dict()`` (CONTRACTS.md): ``width``, ``height`` (pixels),
            ``faces`` (box normalised 0..1 - clipped to the frame here -, score, 7
            probabilities in FER2013 order, label, confidence) and ``timings_ms``.
        captured_at: client capture time, ms since the Unix epoch (ignored if not finite).
        received_at: server arrival time, ms since the Unix epoch; default now.

    Returns:
        The saved ``FrameResult``, or ``None`` (logged at INFO) when the participant is gone,
        its session is not live any more, or this seq was already recorded.

    Raises:
        ValueError: ``result`` does not follow the schema (a bug in the caller).
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
    observations = _face_observations(result.get("faces", []))
    timings = result.get("timings_ms") or {}
    if not isinstance(timings, dict):
        raise ValueError("result['timings_ms'] must be a dict")
    timings = {str(k): round(_finite(v, "timing"), 3) for k, v in timings.items()}
    seq = int(seq)

    analysed_at = timezone.now()
    if FrameResult.objects.filter(participant=participant, seq=seq).exists():
        logger.info("duplicate result for frame %s of participant %s ignored", seq, participant_id)
        return None
    try:
        with transaction.atomic():
            frame = FrameResult.objects.create(
                participant=participant,
                seq=seq,
                captured_at=_ms_to_datetime(captured_at),
                received_at=_ms_to_datetime(received_at) or analysed_at,
                analysed_at=analysed_at,
                face_count=len(observations),
                width=width,
                height=height,
                timings_ms=timings,
            )
            for observation in observations:
                observation.frame = frame
            FaceObservation.objects.bulk_create(observations)
            transaction.on_commit(
                partial(_after_result, session.pk, participant.pk, seq, len(observations))
            )
    except IntegrityError:
        if FrameResult.objects.filter(participant=participant, seq=seq).exists():
            logger.info(
                "duplicate result for frame %s of participant %s ignored (race)",
                seq,
                participant_id,
            )
            return None
        raise
    return frame


def _after_result(session_id, participant_id: int, seq: int, faces: int) -> None:
    realtime.broadcast(session_id)
    realtime.notify_frame_result(participant_id, seq, faces)


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
