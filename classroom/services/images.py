"""Checks of an untrusted image before it is queued: format by magic bytes, size, decodability."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from classroom.choices import FrameErrorCode
from classroom.services.errors import FrameRejected

#: Magic bytes of the one accepted format: JPEG, what the student page sends
#: (``canvas.toBlob("image/jpeg")``) and ``simulate_class`` encodes. PNG and WebP are refused: a
#: 16-bit 4096x4096 PNG of 134 KB cost the web process 320 ms to check (outside review).
_JPEG_MAGIC = b"\xff\xd8\xff"


def check_format(image: bytes) -> None:
    """Accept JPEG by its magic bytes.

    Raises:
        FrameRejected: ``bad_format`` for anything else.
    """
    if image.startswith(_JPEG_MAGIC):
        return
    raise FrameRejected(FrameErrorCode.BAD_FORMAT, "Frames must be JPEG images.")


def check_decodable(image: bytes, max_side: int) -> tuple[int, int]:
    """Read the dimensions from the image header, then decode (JPEG at 1/8 scale).

    Args:
        image: the encoded image bytes.
        max_side: largest accepted width or height, pixels.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        FrameRejected: ``too_many_pixels`` (a side over ``max_side``, or a decompression bomb)
            or ``undecodable`` (any decoder failure).
    """
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
