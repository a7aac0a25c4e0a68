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
