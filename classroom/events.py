"""Names and shapes of channel-layer events and WebSocket wire messages (pure, no I/O).

Channel-layer event types are dotted; Channels calls the consumer method named after the type
with dots replaced by underscores (``session.update`` -> ``session_update``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

#: Dashboard refresh notification, sent to ``realtime.session_group(session_id)``.
SESSION_UPDATE = "session.update"
#: Sent to each participant's group when the teacher ends the session.
SESSION_ENDED = "session.ended"
#: A frame of this participant was analysed, sent to ``realtime.participant_group(id)``.
FRAME_RESULT = "frame.result"

#: WebSocket close codes (4000-4999 are application-defined, RFC 6455 section 7.4.2).
CLOSE_SESSION_ENDED = 4000
CLOSE_BAD_REQUEST = 4400
CLOSE_FORBIDDEN = 4403

#: Binary frame header: seq uint32 big-endian, captured_at float64 big-endian (ms since epoch).
FRAME_HEADER = struct.Struct(">Id")
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 12 bytes


@dataclass(frozen=True)
class FrameHeader:
    """Decoded 12-byte frame header."""

    seq: int
    captured_at_ms: float


def peek_seq(message: bytes) -> int | None:
    """The sequence number of a binary message, or ``None`` if it is shorter than a header."""
    if len(message) < FRAME_HEADER_SIZE:
        return None
    return FRAME_HEADER.unpack_from(message)[0]


def parse_frame_header(message: bytes) -> tuple[FrameHeader, bytes] | None:
    """Split a binary message into header and image bytes.

    Args:
        message: 12-byte header (seq uint32 BE, captured_at float64 BE in ms since the Unix
            epoch, client clock) followed by the image bytes.

    Returns:
        ``(header, image_bytes)``, or ``None`` when the message is shorter than the header,
        carries no image bytes, or ``captured_at`` is not a finite number.
    """
    if len(message) <= FRAME_HEADER_SIZE:
        return None
    seq, captured_at = FRAME_HEADER.unpack_from(message)
    if not math.isfinite(captured_at):
        return None
    return FrameHeader(seq=seq, captured_at_ms=captured_at), message[FRAME_HEADER_SIZE:]


def encode_frame(seq: int, captured_at_ms: float, image: bytes) -> bytes:
    """Build a binary frame message (the inverse of :func:`parse_frame_header`; clients, tests)."""
    return FRAME_HEADER.pack(seq, captured_at_ms) + image


def ack_message(seq: int) -> dict:
    """``{"type": "ack", "seq": n}``: frame accepted and queued."""
    return {"type": "ack", "seq": seq}


def error_message(seq: int | None, code: str, message: str) -> dict:
    """``{"type": "error", ...}``: frame rejected; the socket stays open."""
    return {"type": "error", "seq": seq, "code": code, "message": message}


def result_message(seq: int, faces: int) -> dict:
    """``{"type": "result", "seq": n, "faces": k}``: frame analysed."""
    return {"type": "result", "seq": seq, "faces": faces}


def session_ended_message() -> dict:
    """``{"type": "session.ended"}``, sent before closing with ``CLOSE_SESSION_ENDED``."""
    return {"type": SESSION_ENDED}
