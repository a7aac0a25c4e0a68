"""Multi-scale tiled face detection: find small faces that a whole-frame pass misses.

BlazeFace sees a frame through a fixed input (192x192 full range, 128x128 short range): MediaPipe
letterboxes the whole frame into it, so a 20 px face of a 640x352 classroom frame shrinks to
~6 px and is lost. :class:`TiledFaceDetector` wraps ANY :class:`~inference_worker.pipeline.FaceDetector`
and runs it on the whole frame plus overlapping tiles at one or more grid sizes. A tile of a
3x3 grid shows each face ~2.5x larger to the model. Tile detections are mapped back to frame
pixels and all detections are merged with non-maximum suppression (:func:`nms`), keeping the
6 keypoints of each surviving detection.

Everything here is pure numpy/OpenCV (no model is loaded), so the tiling and NMS maths are tested
with fake detectors. :func:`inference_worker.runtime.get_detector` builds the configured wrapper
around the MediaPipe detector for a source (:data:`SOURCE_SETTINGS`).

Coordinates: pixels, top-left origin, x right, y down; boxes ``(x, y, w, h)`` as in
:class:`~inference_worker.pipeline.Detection`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from contracts import StreamSource
from inference_worker.pipeline import Detection, FaceDetector

__all__ = [
    "DEFAULT_SOURCE",
    "SOURCES",
    "SOURCE_SETTINGS",
    "VERIFY_IOU",
    "VERIFY_SIDE",
    "TileGrid",
    "TiledFaceDetector",
    "TilingSettings",
    "context_window",
    "iou_matrix",
    "nms",
    "source_settings",
    "tile_windows",
]


@dataclass(frozen=True, slots=True)
class TileGrid:
    """One tiling scale: ``cols`` x ``rows`` overlapping tiles covering the frame.

    Attributes:
        cols: tiles across, ``>= 1``.
        rows: tiles down, ``>= 1``.
        overlap: fraction of a tile's side shared with its neighbour, ``0 <= overlap < 1``.
            0.25 (the default) means a face up to a quarter of a tile wide that a tile border
            cuts is still whole in the neighbouring tile.
    """

    cols: int
    rows: int
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if self.cols < 1 or self.rows < 1:
            raise ValueError(f"a tile grid needs cols, rows >= 1, got {self.cols}x{self.rows}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")


@dataclass(frozen=True, slots=True)
class TilingSettings:
    """How thoroughly :class:`TiledFaceDetector` searches a frame.

    Attributes:
        whole_frame: also run the detector on the whole frame (finds faces too large for a tile).
        grids: tiling scales, each run in addition to the whole frame; ``()`` = one pass only.
        min_tile_side: tiles whose shorter side is below this many pixels are upscaled
            (bicubic) so that it reaches it before detection; 0 disables. Bicubic upscaling
            before MediaPipe's own (bilinear) resize to the model input gives slightly sharper
            small faces.
        iou_threshold: detections overlapping a higher-scored one by more than this IoU are
            suppressed, ``0..1`` (see :func:`nms`).
        min_score: detections scoring below this are dropped, ``0..1`` (the wrapped detector
            applies its own threshold first).
        max_side: frames whose longer side exceeds this many pixels are downscaled for the TILE
            passes only (tiles of a 2048 px photo hold faces the model sees well already; this
            bounds the cost); 0 disables.
        verify_context: 0 disables verification. Otherwise every merged detection scoring
            below ``sure_score`` is checked by a second look: a square window of
            ``verify_context`` times the box's longer side, centred on it (zero-padded past the
            border), is resized to :data:`VERIFY_SIDE` px and run through the detector again; the
            detection is kept only if that finds a face scoring ``>= verify_min_score`` whose
            box overlaps it with IoU > 0.3. Textures that fool one tile (a chair back, a poster,
            a pair of shoes in a 2048 px photo) are seldom found again at another scale and
            context; real faces mostly are. Costs one detector call per unsure detection.
        verify_min_score: score a re-detection needs, ``0..1``.
        sure_score: detections scoring at least this skip verification, ``0..1``.
        detector_min_confidence: the score threshold the WRAPPED detector should be built with
            (``None``: its default); read by :func:`inference_worker.runtime.get_detector`.
            Must be ``<= min(min_score, verify_min_score)`` for those to have an effect.
        edge_margin: a tile detection whose box comes within this fraction of the tile's side
            of an INNER tile edge (one that is not the frame's border) is dropped; ``None``
            keeps them. A face cut by a tile border is seen whole by the overlapping
            neighbour tile or by the whole-frame pass, while the cut half gives a second,
            shifted box (IoU with the whole one often under the NMS threshold): on the shared
            head-pose and walking clips every ``screen``-mode duplicate was such a box, whose
            edge lay on the tile border.
        fit_aspect: the detector's input follows the image's aspect (a 16:9 tile runs on
            192x128, not letterboxed into 192x192); read by
            :func:`inference_worker.runtime.get_detector` for the ``litert`` back end
            (:class:`~inference_worker.blazeface.LiteRTFaceDetector`; MediaPipe Tasks always
            letterboxes). Measured with ``python -m inference_worker.recall``: on the tiles of
            ``screen`` and ``room`` it finds more faces (CCTV 71 instead of 64 of 104 in ``room``)
            at two thirds of the cost; on a whole 2048x1536 photo it lost 3 of the 6 faces of
            ``group_photo_6_people.jpg`` (9 px faces at the model's limit), so ``webcam`` keeps
            the letterbox.
    """

    whole_frame: bool = True
    grids: tuple[TileGrid, ...] = ()
    min_tile_side: int = 0
    iou_threshold: float = 0.3
    min_score: float = 0.0
    max_side: int = 0
    verify_context: float = 0.0
    verify_min_score: float = 0.5
    sure_score: float = 1.0
    detector_min_confidence: float | None = None
    edge_margin: float | None = 0.01
    fit_aspect: bool = False

    @property
    def passes(self) -> int:
        """Detector calls per frame, not counting verification."""
        return int(self.whole_frame) + sum(g.cols * g.rows for g in self.grids)


SOURCES: tuple[str, ...] = (*(source.value for source in StreamSource), "room")
"""Known sources, from fastest to most thorough: the live ones (``contracts.StreamSource``:
webcam, screen) and ``room``, for files and classroom cameras (``analyze_media``, ``recall``)."""

DEFAULT_SOURCE: str = StreamSource.WEBCAM.value
"""Live frames come from one student's webcam: one whole-frame pass (~5 ms)."""

SOURCE_SETTINGS: dict[str, TilingSettings] = {
    # One face near the camera: the whole frame is enough, and the latency budget is ~10 ms.
    "webcam": TilingSettings(),
    # A video-call gallery (2x2 .. 3x3 participants): each 2x2 tile holds ~one participant.
    "screen": TilingSettings(grids=(TileGrid(2, 2),), fit_aspect=True),
    # A ceiling camera: many small (12-20 px) faces, seen from above: finer tiles at two
    # scales, a lower score threshold, and a second look at every unsure detection (see
    # TilingSettings.verify_context). Chosen on tests/fixtures/face_boxes.json.
    "room": TilingSettings(
        grids=(TileGrid(4, 4), TileGrid(5, 5)),
        min_tile_side=192,
        max_side=1280,
        min_score=0.4,
        verify_context=5.0,
        verify_min_score=0.35,
        sure_score=0.8,
        detector_min_confidence=0.3,
        fit_aspect=True,
    ),
}
"""Tiling per source. ``room`` was tuned (grids, thresholds, context) on the annotated frames of
``tests/fixtures/face_boxes.json`` with ``python -m inference_worker.recall``: the whole frame alone
finds none of the 104 faces of the 10 CCTV frames, ``room`` 68% (62% with the MediaPipe Tasks back
end), while keeping the two photos at 6/6 and 4/4 without false positives. Because it was tuned on
those same frames the figure is optimistic; the photo false-positive count is sensitive to the
thresholds (a 0.48 hand in the group photo passes with ``verify_min_score=0.3``). The runtime adds
the second-stage face check (:mod:`inference_worker.facecheck`) after any of these."""


def source_settings(source: str | None) -> TilingSettings:
    """The :class:`TilingSettings` of a source (``None``: :data:`DEFAULT_SOURCE`).

    Raises:
        ValueError: not one of :data:`SOURCES`.
    """
    name = (source or DEFAULT_SOURCE).strip().lower()
    if name not in SOURCE_SETTINGS:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    return SOURCE_SETTINGS[name]


def _axis_starts(length: int, count: int, overlap: float) -> tuple[int, list[int]]:
    """Tile size and start offsets along one axis (pixels)."""
    if count == 1:
        return length, [0]
    # count tiles of size t with overlap o*t cover L: t + (count-1)*t*(1-o) = L
    size = math.ceil(length / (count - (count - 1) * overlap))
    size = min(size, length)
    step = (length - size) / (count - 1)
    return size, [int(round(i * step)) for i in range(count)]


def tile_windows(width: int, height: int, grid: TileGrid) -> list[tuple[int, int, int, int]]:
    """The pixel windows of a tile grid over a ``width`` x ``height`` frame.

    Tiles have equal size ``(tw, th)`` with ``tw = ceil(W / (cols - (cols-1) * overlap))``
    (likewise ``th``), are spread evenly, and the first and last tiles touch the frame borders,
    so together they cover every pixel and neighbours overlap by at least ``overlap * tw``.

    Args:
        width: frame width in pixels, ``>= 1``.
        height: frame height in pixels, ``>= 1``.
        grid: the grid.

    Returns:
        ``cols * rows`` windows ``(x0, y0, x1, y1)`` (exclusive ends), row by row.

    Raises:
        ValueError: a non-positive frame size.
    """
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    tw, xs = _axis_starts(width, grid.cols, grid.overlap)
    th, ys = _axis_starts(height, grid.rows, grid.overlap)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def _as_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def iou_matrix(a: np.ndarray | Sequence, b: np.ndarray | Sequence) -> np.ndarray:
    """Intersection over union of every box of ``a`` with every box of ``b``.

    ``IoU = area(A ∩ B) / area(A ∪ B)`` (the PASCAL VOC / COCO overlap measure).

    Args:
        a: ``(N, 4)`` boxes ``(x, y, w, h)``, pixels, ``w, h >= 0``.
        b: ``(M, 4)`` boxes, same format.

    Returns:
        ``float64`` ``(N, M)`` in ``0..1``; 0 where a union is empty.
    """
    xa, xb = _as_xyxy(a), _as_xyxy(b)
    lt = np.maximum(xa[:, None, :2], xb[None, :, :2])
    rb = np.minimum(xa[:, None, 2:], xb[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area_a = np.prod(xa[:, 2:] - xa[:, :2], axis=1)
    area_b = np.prod(xb[:, 2:] - xb[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(
    boxes: np.ndarray | Sequence, scores: np.ndarray | Sequence, iou_threshold: float
) -> list[int]:
    """Greedy non-maximum suppression.

    Repeatedly keep the highest-scored remaining box and drop every remaining box whose IoU
    with it exceeds ``iou_threshold`` (the classic greedy NMS of Felzenszwalb et al. / R-CNN;
    MediaPipe's default threshold for BlazeFace is 0.3). Ties in score keep the earlier box.

    Args:
        boxes: ``(N, 4)`` boxes ``(x, y, w, h)`` in pixels.
        scores: ``(N,)`` scores; higher is better.
        iou_threshold: ``0..1``; a box is suppressed when its IoU is strictly greater.

    Returns:
        Indices into ``boxes`` of the kept boxes, by descending score.

    Raises:
        ValueError: ``boxes`` and ``scores`` differ in length, or the threshold is outside 0..1.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    order = list(np.argsort(-scores, kind="stable"))
    overlaps = iou_matrix(boxes, boxes)
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        order = [i for i in order if overlaps[best, i] <= iou_threshold]
    return keep


VERIFY_SIDE: int = 192
"""Side in pixels of the verification window fed to the detector: BlazeFace full range's input."""

VERIFY_IOU: float = 0.3
"""IoU above which a re-detection confirms a detection (MediaPipe's NMS threshold for the same
face)."""


def context_window(
    rgb: np.ndarray, box: Sequence[float], context: float
) -> tuple[np.ndarray, int, int]:
    """A square window of ``context`` times the box's longer side, centred on the box.

    Parts past the frame border are zero (black), so the window is always square.

    Args:
        rgb: ``(H, W, C)`` frame.
        box: ``(x, y, w, h)`` pixels, ``w, h > 0``.
        context: window side / longer box side, ``> 0``.

    Returns:
        ``(window, x0, y0)``: the ``(S, S, C)`` window (a copy) and the frame position of its
        top-left corner (may be negative), ``S = max(1, round(context * max(w, h)))``.

    Raises:
        ValueError: non-positive ``context`` or box size.
    """
    x, y, w, h = (float(v) for v in box)
    if context <= 0 or w <= 0 or h <= 0:
        raise ValueError(f"need context > 0 and w, h > 0, got {context} and {tuple(box)}")
    side = max(1, int(round(context * max(w, h))))
    x0 = int(round(x + w / 2.0 - side / 2.0))
    y0 = int(round(y + h / 2.0 - side / 2.0))
    height, width = rgb.shape[:2]
    window = np.zeros((side, side) + rgb.shape[2:], dtype=rgb.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, width), min(y0 + side, height)
    if sx1 > sx0 and sy1 > sy0:
        window[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    return window, x0, y0


def _map_detection(det: Detection, x0: int, y0: int, scale: float) -> Detection:
    """A detection from a (scaled) tile, in frame pixels: ``frame = tile / scale + offset``."""
    x, y, w, h = det.box
    keypoints = None
    if det.keypoints is not None:
        keypoints = tuple((kx / scale + x0, ky / scale + y0) for kx, ky in det.keypoints)
    return Detection(
        box=(x / scale + x0, y / scale + y0, w / scale, h / scale),
        score=float(det.score),
        keypoints=keypoints,
    )


def _cut_by_inner_edge(
    box: Sequence[float],
    width: int,
    height: int,
    inner: tuple[bool, bool, bool, bool],
    margin: float,
) -> bool:
    """Whether a box in tile pixels reaches within ``margin * side`` of an inner tile edge.

    ``inner`` says which edges (left, top, right, bottom) are inside the frame.
    """
    x, y, w, h = box
    mx, my = margin * width, margin * height
    left, top, right, bottom = inner
    return (
        (left and x <= mx)
        or (top and y <= my)
        or (right and x + w >= width - mx)
        or (bottom and y + h >= height - my)
    )


@dataclass
class TiledFaceDetector:
    """A :class:`~inference_worker.pipeline.FaceDetector` that runs another one on tiles.

    For each frame: the wrapped detector runs on the whole frame (if
    ``settings.whole_frame``) and on every tile of every grid (tiles smaller than
    ``min_tile_side`` upscaled first); tile detections are mapped back to frame pixels, those
    below ``min_score`` or cut by an inner tile edge (``edge_margin``) dropped, and the rest
    merged by :func:`nms`. Detector calls per frame:
    ``settings.passes`` plus one per verified detection.

    Args:
        detector: any face detector (a MediaPipe one, or a fake in tests).
        settings: the tiling; default one whole-frame pass.

    Raises:
        ValueError (from :meth:`detect`): the frame is not ``uint8 (H, W, 3)``.
    """

    detector: FaceDetector
    settings: TilingSettings = field(default_factory=TilingSettings)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces on the whole frame and its tiles.

        Args:
            rgb: ``uint8`` ``(H, W, 3)`` RGB frame.

        Returns:
            Detections in frame pixels, by descending score, with at most ``iou_threshold``
            IoU between any two; keypoints are those of the kept detection.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected a uint8 (H, W, 3) frame, got {rgb.dtype} {rgb.shape}")
        settings = self.settings
        found: list[Detection] = []
        if settings.whole_frame:
            found.extend(self.detector.detect(rgb))
        if settings.grids:
            base, base_scale = rgb, 1.0
            height, width = rgb.shape[:2]
            if settings.max_side and max(height, width) > settings.max_side:
                base_scale = settings.max_side / max(height, width)
                base = cv2.resize(
                    rgb,
                    (max(1, round(width * base_scale)), max(1, round(height * base_scale))),
                    interpolation=cv2.INTER_AREA,
                )
            bh, bw = base.shape[:2]
            for grid in settings.grids:
                for x0, y0, x1, y1 in tile_windows(bw, bh, grid):
                    tile = base[y0:y1, x0:x1]
                    scale = 1.0
                    short = min(tile.shape[:2])
                    if settings.min_tile_side and short < settings.min_tile_side:
                        scale = settings.min_tile_side / short
                        tile = cv2.resize(
                            tile,
                            (round(tile.shape[1] * scale), round(tile.shape[0] * scale)),
                            interpolation=cv2.INTER_CUBIC,
                        )
                    inner = (x0 > 0, y0 > 0, x1 < bw, y1 < bh)
                    for det in self.detector.detect(np.ascontiguousarray(tile)):
                        if settings.edge_margin is not None and _cut_by_inner_edge(
                            det.box, tile.shape[1], tile.shape[0], inner, settings.edge_margin
                        ):
                            continue
                        in_base = _map_detection(det, x0, y0, scale)
                        found.append(_map_detection(in_base, 0, 0, base_scale))
        found = [d for d in found if d.score >= settings.min_score]
        if not found:
            return []
        keep = nms([d.box for d in found], [d.score for d in found], settings.iou_threshold)
        merged = [found[i] for i in keep]
        if settings.verify_context > 0:
            merged = [
                d for d in merged if d.score >= settings.sure_score or self._confirmed(rgb, d)
            ]
        return merged

    def _confirmed(self, rgb: np.ndarray, det: Detection) -> bool:
        """Whether the detector finds ``det`` again in a context window around it."""
        settings = self.settings
        window, x0, y0 = context_window(rgb, det.box, settings.verify_context)
        scale = VERIFY_SIDE / window.shape[1]
        window = cv2.resize(window, (VERIFY_SIDE, VERIFY_SIDE), interpolation=cv2.INTER_CUBIC)
        again = [
            _map_detection(d, x0, y0, scale).box
            for d in self.detector.detect(window)
            if d.score >= settings.verify_min_score
        ]
        return bool(again) and float(iou_matrix(again, [det.box]).max()) > VERIFY_IOU
