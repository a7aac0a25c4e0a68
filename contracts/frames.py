"""The binary frame message a student's browser sends on ``/ws/stream/``.

Layout: a 12-byte header, then the encoded image (JPEG, PNG or WebP)::

    offset 0   uint32  big-endian   seq          the client's frame counter
    offset 4   float64 big-endian   captured_at  capture time, ms since the Unix epoch
                                                 (client clock)
    offset 12  bytes                image

``classroom/static/classroom/student.js`` writes the same layout (``DataView.setUint32`` and
``setFloat64`` with big-endian order).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

FRAME_HEADER = struct.Struct(">Id")
"""The header: seq uint32 big-endian, captured_at float64 big-endian (ms since the epoch)."""

FRAME_HEADER_SIZE: int = FRAME_HEADER.size
"""12 bytes."""


@dataclass(frozen=True)
class FrameHeader:
    """A decoded frame header.

    Attributes:
        seq: the client's frame counter, ``0 <= seq < 2**32``.
        captured_at_ms: capture time, ms since the Unix epoch (client clock), finite.
    """

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
        message: a 12-byte header followed by the image bytes (see the module docstring).

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
    """Build a binary frame message (the inverse of :func:`parse_frame_header`).

    Raises:
        struct.error: ``seq`` is outside ``[0, 2**32)``.
    """
    return FRAME_HEADER.pack(seq, captured_at_ms) + image
