"""MediaPipe BlazeFace face detection: the shipped model files and the Tasks API detector.

MediaPipe BlazeFace runs through the MediaPipe Tasks API
(``mediapipe.tasks.python.vision.FaceDetector``), from the model files shipped in
``inference_worker/models/`` (see ``SOURCE.md`` there; nothing is downloaded). Checked with
mediapipe 1.2.2: the Tasks ``FaceDetector`` accepts BOTH files; it reads the input size
(128x128 short range, 192x192 full range) and the anchor count (896 / 2304) from the model, and
its boxes and keypoints on the full-range model are correct (drawn and checked on the shared
photos). Full range finds 4/4 faces in ``webcam_posed_expressions_4.jpg`` and 6/6 in
``group_photo_6_people.jpg`` at whole-frame size (short range: 4/4 and 1/6), so it is the
default. Loading the sparse full-range file prints harmless "Sparsity tensors may not yet be
fully supported" warnings from LiteRT on stderr. Per source (``webcam``, ``screen``, ``room``)
the detector is wrapped in the tiling of :data:`inference_worker.detection.SOURCE_SETTINGS`.

**No TensorFlow on the CPU path.** In mediapipe 1.2.2 every Tasks module (``face_detector``,
``vision.core.image``, the result containers, ...) does ``from
mediapipe.tasks.python.core.optional_dependencies import doc_controls``, and that module runs
``from tensorflow.tools.docs import doc_controls`` inside ``try/except ModuleNotFoundError``:
the import exists only for MediaPipe's API-docs generator (``doc_controls.do_not_generate_docs``
is a decorator that marks symbols hidden from the docs) and falls back to a no-op decorator
when TensorFlow is not installed. With tensorflow-cpu installed (our ``.keras`` back end and
``ml`` training need it) it loads all of TensorFlow for a docs decorator (measured here:
importing the face detector takes 2.1 s and ``ru_maxrss`` 550 MB with it, 0.9 s and 108 MB
without). :func:`import_mediapipe` therefore registers, before MediaPipe is first imported, a
module of that name that holds exactly MediaPipe's own fallback (a no-op
``do_not_generate_docs``), i.e. what MediaPipe does on a machine without TensorFlow; nothing
else in the face detector's import graph touches TensorFlow (``mediapipe.tasks.python.metadata``
does, but the detector does not import it). Running the BlazeFace ``.tflite`` files through
LiteRT with our own anchor decoding would also avoid TensorFlow, but it would replace
MediaPipe's tested pre-processing, decoding and weighted NMS, on which the recall figures in
the README were measured; the one-module shim keeps the detector bit-for-bit the same. With the
default LiteRT classifier a CPU worker thus never loads TensorFlow (a test checks
``sys.modules`` after detecting and classifying a real frame).
"""

from __future__ import annotations

import os
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

from inference_worker.pipeline import Detection

MODELS_DIR: Path = Path(__file__).resolve().parent / "models"
"""Folder of the shipped BlazeFace files (with ``LICENSE`` and ``SOURCE.md``)."""

DETECTOR_MODELS: dict[str, Path] = {
    "full": MODELS_DIR / "face_detection_full_range_sparse.tflite",
    "short": MODELS_DIR / "face_detection_short_range.tflite",
}
"""``ENGAGEMENT_DETECTOR`` value -> BlazeFace model file. ``full``: faces up to ~5 m from the
camera (192x192 input, group photos, room cameras); ``short``: faces within ~2 m (128x128 input,
webcams, selfies)."""

DEFAULT_DETECTOR: str = "full"
MIN_DETECTION_CONFIDENCE: float = 0.5
"""Detector score threshold (MediaPipe's default). The sixth face of the group photo scores 0.52."""
MIN_SUPPRESSION_THRESHOLD: float = 0.3
"""IoU above which overlapping detections are merged (MediaPipe's default)."""

_MP_OPTIONAL_DEPENDENCIES = "mediapipe.tasks.python.core.optional_dependencies"


def import_mediapipe() -> tuple[Any, Any, Any]:
    """Import MediaPipe's Tasks face detector WITHOUT importing TensorFlow (see module docstring).

    Registers MediaPipe's own no-TensorFlow fallback for ``optional_dependencies`` (a
    ``doc_controls`` whose ``do_not_generate_docs`` returns its argument) unless that module is
    already imported, then imports MediaPipe.

    Returns:
        ``(mediapipe, BaseOptions, face_detector)`` modules/classes.
    """
    if _MP_OPTIONAL_DEPENDENCIES not in sys.modules:
        shim = types.ModuleType(
            _MP_OPTIONAL_DEPENDENCIES,
            "MediaPipe Tasks' optional dependencies, as MediaPipe defines them when TensorFlow "
            "is not installed (registered by inference_worker.runtime).",
        )
        shim.doc_controls = types.SimpleNamespace(do_not_generate_docs=lambda obj: obj)
        sys.modules.setdefault(_MP_OPTIONAL_DEPENDENCIES, shim)
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import face_detector

    return mp, BaseOptions, face_detector


class MediaPipeFaceDetector:
    """BlazeFace via the MediaPipe Tasks ``FaceDetector`` (IMAGE mode), as a :class:`FaceDetector`.

    Args:
        model_path: a BlazeFace ``.tflite`` file (short range or full range sparse).
        min_confidence: score threshold, ``0..1``.
        min_suppression: non-maximum-suppression IoU threshold, ``0..1``.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        RuntimeError: MediaPipe cannot build a detector from the file.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        min_confidence: float = MIN_DETECTION_CONFIDENCE,
        min_suppression: float = MIN_SUPPRESSION_THRESHOLD,
    ):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face detector model not found: {path}")
        mp, BaseOptions, face_detector = import_mediapipe()  # noqa: N806 - a class

        self.model_path = path
        self._mp = mp
        options = face_detector.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            min_detection_confidence=min_confidence,
            min_suppression_threshold=min_suppression,
        )
        self._detector = face_detector.FaceDetector.create_from_options(options)
        self._lock = threading.Lock()  # one graph, fed one image at a time

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB frame.

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB. MediaPipe letterboxes it to the model input itself.

        Returns:
            :class:`~inference_worker.pipeline.Detection` list: pixel boxes, scores ``0..1`` and
            the 6 BlazeFace keypoints in pixels of ``rgb`` (MediaPipe gives them normalised to
            the image; they are scaled back here).
        """
        height, width = rgb.shape[:2]
        image = self._mp.Image(
            image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)
        )
        with self._lock:
            result = self._detector.detect(image)
        detections = []
        for det in result.detections:
            bb = det.bounding_box
            score = float(det.categories[0].score) if det.categories else 0.0
            keypoints = tuple((kp.x * width, kp.y * height) for kp in det.keypoints or ()) or None
            detections.append(
                Detection(
                    box=(float(bb.origin_x), float(bb.origin_y), float(bb.width), float(bb.height)),
                    score=score,
                    keypoints=keypoints,
                )
            )
        return detections

    def close(self) -> None:
        """Release the MediaPipe graph (idempotent)."""
        detector, self._detector = getattr(self, "_detector", None), None
        if detector is not None:
            detector.close()

    def __repr__(self) -> str:
        return f"MediaPipeFaceDetector({self.model_path.name!r})"
