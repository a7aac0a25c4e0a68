"""The one preprocessing function shared by training and inference.

Every face crop, whether it comes from the FER2013 csv during training or from a live frame in
the worker, goes through :func:`preprocess_faces` so that the model always sees the same input
distribution.
"""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIZE: int = 48
"""Side of the square model input in pixels (FER2013's native 48x48)."""

PREPROCESSING: str = "gray, resize to 48x48 (INTER_AREA when shrinking), float32 = uint8 / 255"
"""Human-readable description written into every model's metadata file."""


def to_gray(face: np.ndarray, *, index: int = 0) -> np.ndarray:
    """One ``uint8`` crop as a C-contiguous gray ``(H, W)`` array (RGB is converted by OpenCV).

    Args:
        face: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` RGB, ``uint8``, not empty.
        index: the crop's position in its batch, for error messages.

    Raises:
        ValueError: not ``uint8``, empty, or another shape.
    """
    face = np.ascontiguousarray(face)  # OpenCV rejects negative strides (flipped views)
    if face.dtype != np.uint8:
        raise ValueError(f"face {index}: expected uint8 pixels, got {face.dtype}")
    if face.size == 0:
        raise ValueError(f"face {index}: empty crop {face.shape}")
    if face.ndim == 3 and face.shape[2] == 3:
        return cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    if face.ndim == 3 and face.shape[2] == 1:
        return np.ascontiguousarray(face[:, :, 0])
    if face.ndim != 2:
        raise ValueError(f"face {index}: expected (H, W) or (H, W, 3), got shape {face.shape}")
    return face


def preprocess_faces(faces: np.ndarray | list[np.ndarray], size: int = INPUT_SIZE) -> np.ndarray:
    """Turn face crops into model input.

    Args:
        faces: ``uint8`` crops, either one array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB),
            or a list of ``N`` arrays ``(H_i, W_i)`` / ``(H_i, W_i, 3)`` of any sizes.
        size: output side in pixels.

    Returns:
        ``float32`` array ``(N, size, size, 1)`` with values in ``[0, 1]``.

    Raises:
        ValueError: a crop is empty, has the wrong number of dimensions or channels, or is not
            ``uint8``.
    """
    if isinstance(faces, np.ndarray) and faces.ndim in (3, 4) and faces.shape[0] == 0:
        return np.zeros((0, size, size, 1), np.float32)
    if (
        isinstance(faces, np.ndarray)
        and faces.dtype == np.uint8
        and faces.shape[1:3] == (size, size)
        and (faces.ndim == 3 or (faces.ndim == 4 and faces.shape[3] == 1))
    ):
        # Already gray at the right size (the FER2013 arrays): same result, no per-face loop.
        out = faces.reshape(len(faces), size, size, 1).astype(np.float32)
        out /= 255.0
        return out
    out = np.empty((len(faces), size, size, 1), np.float32)
    for i, face in enumerate(faces):
        face = to_gray(face, index=i)
        if face.shape != (size, size):
            shrinking = face.shape[0] > size or face.shape[1] > size
            face = cv2.resize(
                face, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            )
        out[i, :, :, 0] = face
    out /= 255.0
    return out


def eye_roll_deg(right_eye: tuple[float, float], left_eye: tuple[float, float]) -> float:
    """In-plane head roll from the two eye centres, in degrees.

    Args:
        right_eye: the subject's right eye ``(x, y)`` in pixels (on the image's left side for a
            face looking at the camera; BlazeFace keypoint 0).
        left_eye: the subject's left eye ``(x, y)`` (BlazeFace keypoint 1).

    Returns:
        The angle of the eye line against the image's x axis, in ``(-180, 180]``; positive when
        the subject's left eye is lower in the image (y grows downwards), 0 for level eyes.
    """
    return float(np.degrees(np.arctan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])))


def aligned_crop(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    margin: float,
    *,
    roll_deg: float = 0.0,
    out_size: int | None = None,
) -> np.ndarray:
    """A square face crop around ``box``, enlarged by ``margin`` and rotated to level the eyes.

    The one framing function of the project: the worker cuts every face with it (roll from the
    BlazeFace eye keypoints, :func:`eye_roll_deg`), and :mod:`ml.framing` measures the margin
    with it on FER2013 faces. The square is centred on the box; its side is
    ``max(w, h) * (1 + margin)``. The crop is sampled by one affine warp (bilinear) that rotates
    the image by ``roll_deg`` about the box centre, so the eyes come out level; parts of the
    square outside the image repeat the border pixels (``BORDER_REPLICATE``), so a face cut by
    the frame edge stays square and undistorted. With ``roll_deg=0`` and the square inside the
    image, the result equals plain slicing.

    Args:
        image: ``uint8`` ``(H, W)`` or ``(H, W, C)``.
        box: ``(x, y, w, h)`` in pixels, ``w, h > 0``; may reach outside the image.
        margin: extra fraction of the box's longer side, ``>= 0``.
        roll_deg: the face's in-plane roll (positive: the eye line goes down to the right).
        out_size: side of the returned crop in pixels; ``None`` keeps the square's own size
            ``S``. Otherwise the same square is resampled in the same warp (bilinear), as a
            model with a fixed input wants it (the face landmark model of
            :mod:`inference_worker.facecheck` reads 192x192).

    Returns:
        A ``uint8`` ``(S, S[, C])`` crop, ``S = max(1, round(max(w, h) * (1 + margin)))``, or
        ``(out_size, out_size[, C])``.

    Raises:
        ValueError: negative margin, a box with ``w`` or ``h <= 0``, ``out_size < 1``, or a
            square with no pixel inside the image.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"expected a box (x, y, w, h) with w, h > 0, got {tuple(box)}")
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + margin)
    size = max(1, int(round(side)))
    cx, cy = x + w / 2.0, y + h / 2.0
    if (
        cx + side / 2 <= 0
        or cy + side / 2 <= 0
        or cx - side / 2 >= width
        or cy - side / 2 >= height
    ):
        raise ValueError(f"box {tuple(box)} lies outside the {width}x{height} image")
    if out_size is not None and out_size < 1:
        raise ValueError(f"out_size must be >= 1, got {out_size}")
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    out = size if out_size is None else out_size
    scale = 1.0 if out_size is None else side / out_size  # image pixels per output pixel
    if (
        roll_deg == 0.0
        and out == size
        and x0 >= 0
        and y0 >= 0
        and x0 + size <= width
        and y0 + size <= height
    ):
        return image[y0 : y0 + size, x0 : x0 + size]
    # Output pixel (u, v) samples the image at c + scale * R(roll) @ ((u, v) - c_out), i.e. the
    # output is the image rotated by -roll about the box centre; the output's pixel centres sit
    # at the centres of out x out equal cells of the square (image index = position - 0.5).
    theta = np.radians(roll_deg)
    cos, sin = np.cos(theta) * scale, np.sin(theta) * scale
    half = (out - 1) / 2.0
    # Inverse map (output -> image), used with WARP_INVERSE_MAP.
    matrix = np.array(
        [
            [cos, -sin, cx - 0.5 - cos * half + sin * half],
            [sin, cos, cy - 0.5 - sin * half - cos * half],
        ],
        np.float64,
    )
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (out, out),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
