"""Frame intake: validate one binary frame message and queue it for analysis (an on-device
session's numbers messages: :mod:`classroom.services.device`).

Frames are never stored or logged: the bytes are checked and handed to the broker on commit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import contracts
from classroom import dispatch, selectors
from classroom.choices import AnalysisSite, FrameErrorCode, SessionStatus, StreamSource
from classroom.models import Participant
from classroom.services.errors import FrameRejected
from classroom.services.images import check_decodable, check_format
from classroom.services.rate_limit import address_byte_budget, frame_rate_limiter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameAccepted:
    """A frame passed intake and is queued for analysis (after commit)."""

    seq: int


def _validate_frame(
    participant: Participant, data: bytes, seq: int | None, client_address: str | None = None
) -> tuple[contracts.FrameHeader, bytes]:
    session = participant.session
    if session.status != SessionStatus.LIVE:
        raise FrameRejected(
            FrameErrorCode.SESSION_NOT_LIVE, f"The session is {session.status}, not live.", seq
        )
    if participant.consent_given_at is None or participant.withdrawn_at is not None:
        raise FrameRejected(FrameErrorCode.NO_CONSENT, seq=seq)
    if session.analysis_site == AnalysisSite.ON_DEVICE and not session.server_fallback:
        raise FrameRejected(
            FrameErrorCode.PICTURES_NOT_ACCEPTED,
            "This session analyses faces on your device: no picture is accepted.",
            seq,
        )
    if not frame_rate_limiter.allow(participant.pk, session.frame_interval_s):
        raise FrameRejected(
            FrameErrorCode.RATE_LIMITED,
            f"Send at most one frame every {session.frame_interval_s:g} s.",
            seq,
        )
    parsed = contracts.parse_frame_header(data)
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
    if client_address is not None:
        rate = float(settings.ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS)
        if not address_byte_budget.take(client_address, len(image), rate, 2.0 * rate):
            raise FrameRejected(
                FrameErrorCode.RATE_LIMITED,
                "Too many frame bytes from this network address; frames are being skipped.",
                seq,
            )
    try:
        check_format(image)
        check_decodable(image, settings.ENGAGEMENT_MAX_FRAME_SIDE)
    except FrameRejected as exc:
        exc.seq = seq
        raise
    return header, image


def accept_frame(
    participant_id: int,
    data: bytes,
    *,
    source: str = StreamSource.WEBCAM,
    client_address: str | None = None,
) -> FrameAccepted:
    """Validate one binary frame message and queue it for analysis.

    Checks, in order: the participant exists, its session is live, consent was given, the rate
    (:data:`frame_rate_limiter`), the header, size <= ``ENGAGEMENT_MAX_FRAME_BYTES``, the client
    address's byte budget, magic bytes (JPEG), dimensions <= ``ENGAGEMENT_MAX_FRAME_SIDE`` read from the image header
    before decoding, and that it decodes. Counts ``frames_received`` (every message of an
    existing participant) and ``frames_rejected``, and updates ``last_seen_at``. The frame is
    sent on commit with ``dispatch.send_analyze_frame``, with the stream's ``source``, the
    session's ``analysis`` mode and the frame's server key (the participant's
    ``frames_received`` after this frame: the stored result is unique on it, so a client whose
    seq restarts loses nothing); it is never stored or logged.

    Args:
        participant_id: ``Participant.pk`` from the student's Django session.
        data: 12-byte header (seq uint32 BE, captured_at float64 BE, ms since epoch) + image.
        source: what the student streams, a ``StreamSource`` value (``"webcam"`` or
            ``"screen"``; the stream consumer validates the client's choice).
        client_address: the client's network address (the socket's peer); its frames share
            ``ENGAGEMENT_INTAKE_BYTES_PER_S_PER_ADDRESS`` bytes per second (a burst of twice
            that), checked before any decoding; ``None``: no address budget.

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
    seq = contracts.peek_seq(data)
    participant = selectors.participant_for_stream(participant_id)
    if participant is None:
        raise FrameRejected(FrameErrorCode.SESSION_NOT_LIVE, "You are not part of a session.", seq)
    try:
        header, image = _validate_frame(participant, data, seq, client_address)
    except FrameRejected as exc:
        _count_frame(participant.pk, rejected=True)
        logger.debug("frame %s of participant %s rejected: %s", seq, participant.pk, exc.code)
        raise
    with transaction.atomic():
        _count_frame(participant.pk, rejected=False)
        # The frame's key is the server's count of this participant's messages, read back under
        # the row lock the UPDATE took: unique and increasing even when the client's seq
        # restarts (a page without localStorage counts from 1 again after a reload).
        key = (
            Participant.objects.filter(pk=participant.pk)
            .values_list("frames_received", flat=True)
            .get()
        )
        transaction.on_commit(
            partial(
                dispatch.send_analyze_frame,
                participant_id=participant.pk,
                seq=header.seq,
                key=key,
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
