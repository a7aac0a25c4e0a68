"""MediaPipe BlazeFace face detection: the shipped model files and two ways to run them.

* :class:`LiteRTFaceDetector` (the default, ``ENGAGEMENT_DETECTOR_BACKEND=litert``) runs the
  ``.tflite`` files with LiteRT and does MediaPipe's pre-processing, anchor decoding and
  weighted NMS itself (:func:`ssd_anchors`, :func:`weighted_nms`). It can also fit the model's
  input to the image's aspect (:func:`input_shape`, :func:`redimension_model`): a 16:9 tile then
  runs on 192x128 instead of being letterboxed into 192x192. Measured on a 2-core Intel Xeon
  (AVX-512, AMX), one thread: 1.9 ms per 192x128 call against 3.5 ms per MediaPipe Tasks call,
  so ``room`` mode's 42 tile passes fell from about 226 to 146 ms per 640x352 CCTV frame
  (``python -m inference_worker.bench --source room --no-peer``), and it found more of the
  annotated faces (``python -m inference_worker.recall``; README, "Face detection").
* :class:`MediaPipeFaceDetector` (``ENGAGEMENT_DETECTOR_BACKEND=mediapipe``): the MediaPipe Tasks
  API (``mediapipe.tasks.python.vision.FaceDetector``), the reference the first is tested
  against (``tests/inference_worker/test_blazeface.py``: letterboxed, the same faces on the
  annotated frames and their tiles, boxes within about a pixel).

Both read the model files shipped in ``inference_worker/models/`` (see ``SOURCE.md`` there;
nothing is downloaded). Checked with mediapipe 1.2.2: the Tasks ``FaceDetector`` accepts BOTH
files; it reads the input size (128x128 short range, 192x192 full range) and the anchor count
(896 / 2304) from the model. Full range finds 4/4 faces in ``webcam_posed_expressions_4.jpg``
and 6/6 in ``group_photo_6_people.jpg`` at whole-frame size (short range: 4/4 and 1/6), so it is
the default. Loading the sparse full-range file prints harmless "Sparsity tensors may not yet be
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
does, but the detector does not import it). This matters for the ``mediapipe`` back end only:
the default ``litert`` one never imports MediaPipe, and with the LiteRT classifier a CPU worker
loads neither MediaPipe nor TensorFlow (tests check ``sys.modules`` after detecting and
classifying a real frame with each back end).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts import pipeline
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
MIN_DETECTION_CONFIDENCE: float = pipeline.MIN_DETECTION_SCORE
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


@dataclass(frozen=True, slots=True)
class BlazeFaceSpec:
    """What decoding a BlazeFace model file needs: MediaPipe's graph options for it.

    Attributes:
        side: side of the file's square input, pixels.
        anchor_groups: ``(stride, anchors per cell)`` per feature map, in the order of the
            model's outputs. All anchors have size 1 (``fixed_anchor_size: true``), so anchors
            of one cell are the same point and only their count matters.
        coarsest_stride: the network's largest down-sampling factor; any input side must be a
            multiple of it for the feature maps to line up.

    Source: the ``SsdAnchorsCalculatorOptions`` of MediaPipe's
    ``mediapipe/modules/face_detection/face_detection_full_range.pbtxt`` (``num_layers: 1``,
    ``strides: 4``) and ``face_detection_short_range.pbtxt`` (``num_layers: 4``, ``strides: 8,
    16, 16, 16``, ``interpolated_scale_aspect_ratio: 1.0``, i.e. 2 anchors per layer); the
    coarsest strides are read off the models (a 6x6 map at 192 px, 8x8 at 128 px).
    """

    side: int
    anchor_groups: tuple[tuple[int, int], ...]
    coarsest_stride: int


BLAZEFACE_SPECS: dict[int, BlazeFaceSpec] = {
    192: BlazeFaceSpec(side=192, anchor_groups=((4, 1),), coarsest_stride=32),
    128: BlazeFaceSpec(side=128, anchor_groups=((8, 2), (16, 6)), coarsest_stride=16),
}
"""BlazeFace specs by the side of the file's input: 192 full range (2304 anchors), 128 short
range (896 anchors)."""


def input_shape(height: int, width: int, spec: BlazeFaceSpec) -> tuple[int, int]:
    """The model input ``(rows, cols)`` for a ``height`` x ``width`` image.

    The longer side is ``spec.side`` (what MediaPipe's letterbox gives it); the shorter one is
    the image's, scaled the same way and rounded UP to a multiple of ``spec.coarsest_stride``,
    so that a 16:9 frame runs on 192x128 instead of a letterboxed 192x192 (two thirds of the
    compute; the letterbox's black bands carried nothing).

    Args:
        height, width: the image's size, pixels, ``>= 1``.
        spec: the model's :class:`BlazeFaceSpec`.

    Returns:
        ``(rows, cols)`` in pixels, each a multiple of ``spec.coarsest_stride``, the longer one
        ``spec.side``.

    Raises:
        ValueError: a non-positive size.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    step = spec.coarsest_stride
    short = min(height, width) * spec.side / max(height, width)
    short_in = min(spec.side, max(step, math.ceil(short / step - 1e-9) * step))
    return (short_in, spec.side) if width >= height else (spec.side, short_in)


def ssd_anchors(rows: int, cols: int, spec: BlazeFaceSpec) -> np.ndarray:
    """Anchor centres of a model input of ``rows`` x ``cols`` pixels.

    MediaPipe's ``SsdAnchorsCalculator``: for each feature map (stride ``s``), row by row, cell by
    cell, ``count`` anchors at the cell centre ``((x + 0.5) * s, (y + 0.5) * s)``.

    Args:
        rows, cols: the model input's size, pixels (:func:`input_shape`).
        spec: the model's :class:`BlazeFaceSpec`.

    Returns:
        ``float32`` ``(N, 2)`` centres ``(x, y)`` in input pixels, in the model's output order.
    """
    centres = []
    for stride, count in spec.anchor_groups:
        ys, xs = np.mgrid[0 : math.ceil(rows / stride), 0 : math.ceil(cols / stride)]
        grid = np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)
        centres.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centres).astype(np.float32)


def redimension_model(data: bytes, rows: int, cols: int, side: int) -> bytes:
    """A BlazeFace ``.tflite`` whose up-sampling layers fit a ``rows`` x ``cols`` input.

    The full-range model up-samples its 6x6 map back to 48x48 with ``RESIZE_BILINEAR`` ops whose
    output sizes are constants (12x12, 24x24, 48x48 for its 192x192 input); LiteRT can resize
    the input tensor but not those constants. This rewrites each constant ``(h, w)`` to
    ``(h * rows / side, w * cols / side)``, in memory (the shipped file is unchanged; every
    weight is kept). A model without such ops, or asked for its own size, is returned as it is.

    Args:
        data: the ``.tflite`` flatbuffer.
        rows, cols: the new input size, pixels; multiples of ``side / h`` for every constant.
        side: the file's input side.

    Returns:
        The flatbuffer bytes to give ``Interpreter(model_content=...)``.

    Raises:
        ValueError: a constant would not scale to whole pixels.
    """
    if (rows, cols) == (side, side):
        return data
    from ai_edge_litert import schema_py_generated as schema

    from ml.litert_flatbuffer import rewrite_tflite

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def edit(model) -> bool:
        changed = False
        for graph in model.subgraphs:
            for op in graph.operators:
                code = model.operatorCodes[op.opcodeIndex]
                if (
                    names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
                    != "RESIZE_BILINEAR"
                ):
                    continue
                buffer = model.buffers[graph.tensors[op.inputs[1]].buffer]
                h, w = np.frombuffer(bytes(bytearray(buffer.data)), dtype="<i4")
                if (h * rows) % side or (w * cols) % side:
                    raise ValueError(f"a {h}x{w} up-sampling does not fit a {cols}x{rows} input")
                size = np.array([h * rows // side, w * cols // side], dtype="<i4")
                buffer.data = np.frombuffer(size.tobytes(), dtype=np.uint8)
                changed = True
        return changed

    return rewrite_tflite(data, edit)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression (BlazeFace's "blending").

    Take the highest-scored remaining box; every remaining box whose IoU with it exceeds
    ``iou_threshold`` (itself included) is merged into one detection whose box and keypoints
    are the score-weighted means of theirs and whose score is the top one's; repeat with the
    rest. Source: ``WeightedNonMaxSuppression`` in MediaPipe's
    ``mediapipe/calculators/util/non_max_suppression_calculator.cc`` (``algorithm: WEIGHTED``,
    ``overlap_type: INTERSECTION_OVER_UNION``, as the face detection graphs set it); BlazeFace
    paper section 2.4 (Bazarevsky et al. 2019).

    Args:
        boxes: ``(N, 4)`` ``(x, y, w, h)`` pixels.
        scores: ``(N,)`` in ``0..1``.
        keypoints: ``(N, K, 2)`` pixels.
        iou_threshold: ``0..1``.

    Returns:
        ``(box (4,), score, keypoints (K, 2))`` per merged detection, by descending score.
    """
    from inference_worker.detection import iou_matrix

    order = np.argsort(-np.asarray(scores), kind="stable")
    overlaps = iou_matrix(boxes, boxes)
    remaining = [int(i) for i in order]
    merged = []
    while remaining:
        top = remaining[0]
        group = [i for i in remaining if i == top or overlaps[top, i] > iou_threshold]
        chosen = set(group)
        remaining = [i for i in remaining if i not in chosen]
        weights = scores[group].astype(np.float64)
        corners = np.concatenate([boxes[group, :2], boxes[group, :2] + boxes[group, 2:]], axis=1)
        mean = (corners * weights[:, None]).sum(axis=0) / weights.sum()
        points = (keypoints[group] * weights[:, None, None]).sum(axis=0) / weights.sum()
        box = np.array([mean[0], mean[1], mean[2] - mean[0], mean[3] - mean[1]])
        merged.append((box, float(scores[top]), points))
    return merged


class LiteRTFaceDetector:
    """BlazeFace run with LiteRT directly, as a :class:`FaceDetector`; MediaPipe's results.

    It reproduces MediaPipe's face detection graph: the image letterboxed into the model input
    (centred, black bands, bilinear), pixels to ``[-1, 1]``, the 16 regression values per
    anchor decoded in input pixels (box centre and keypoints = anchor centre + offset, size =
    value; ``x_scale = y_scale = w_scale = h_scale`` = the input side), scores
    ``sigmoid(clip(logit, -100, 100))``, :func:`weighted_nms`. Two differences, both measured:

    * The input is not always square: :func:`input_shape` fits it to the image's aspect
      (192x128 for a 16:9 frame or tile), with :func:`redimension_model` for the full-range
      file. A MediaPipe Tasks call costs about 3.5 ms on a 192x192 input; this detector about
      1.9 ms on 192x128 with one thread (``python -m inference_worker.bench``; CPU printed).
    * Boxes are floats; MediaPipe's are whole pixels.

    ``tests/inference_worker/test_blazeface.py`` checks that it finds the same faces as
    :class:`MediaPipeFaceDetector` on the shared media, boxes within a few pixels.

    Args:
        model_path: a BlazeFace ``.tflite`` (full range 192 px or short range 128 px input).
        min_confidence: score threshold, ``0..1``.
        min_suppression: IoU above which detections are merged, ``0..1``.
        num_threads: LiteRT CPU threads, ``>= 1``. One: a worker runs one process per core.
        fit_aspect: fit the input to each image's aspect (:func:`input_shape`); ``False``
            letterboxes every image into the file's square input, exactly as MediaPipe does.
            One interpreter is built per input size on first use (about 60 ms to re-dimension
            the full-range model); sizes are multiples of the coarsest stride, so a process
            holds at most 11 of them.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ValueError: the file's input is not a square 128 or 192 px RGB one.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        min_confidence: float = MIN_DETECTION_CONFIDENCE,
        min_suppression: float = MIN_SUPPRESSION_THRESHOLD,
        num_threads: int = 1,
        fit_aspect: bool = True,
    ):
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"face detector model not found: {path}")
        from ai_edge_litert.interpreter import Interpreter

        self.model_path = path
        self.min_confidence = float(min_confidence)
        self.min_suppression = float(min_suppression)
        self.num_threads = int(num_threads)
        self.fit_aspect = bool(fit_aspect)
        self._data = path.read_bytes()
        square = Interpreter(model_content=self._data, num_threads=self.num_threads)
        shape = tuple(int(v) for v in square.get_input_details()[0]["shape"])
        if (
            len(shape) != 4
            or shape[1] != shape[2]
            or shape[3] != 3
            or shape[1] not in BLAZEFACE_SPECS
        ):
            raise ValueError(f"{path.name}: not a BlazeFace model (input {shape})")
        self.spec = BLAZEFACE_SPECS[shape[1]]
        self._lock = threading.Lock()
        side = self.spec.side
        self._models: dict[tuple[int, int], tuple[Any, int, int, int, np.ndarray]] = {
            (side, side): self._prepared(square, side, side)
        }

    def _prepared(
        self, interpreter: Any, rows: int, cols: int
    ) -> tuple[Any, int, int, int, np.ndarray]:
        """Allocate an interpreter for a ``rows`` x ``cols`` input and find its tensors.

        Returns:
            ``(interpreter, input index, regressors' index, scores' index, anchors)``.

        Raises:
            ValueError: the outputs do not match the anchors of :attr:`spec`.
        """
        interpreter.resize_tensor_input(0, [1, rows, cols, 3], strict=False)
        interpreter.allocate_tensors()
        outputs = interpreter.get_output_details()
        regressors = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        anchors = ssd_anchors(rows, cols, self.spec)
        count = int(interpreter.get_tensor(scores).shape[1])
        if count != len(anchors):
            raise ValueError(f"{self.model_path.name}: {count} outputs for {len(anchors)} anchors")
        return interpreter, interpreter.get_input_details()[0]["index"], regressors, scores, anchors

    def _model(self, rows: int, cols: int) -> tuple[Any, int, int, int, np.ndarray]:
        """The prepared interpreter for an input size, re-dimensioned and built on first use."""
        model = self._models.get((rows, cols))
        if model is None:
            from ai_edge_litert.interpreter import Interpreter

            data = redimension_model(self._data, rows, cols, self.spec.side)
            interpreter = Interpreter(model_content=data, num_threads=self.num_threads)
            model = self._models[(rows, cols)] = self._prepared(interpreter, rows, cols)
        return model

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB frame.

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB.

        Returns:
            :class:`~inference_worker.pipeline.Detection` list by descending score: boxes and
            the 6 keypoints in pixels of ``rgb`` (float), scores ``0..1``.

        Raises:
            ValueError: not a ``uint8 (H, W, 3)`` array.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) frame, got {rgb.dtype} {rgb.shape}")
        import cv2

        height, width = rgb.shape[:2]
        if self.fit_aspect:
            rows, cols = input_shape(height, width, self.spec)
        else:
            rows = cols = self.spec.side
        scale = min(cols / width, rows / height)
        ox, oy = (cols - width * scale) / 2.0, (rows - height * scale) / 2.0
        # MediaPipe's ImageToTensorCalculator maps the letterboxed ROI's corners onto the
        # input's corners (no half-pixel shift), bilinear, zero (black) border.
        warp = np.array([[scale, 0.0, ox], [0.0, scale, oy]], dtype=np.float32)
        letterboxed = cv2.warpAffine(
            rgb, warp, (cols, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        tensor = letterboxed.astype(np.float32)[None] * np.float32(2.0 / 255.0) - np.float32(1.0)
        with self._lock:
            interpreter, inp, regressors, scores, anchors = self._model(rows, cols)
            interpreter.set_tensor(inp, tensor)
            interpreter.invoke()
            raw = interpreter.get_tensor(regressors)[0]
            logits = interpreter.get_tensor(scores)[0, :, 0]
        probability = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
        keep = np.flatnonzero(probability >= self.min_confidence)
        if keep.size == 0:
            return []
        raw, centres = raw[keep].astype(np.float64), anchors[keep].astype(np.float64)
        sizes = raw[:, 2:4]
        boxes = np.concatenate([raw[:, 0:2] + centres - sizes / 2.0, sizes], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + centres[:, None, :]
        offset = np.array([ox, oy])
        detections = []
        for box, score, kps in weighted_nms(boxes, probability[keep], points, self.min_suppression):
            x, y = (box[:2] - offset) / scale
            detections.append(
                Detection(
                    box=(float(x), float(y), float(box[2] / scale), float(box[3] / scale)),
                    score=score,
                    keypoints=tuple((float(px), float(py)) for px, py in (kps - offset) / scale),
                )
            )
        return detections

    def close(self) -> None:
        """Release the interpreters (idempotent); a later :meth:`detect` builds them again."""
        with self._lock:
            self._models.clear()

    def __repr__(self) -> str:
        return f"LiteRTFaceDetector({self.model_path.name!r}, threads={self.num_threads})"
