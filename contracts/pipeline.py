"""The numbers of the face pipeline that every place which runs it must share.

The worker (``inference_worker.pipeline``, ``.quality``, ``.headpose``) and the student's
browser in an on-device session (``classroom/frontend/pipeline.js``, which receives
:func:`pipeline_definition` in the page's config) crop, level, gate and score faces with these
values, so that the two read the same face the same way. Each value was measured where the
worker module that uses it says (the docstrings of the names it re-exports); here they are only
written down once.

Standard library only, like the rest of :mod:`contracts`.
"""

from __future__ import annotations

from typing import Any

INPUT_SIZE: int = 48
"""Side of the classifier's square gray input, pixels (FER2013's 48x48;
``ml.preprocessing.INPUT_SIZE``)."""

CROP_MARGIN: float = 0.2
"""The square crop's side is ``(1 + CROP_MARGIN)`` times the detector box's longer side
(measured: ``inference_worker.pipeline.DEFAULT_CROP_MARGIN``)."""

LEVEL_ABOVE_DEG: float = 5.0
"""Faces whose eye line is tilted by at least this many degrees are cropped with the eyes
levelled (``inference_worker.pipeline.DEFAULT_LEVEL_ABOVE_DEG``)."""

MIN_DETECTION_SCORE: float = 0.5
"""Smallest BlazeFace score of a face (``inference_worker.blazeface.MIN_DETECTION_CONFIDENCE``,
MediaPipe's default)."""

# --- the face-quality gate (inference_worker.quality) ------------------------------------------
MIN_FACE_PX: float = 12.0
"""Smallest longer side of a face's box, pixels of the analysed frame."""
MAX_YAW_DEG: float = 45.0
"""Largest ``|yaw|``, degrees, of a face whose expression is read."""
MAX_PITCH_DEG: float = 40.0
"""Largest ``|pitch|``, degrees, of a face whose expression is read."""
MIN_SNR: float = 3.0
"""Smallest contrast-to-noise ratio of the 48x48 input (Immerkaer's noise estimate)."""
MIN_SHARPNESS: float = 100.0
"""Smallest variance of the Laplacian of the gray crop (shrunk to 48x48 when larger)."""

# --- head pose and attention (inference_worker.headpose) ---------------------------------------
YAW_GAIN: float = 2.0
"""``2R / D`` of the cylinder head model (ear-to-ear distance over the nose tip's depth)."""
FRONTAL_NOSE_RATIO: float = 0.50
"""The nose tip's position between the eye line (0) and the mouth (1) on a frontal face."""
NOSE_DEPTH: float = 0.54
"""Nose tip depth in front of the eyes, in eye-to-mouth heights (MediaPipe canonical face)."""
MOUTH_DEPTH: float = 0.22
"""Mouth centre depth in front of the eyes, in eye-to-mouth heights (same source)."""
ATTENTIVE_MAX_YAW_DEG: float = 30.0
"""Largest ``|yaw|``, degrees, still counted as facing the screen."""
ATTENTIVE_MAX_PITCH_DEG: float = 25.0
"""Largest ``|pitch|``, degrees, still counted as facing the screen."""


def is_attentive(yaw_deg: float, pitch_deg: float) -> bool:
    """Whether a head pose counts as facing the screen: ``|yaw| <= ATTENTIVE_MAX_YAW_DEG`` and
    ``|pitch| <= ATTENTIVE_MAX_PITCH_DEG`` (degrees, both limits inclusive). The one rule: the
    worker (``inference_worker.headpose``) and the on-device intake (``contracts.device``) call
    it."""
    return abs(yaw_deg) <= ATTENTIVE_MAX_YAW_DEG and abs(pitch_deg) <= ATTENTIVE_MAX_PITCH_DEG


def pipeline_definition() -> dict[str, Any]:
    """Every value above as one JSON-able dict, as the browser's pipeline reads it.

    Returns:
        ``{"input_size": 48, "crop_margin": 0.2, "level_above_deg": 5.0, "min_detection_score":
        0.5, "gate": {"min_face_px", "max_yaw_deg", "max_pitch_deg", "min_snr",
        "min_sharpness"}, "head_pose": {"yaw_gain", "frontal_nose_ratio", "nose_depth",
        "mouth_depth", "attentive_max_yaw_deg", "attentive_max_pitch_deg"}}`` (units as the
        constants of this module).
    """
    return {
        "input_size": INPUT_SIZE,
        "crop_margin": CROP_MARGIN,
        "level_above_deg": LEVEL_ABOVE_DEG,
        "min_detection_score": MIN_DETECTION_SCORE,
        "gate": {
            "min_face_px": MIN_FACE_PX,
            "max_yaw_deg": MAX_YAW_DEG,
            "max_pitch_deg": MAX_PITCH_DEG,
            "min_snr": MIN_SNR,
            "min_sharpness": MIN_SHARPNESS,
        },
        "head_pose": {
            "yaw_gain": YAW_GAIN,
            "frontal_nose_ratio": FRONTAL_NOSE_RATIO,
            "nose_depth": NOSE_DEPTH,
            "mouth_depth": MOUTH_DEPTH,
            "attentive_max_yaw_deg": ATTENTIVE_MAX_YAW_DEG,
            "attentive_max_pitch_deg": ATTENTIVE_MAX_PITCH_DEG,
        },
    }
