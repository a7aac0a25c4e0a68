"""The pure analysis pipeline: image bytes -> faces -> expressions, with per-stage timings.

Pure means: numpy arrays in, frozen dataclasses out; no Django, no Celery, no model loading. The
face detector and the expression classifier are passed in behind two small ``Protocol``s
(:class:`FaceDetector`, :class:`ExpressionModel`), so tests use fakes and the worker uses the
models that :mod:`inference_worker.runtime` loads once per process.

Stages (each timed with :func:`time.perf_counter`, reported in milliseconds)::

    decode    bytes -> RGB uint8 (H, W, 3)                      (OpenCV)
    detect    RGB -> list[Detection] (pixel boxes)              (the detector)
    crop      one square crop with margin per face (eyes levelled when tilted); head pose; the
              face-quality gate (size, pose, noise and sharpness of the 48x48 gray input)
    classify  the crops of ALL ASSESSED faces of the frame in ONE batch -> float32 (N, 7)
              (the classifier); skipped with ``classify=False`` (attention-only sessions)
    total     wall time of the whole call, decode included when it was done here

Head pose (yaw, pitch, attentive; :mod:`inference_worker.headpose`) is computed for every face
whose detection has keypoints, in the ``crop`` stage (a few microseconds per face). The
face-quality gate (:mod:`inference_worker.quality`) then decides which faces the classifier
reads: a face that is too small, turned away, too dark or blurred keeps its box, pose and
attention, gets ``assessed=False`` and a ``quality_issue``, and no expression.

Coordinates: pixels use a top-left origin, x to the right, y down; a box is ``(x, y, w, h)``.
Results carry boxes normalised to the frame (``0..1``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from contracts import FacePayload
from contracts import pipeline as shared_pipeline
from inference_worker.headpose import estimate_head_pose
from inference_worker.quality import QualityGate, sharpness, snr_of_inputs
from ml.labels import EXPRESSIONS
from ml.preprocessing import INPUT_SIZE, aligned_crop, eye_roll_deg, preprocess_faces

__all__ = [
    "DEFAULT_CROP_MARGIN",
    "DEFAULT_GATE",
    "Detection",
    "ExpressionModel",
    "Face",
    "FaceDetector",
    "FrameAnalysis",
    "FrameDecodeError",
    "Timings",
    "analyze_bytes",
    "analyze_frame",
    "decode_image",
    "face_crop",
]

DEFAULT_CROP_MARGIN: float = shared_pipeline.CROP_MARGIN
"""Default crop margin: the square crop's side is ``(1 + margin)`` times the box's longer side.

Why 0.2: FER2013's 48x48 images frame the face a little more loosely than a BlazeFace box. Run on
400 FER2013 training images (upscaled to 192 px and padded), BlazeFace's box side is a median
1/1.16 (full range) to 1/1.17 (short range) of the image side, so a crop of 1.2x the box side
shows the classifier a face framed like its training data. The classifier agrees: on 800
PublicTest faces found by BlazeFace (``python -m inference_worker.framing``), margins 0, 0.1,
0.2, 0.3 and 0.4 score 68.4%, 69.0%, 69.3%, 68.3% and 67.8% upright, and 0.2 is within a point of
the best margin at 15° and 30° rolls once the eyes are levelled.
"""


DEFAULT_LEVEL_ABOVE_DEG: float | None = shared_pipeline.LEVEL_ABOVE_DEG
"""Faces whose eye line is tilted by at least this many degrees are cropped with the eyes
levelled (:func:`face_crop`).

Measured with ``python -m inference_worker.framing --limit 800`` (800 PublicTest faces staged at
192 px and rolled, BlazeFace full range, the 790 M-MAC CNN, margin 0.2): levelling lifts accuracy
from 66.5% to 68.6% at a 15° roll and from 57.1% to 68.0% at 30°, and costs nothing on upright
faces (69.3% square, 69.4% levelled). Levelling only from 5° gives the same figures and leaves
the plain slice (no resampling) for faces whose measured roll is keypoint jitter; from 10° is
0.7-0.9 points worse at 0° and 15°."""


DEFAULT_GATE: QualityGate = QualityGate()
"""The face-quality gate with the measured thresholds (:mod:`inference_worker.quality`)."""


class FrameDecodeError(ValueError):
    """The bytes are not an image OpenCV can decode (empty, truncated, unknown format, too big)."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One face found by a detector, in pixel coordinates of the analysed frame.

    Attributes:
        box: ``(x, y, w, h)`` in pixels, top-left origin, ``float``. May reach outside the frame
            (detectors extrapolate faces cut by the border); ``w, h > 0``.
        score: detector confidence, ``0..1``.
        keypoints: ``None``, or BlazeFace's 6 keypoints as ``(x, y)`` pixels in this order:
            right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion
            (the subject's right/left). Used for head pose (:mod:`inference_worker.headpose`).
        presence: the second-stage face check's face-presence score, ``0..1``
            (:mod:`inference_worker.facecheck`), or ``None`` when no check ran.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: tuple[tuple[float, float], ...] | None = None
    presence: float | None = None


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an RGB frame."""

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces.

        Args:
            rgb: ``uint8`` array ``(H, W, 3)``, RGB channel order.

        Returns:
            Detections in pixel coordinates of ``rgb``, any order; empty when there is no face.
        """
        ...


@runtime_checkable
class ExpressionModel(Protocol):
    """Classifies face crops into the 7 FER2013 expressions (:data:`ml.labels.EXPRESSIONS`)."""

    def predict_proba(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Classify a batch of face crops.

        Args:
            faces: ``N`` ``uint8`` crops, ``(H_i, W_i, 3)`` RGB or ``(H_i, W_i)`` gray, any size
                (a list, or one stacked array when all crops share a size).

        Returns:
            ``float32`` array ``(N, 7)``: probabilities in FER2013 order, each row summing to 1.
        """
        ...


@dataclass(frozen=True, slots=True)
class Face:
    """One analysed face.

    Attributes:
        box: ``(x, y, w, h)`` normalised to the frame (``0..1``, top-left origin), clipped to it.
        score: detector confidence, ``0..1``.
        presence: the second-stage face check's face-presence score, ``0..1``
            (:mod:`inference_worker.facecheck`), or ``None`` when no check ran.
        probabilities: 7 floats in FER2013 order (:data:`ml.labels.EXPRESSIONS`), summing to 1;
            ``None`` when the frame was analysed without the classifier (attention only).
        label: the most probable expression, one of :data:`ml.labels.EXPRESSIONS`, or ``None``
            (attention only).
        confidence: ``max(probabilities)``, ``0..1``, or ``None`` (attention only).
        keypoints: ``None`` or the detector's 6 keypoints normalised to the frame (``0..1``,
            clipped). Not part of :meth:`to_dict`.
        yaw_deg: head yaw in degrees, ``(-90, 90)``, 0 = facing the camera, positive = turned
            towards the image's right side; ``None`` without keypoints.
        pitch_deg: head pitch in degrees, ``(-90, 90)``, 0 = facing the camera, positive = chin
            up; ``None`` without keypoints.
        attentive: facing the screen (see :func:`inference_worker.headpose.is_attentive`), or
            ``None`` without a pose.
        assessed: passed the face-quality gate (:mod:`inference_worker.quality`); ``None``
            when no gate was run.
        quality_issue: why not (one of :data:`contracts.QUALITY_ISSUES`), or ``None``.
        sharpness: :func:`inference_worker.quality.sharpness` of the crop, ``>= 0``; ``None``
            when not measured (no gate, or the face failed on size or pose first). Not part of
            :meth:`to_dict`.
        snr: :func:`inference_worker.quality.snr` of the crop, ``>= 0``, or ``None`` (as
            ``sharpness``). Not part of :meth:`to_dict`.
    """

    box: tuple[float, float, float, float]
    score: float
    probabilities: tuple[float, ...] | None
    label: str | None
    confidence: float | None
    keypoints: tuple[tuple[float, float], ...] | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    attentive: bool | None = None
    assessed: bool | None = None
    quality_issue: str | None = None
    sharpness: float | None = None
    snr: float | None = None
    presence: float | None = None

    def to_payload(self) -> FacePayload:
        """The face as the contract's :class:`contracts.FacePayload` (``keypoints`` left out)."""
        return FacePayload(**{f.name: getattr(self, f.name) for f in fields(FacePayload)})

    def to_dict(self) -> dict[str, Any]:
        """The face as the JSON-able dict of the result schema (:class:`contracts.FacePayload`).

        Returns:
            ``{"box": [x, y, w, h], "score": float, "presence": float | None,
            "probabilities": [7 floats] | None,
            "label": str | None, "confidence": float | None, "yaw_deg": float | None,
            "pitch_deg": float | None, "attentive": bool | None, "assessed": bool | None,
            "quality_issue": str | None}``.
        """
        return self.to_payload().to_dict()


@dataclass(frozen=True, slots=True)
class Timings:
    """Per-stage wall times of one frame, in milliseconds (``time.perf_counter``).

    ``decode`` is 0.0 when the caller decoded the frame itself (:func:`analyze_frame`);
    ``classify`` is 0.0 when no face was found or ``classify=False`` (the classifier is not
    called).
    ``total`` is the wall time of the whole analysis (decode included), so it is at least the sum
    of the stages.
    """

    decode: float
    detect: float
    crop: float
    classify: float
    total: float

    def to_dict(self) -> dict[str, float]:
        """``{"decode", "detect", "crop", "classify", "total"}`` -> milliseconds."""
        return {
            "decode": self.decode,
            "detect": self.detect,
            "crop": self.crop,
            "classify": self.classify,
            "total": self.total,
        }


@dataclass(frozen=True, slots=True)
class FrameAnalysis:
    """The result of analysing one frame; holds no pixels.

    Attributes:
        width: frame width in pixels.
        height: frame height in pixels.
        faces: analysed faces, in descending detector score.
        timings: per-stage timings in milliseconds.
    """

    width: int
    height: int
    faces: tuple[Face, ...] = field(default_factory=tuple)
    timings: Timings = field(default_factory=lambda: Timings(0.0, 0.0, 0.0, 0.0, 0.0))

    @property
    def face_count(self) -> int:
        """Number of faces analysed."""
        return len(self.faces)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able result dict passed to ``classroom.services.record_frame_result``.

        Returns:
            Exactly ``{"width": int, "height": int, "faces": [face.to_dict(), ...],
            "timings_ms": {"decode", "detect", "crop", "classify", "total"}}`` with plain
            Python ints/floats/bools/None (schema: :class:`contracts.FrameResultPayload`; faces see
            :meth:`Face.to_dict`).
        """
        return {
            "width": self.width,
            "height": self.height,
            "faces": [face.to_dict() for face in self.faces],
            "timings_ms": self.timings.to_dict(),
        }


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def decode_image(data: bytes, *, max_side: int | None = None) -> np.ndarray:
    """Decode JPEG/PNG/WebP (anything OpenCV reads) bytes into an RGB image.

    EXIF orientation is applied (OpenCV's default); alpha is dropped; gray and 16-bit images
    become 8-bit RGB.

    Args:
        data: encoded image bytes.
        max_side: if given, reject images whose width or height exceeds it (pixels).

    Returns:
        ``uint8`` array ``(H, W, 3)``, RGB, C-contiguous.

    Raises:
        FrameDecodeError: ``data`` is empty or not decodable, or the image is larger than
            ``max_side``.
    """
    if not data:
        raise FrameDecodeError("empty image data")
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        if hasattr(cv2, "IMREAD_COLOR_RGB"):  # OpenCV >= 4.11 decodes straight to RGB
            rgb = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
        else:  # pragma: no cover - older OpenCV
            bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            rgb = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:
        raise FrameDecodeError(f"OpenCV could not decode {len(data)} bytes") from exc
    if rgb is None or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise FrameDecodeError(f"not a decodable image ({len(data)} bytes)")
    height, width = rgb.shape[:2]
    if max_side is not None and max(height, width) > max_side:
        raise FrameDecodeError(f"image {width}x{height} exceeds {max_side} px per side")
    return np.ascontiguousarray(rgb)


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy array, got {getattr(rgb, 'dtype', type(rgb))}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")


def _normalised_box(
    box: Sequence[float], width: int, height: int
) -> tuple[float, float, float, float]:
    """Clip a pixel box to the frame and normalise it to ``0..1``."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)


def _normalised_keypoints(
    keypoints: Sequence[Sequence[float]] | None, width: int, height: int
) -> tuple[tuple[float, float], ...] | None:
    if keypoints is None:
        return None
    return tuple(
        (min(max(float(px) / width, 0.0), 1.0), min(max(float(py) / height, 0.0), 1.0))
        for px, py in keypoints
    )


def face_crop(
    rgb: np.ndarray,
    detection: Detection,
    margin: float = DEFAULT_CROP_MARGIN,
    level_above_deg: float | None = DEFAULT_LEVEL_ABOVE_DEG,
) -> np.ndarray:
    """The classifier's view of one detected face: a square crop, eyes levelled when tilted.

    :func:`ml.preprocessing.aligned_crop` (the project's one framing function) cuts a square
    of ``max(w, h) * (1 + margin)`` around the box. When the detection has keypoints and the
    eye line is tilted by at least ``level_above_deg`` (:func:`ml.preprocessing.eye_roll_deg`),
    the crop is rotated so the eyes are level, as in FER2013's faces. Parts of the square outside
    the frame repeat the border pixels, so a face at the edge stays square.

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` frame.
        detection: the face's box (pixels) and optional keypoints.
        margin: extra fraction of the box's longer side, ``>= 0``.
        level_above_deg: smallest roll, in degrees, that is levelled; ``None`` never levels.

    Returns:
        ``uint8`` ``(S, S, 3)``, ``S = round(max(w, h) * (1 + margin))``.

    Raises:
        ValueError: negative margin, a non-positive box size, or a box outside the frame.
    """
    roll = 0.0
    if level_above_deg is not None and detection.keypoints and len(detection.keypoints) >= 2:
        measured = eye_roll_deg(detection.keypoints[0], detection.keypoints[1])
        if abs(measured) >= level_above_deg:
            roll = measured
    return aligned_crop(rgb, detection.box, margin, roll_deg=roll)


def analyze_frame(
    rgb: np.ndarray,
    detector: FaceDetector,
    classifier: ExpressionModel | None,
    *,
    classify: bool = True,
    margin: float = DEFAULT_CROP_MARGIN,
    decode_ms: float = 0.0,
    gate: QualityGate | None = DEFAULT_GATE,
    level_above_deg: float | None = DEFAULT_LEVEL_ABOVE_DEG,
) -> FrameAnalysis:
    """Detect every face of one frame, estimate its head pose, and classify its expression.

    The classifier is called exactly once per frame with the crops of all assessed faces as one
    batch (gray 48x48, as :func:`ml.preprocessing.preprocess_faces` makes them), or not at all
    when no face passes the gate or ``classify`` is false. Detections whose box lies entirely
    outside the frame are dropped.

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` RGB frame.
        detector: any :class:`FaceDetector`.
        classifier: any :class:`ExpressionModel`; may be ``None`` when ``classify`` is false.
        classify: ``False`` for attention-only analysis: the classifier is never called and every
            face has ``probabilities``, ``label`` and ``confidence`` ``None``.
        margin: crop margin, see :func:`face_crop`.
        decode_ms: time already spent decoding this frame, reported as ``timings.decode`` and
            added to ``timings.total``.
        gate: the face-quality gate (default: the measured thresholds); ``None`` reads every
            face (``assessed`` ``None``).
        level_above_deg: faces whose eye line is tilted by at least this many degrees are
            cropped with the eyes levelled (:func:`face_crop`); ``None`` never levels.

    Returns:
        The :class:`FrameAnalysis`; faces sorted by descending detector score; head pose from
        the detection's keypoints in frame pixels (``None`` fields without keypoints);
        unassessed faces without expression.

    Raises:
        ValueError: ``rgb`` is not ``uint8 (H, W, 3)``; ``classify`` is true and ``classifier``
            is ``None``; or the classifier returns an array that is not ``(N, 7)`` for ``N``
            crops.
    """
    start = time.perf_counter()
    _check_rgb(rgb)
    if classify and classifier is None:
        raise ValueError("classify=True needs a classifier")
    height, width = rgb.shape[:2]

    t = time.perf_counter()
    detections = sorted(detector.detect(rgb), key=lambda d: d.score, reverse=True)
    detect_ms = _ms_since(t)

    t = time.perf_counter()
    kept: list[Detection] = []
    crops: list[np.ndarray] = []
    for detection in detections:
        try:
            crops.append(face_crop(rgb, detection, margin, level_above_deg))
        except ValueError:
            continue  # a degenerate or off-frame box: nothing to analyse
        kept.append(detection)
    # Pose from the PIXEL keypoints: normalised ones are clipped and anisotropic.
    poses = [estimate_head_pose(detection.keypoints) for detection in kept]
    issues: list[str | None] = [None] * len(kept)
    sharp: list[float | None] = [None] * len(kept)
    noise: list[float | None] = [None] * len(kept)
    if gate is not None:
        issues = [
            gate.issue_before_crop(
                max(d.box[2], d.box[3]),
                None if p is None else p.yaw_deg,
                None if p is None else p.pitch_deg,
            )
            for d, p in zip(kept, poses, strict=True)
        ]
    candidates = [i for i, issue in enumerate(issues) if issue is None]
    if gate is None and not classify:
        candidates = []  # nothing below needs the pixels
    inputs = preprocess_faces([crops[i] for i in candidates], INPUT_SIZE)
    if gate is not None and candidates:
        measures = zip(
            candidates,
            snr_of_inputs(inputs),
            sharpness([crops[i] for i in candidates]),
            strict=True,
        )
        for i, contrast_to_noise, value in measures:
            sharp[i], noise[i] = float(value), float(contrast_to_noise)
            issues[i] = gate.issue_of_pixels(float(contrast_to_noise), float(value))
    read = [k for k, i in enumerate(candidates) if issues[i] is None]
    crop_ms = _ms_since(t)

    classify_ms = 0.0
    rows: list[np.ndarray | None] = [None] * len(kept)
    if classify and read:
        # The classifier's own input, back to uint8: exact (x = u / 255 in float32), and the
        # classifier's preprocessing takes its no-resize path.
        batch = np.rint(inputs[read, :, :, 0] * 255.0).astype(np.uint8)
        t = time.perf_counter()
        probabilities = np.asarray(classifier.predict_proba(batch), dtype=np.float32)
        classify_ms = _ms_since(t)
        if probabilities.shape != (len(read), len(EXPRESSIONS)):
            raise ValueError(
                f"classifier returned shape {probabilities.shape}, "
                f"expected ({len(read)}, {len(EXPRESSIONS)})"
            )
        for k, row in zip(read, probabilities, strict=True):
            rows[candidates[k]] = row

    faces: list[Face] = []
    for detection, pose, row, issue, value, ratio in zip(
        kept, poses, rows, issues, sharp, noise, strict=True
    ):
        best = None if row is None else int(np.argmax(row))
        faces.append(
            Face(
                box=_normalised_box(detection.box, width, height),
                score=min(max(float(detection.score), 0.0), 1.0),
                presence=None
                if detection.presence is None
                else min(max(float(detection.presence), 0.0), 1.0),
                probabilities=None if row is None else tuple(float(p) for p in row),
                label=None if best is None else EXPRESSIONS[best],
                confidence=None if best is None else float(row[best]),
                keypoints=_normalised_keypoints(detection.keypoints, width, height),
                yaw_deg=None if pose is None else float(pose.yaw_deg),
                pitch_deg=None if pose is None else float(pose.pitch_deg),
                attentive=None if pose is None else bool(pose.attentive),
                assessed=None if gate is None else issue is None,
                quality_issue=issue,
                sharpness=value,
                snr=ratio,
            )
        )

    timings = Timings(
        decode=float(decode_ms),
        detect=detect_ms,
        crop=crop_ms,
        classify=classify_ms,
        total=float(decode_ms) + _ms_since(start),
    )
    return FrameAnalysis(width=int(width), height=int(height), faces=tuple(faces), timings=timings)


def analyze_bytes(
    data: bytes,
    detector: FaceDetector,
    classifier: ExpressionModel | None,
    *,
    classify: bool = True,
    margin: float = DEFAULT_CROP_MARGIN,
    max_side: int | None = None,
    gate: QualityGate | None = DEFAULT_GATE,
) -> FrameAnalysis:
    """Decode image bytes and analyse the frame; ``timings.decode`` and ``total`` include decoding.

    Args:
        data: JPEG/PNG/WebP bytes.
        detector: any :class:`FaceDetector`.
        classifier: any :class:`ExpressionModel` (``None`` allowed when ``classify`` is false).
        classify: ``False``: attention only, the classifier is never called (see
            :func:`analyze_frame`).
        margin: crop margin, see :func:`face_crop`.
        max_side: reject images larger than this many pixels per side (see :func:`decode_image`).
        gate: the face-quality gate, see :func:`analyze_frame`.

    Returns:
        The :class:`FrameAnalysis` of the decoded frame.

    Raises:
        FrameDecodeError: the bytes cannot be decoded (a ``ValueError``).
        ValueError: as :func:`analyze_frame`.
    """
    start = time.perf_counter()
    rgb = decode_image(data, max_side=max_side)
    decode_ms = _ms_since(start)
    return analyze_frame(
        rgb,
        detector,
        classifier,
        classify=classify,
        margin=margin,
        decode_ms=decode_ms,
        gate=gate,
    )
