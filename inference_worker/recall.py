"""Face-detection recall and precision against hand-annotated boxes.

``python -m inference_worker.recall tests/fixtures/face_boxes.json [--source room] [--media DIR]
[--no-check]`` prints one row per file: frames, faces annotated, faces found, false positives
(and how many of them lie on an annotated non-face), recall, precision and the median detection
time per frame, then the totals of the source. ``--no-check`` measures the detector without the
second-stage face check (:mod:`inference_worker.facecheck`), i.e. the figures before it.

Annotation file (JSON)::

    {"iou_threshold": 0.4,
     "items": [{"file": "classroom_cctv.mp4", "frame": 110,
                "boxes": [[x, y, w, h], ...], "ignore": [[x, y, w, h], ...],
                "negatives": [{"box": [x, y, w, h], "what": "a hand"}, ...]}, ...]}

``file`` is a name inside the media folder, ``frame`` the 0-based decoded frame index (0 for a
still image), boxes are pixels (top-left origin). ``ignore`` boxes mark faces that are barely
visible (a head bent over a desk): a detection on one is neither a hit nor a false positive,
and missing one is not a miss (the "don't care" regions of PASCAL VOC / WIDER FACE).
``negatives`` (optional) mark regions where a detector drew a box on something that is not a
face (a hand, a collar, a poster), with what it is: a detection there is a false positive like
any other, counted again in ``on_negatives`` so a table shows which false boxes are known ones.

Matching (:func:`match_frame`): detections are taken by descending score; each is matched to the
unmatched annotated face it overlaps most if that IoU is ``>= iou_threshold`` (a hit), else it is
ignored if its IoU with an ignore box is ``>= iou_threshold`` or at least half of its area lies
inside one (:data:`IGNORE_COVER`; COCO matches detections to its "crowd" regions by the share of
the detection covered, because a small box on part of a bent head has a low IoU with the head's
box), else it is a false positive (so a second detection of an already matched face is a false positive too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from inference_worker.config import setting
from inference_worker.detection import SOURCES, iou_matrix
from inference_worker.pipeline import Detection, FaceDetector

__all__ = [
    "DEFAULT_IOU",
    "IGNORE_COVER",
    "Annotation",
    "FileRecall",
    "FrameMatch",
    "default_media_dir",
    "evaluate",
    "format_table",
    "load_annotations",
    "main",
    "match_frame",
    "read_frame",
    "total",
]

DEFAULT_IOU: float = 0.4
"""IoU a detection needs with an annotated box to count as finding it. Lower than the
0.5 of PASCAL VOC because hand-drawn boxes of 15 px faces and BlazeFace's square boxes (which
include the forehead) disagree by a few pixels, which costs much IoU at that size."""

IGNORE_COVER: float = 0.5
"""Share of a detection's area that must lie inside an ignore box for the detection to be
ignored (the COCO evaluation's rule for "crowd" regions: intersection over the detection's
area, not IoU)."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """The annotated faces of one frame.

    Attributes:
        file: media file name, relative to the media folder.
        frame: 0-based frame index (0 for an image).
        boxes: faces to find, ``(x, y, w, h)`` pixels.
        ignore: "don't care" boxes, same format.
        negatives: ``(box, what)`` regions known not to be faces.
    """

    file: str
    frame: int
    boxes: tuple[tuple[float, float, float, float], ...]
    ignore: tuple[tuple[float, float, float, float], ...] = ()
    negatives: tuple[tuple[tuple[float, float, float, float], str], ...] = ()


@dataclass(frozen=True, slots=True)
class FrameMatch:
    """Counts of one frame: ``hits`` of ``faces`` annotated faces found, ``false_positives``,
    and ``on_negatives`` of those false positives on an annotated non-face."""

    faces: int
    hits: int
    false_positives: int
    on_negatives: int = 0


@dataclass(frozen=True, slots=True)
class FileRecall:
    """Totals of one file over its annotated frames.

    Attributes:
        file: the file name.
        frames: annotated frames evaluated.
        faces: annotated faces (``boxes``, not ``ignore``).
        found: annotated faces matched by a detection.
        false_positives: detections matching neither a face nor an ignore box.
        median_ms: median wall time of ``detector.detect`` per frame, milliseconds.
        on_negatives: false positives that overlap an annotated non-face (IoU ``>=`` the
            match threshold).
    """

    file: str
    frames: int
    faces: int
    found: int
    false_positives: int
    median_ms: float
    on_negatives: int = 0

    @property
    def recall(self) -> float:
        """``found / faces`` in ``0..1`` (1.0 when nothing was annotated)."""
        return self.found / self.faces if self.faces else 1.0

    @property
    def precision(self) -> float:
        """``found / (found + false_positives)`` in ``0..1`` (1.0 when nothing was detected)."""
        detected = self.found + self.false_positives
        return self.found / detected if detected else 1.0


def _boxes(values: Iterable[Sequence[float]], where: str) -> tuple[tuple[float, ...], ...]:
    out = []
    for value in values:
        if len(value) != 4 or value[2] <= 0 or value[3] <= 0:
            raise ValueError(f"{where}: expected [x, y, w, h] with w, h > 0, got {value!r}")
        out.append(tuple(float(v) for v in value))
    return tuple(out)


def load_annotations(path: str | os.PathLike) -> tuple[list[Annotation], float]:
    """Read an annotation file (format: see the module docstring).

    Args:
        path: the JSON file.

    Returns:
        ``(annotations, iou_threshold)``; the threshold defaults to :data:`DEFAULT_IOU`.

    Raises:
        OSError: the file cannot be read.
        ValueError: not valid JSON, or an item without ``file``/``boxes`` or with a bad box.
    """
    doc = json.loads(Path(path).read_text())
    annotations = []
    for n, item in enumerate(doc.get("items", [])):
        where = f"{path} item {n}"
        if "file" not in item or "boxes" not in item:
            raise ValueError(f"{where}: needs 'file' and 'boxes'")
        negatives = item.get("negatives", [])
        if not all(isinstance(neg, dict) and "box" in neg for neg in negatives):
            raise ValueError(f"{where}: each negative needs a 'box' (and a 'what')")
        annotations.append(
            Annotation(
                file=str(item["file"]),
                frame=int(item.get("frame", 0)),
                boxes=_boxes(item["boxes"], where),
                ignore=_boxes(item.get("ignore", []), where),
                negatives=tuple(
                    zip(
                        _boxes([neg["box"] for neg in negatives], where),
                        (str(neg.get("what", "")) for neg in negatives),
                        strict=True,
                    )
                ),
            )
        )
    return annotations, float(doc.get("iou_threshold", DEFAULT_IOU))


def match_frame(
    detections: Sequence[Detection],
    annotation: Annotation,
    iou_threshold: float = DEFAULT_IOU,
) -> FrameMatch:
    """Match one frame's detections to its annotated faces (rules: module docstring).

    Args:
        detections: the detector's output for the frame (pixel boxes).
        annotation: the frame's annotated faces and ignore boxes.
        iou_threshold: minimum IoU of a match, ``0..1``.

    Returns:
        The frame's :class:`FrameMatch`.
    """
    faces = len(annotation.boxes)
    if not detections:
        return FrameMatch(faces=faces, hits=0, false_positives=0)
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    boxes = [d.box for d in ordered]
    to_faces = iou_matrix(boxes, annotation.boxes) if faces else np.zeros((len(boxes), 0))
    ignored = np.zeros(len(boxes), dtype=bool)
    if annotation.ignore:
        ignored = (_covered(boxes, annotation.ignore).max(axis=1) >= IGNORE_COVER) | (
            iou_matrix(boxes, annotation.ignore).max(axis=1) >= iou_threshold
        )
    negatives = [box for box, _ in annotation.negatives]
    to_negatives = iou_matrix(boxes, negatives) if negatives else np.zeros((len(boxes), 0))
    taken = np.zeros(faces, dtype=bool)
    hits = false_positives = on_negatives = 0
    for i in range(len(ordered)):
        overlaps = np.where(taken, -1.0, to_faces[i])
        best = int(np.argmax(overlaps)) if faces else -1
        if faces and overlaps[best] >= iou_threshold:
            taken[best] = True
            hits += 1
        elif ignored[i]:
            continue
        else:
            false_positives += 1
            on_negatives += int(
                bool(to_negatives.shape[1]) and to_negatives[i].max() >= iou_threshold
            )
    return FrameMatch(
        faces=faces, hits=hits, false_positives=false_positives, on_negatives=on_negatives
    )


def _covered(boxes: Sequence[Sequence[float]], regions: Sequence[Sequence[float]]) -> np.ndarray:
    """``(N, M)`` share of each box's area inside each region, ``0..1`` (0 for an empty box)."""
    if not regions:
        return np.zeros((len(boxes), 0))
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=2)
    area = np.prod(a[:, 2:], axis=1)[:, None]
    return np.where(area > 0, inter / np.where(area > 0, area, 1.0), 0.0)


def read_frame(path: str | os.PathLike, frame: int = 0) -> np.ndarray:
    """Read one frame of an image or video as RGB.

    Args:
        path: an image (``frame`` must be 0), an animated GIF or a video file.
        frame: 0-based index of the decoded frame (read sequentially, so exact).

    Returns:
        ``uint8`` ``(H, W, 3)`` RGB.

    Raises:
        ValueError: the file cannot be read or has no such frame.
    """
    path = str(path)
    # OpenCV >= 5 also reads the first frame of an animated GIF with imread: only frame 0 may
    # come from there, every other frame is decoded in sequence.
    image = cv2.imread(path, cv2.IMREAD_COLOR) if frame == 0 else None
    if image is not None:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    capture = cv2.VideoCapture(path)
    try:
        for _ in range(frame):
            if not capture.grab():
                raise ValueError(f"{path}: no frame {frame}")
        ok, bgr = capture.read()
    finally:
        capture.release()
    if not ok or bgr is None:
        raise ValueError(f"{path}: cannot read frame {frame}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def evaluate(
    annotations: Sequence[Annotation],
    detector: FaceDetector,
    media_dir: str | os.PathLike,
    iou_threshold: float = DEFAULT_IOU,
) -> list[FileRecall]:
    """Run a detector on every annotated frame and total the matches per file.

    Args:
        annotations: annotated frames (:func:`load_annotations`).
        detector: any face detector.
        media_dir: folder holding the annotated files.
        iou_threshold: minimum IoU of a match.

    Returns:
        One :class:`FileRecall` per file, in order of first appearance.

    Raises:
        ValueError: a file or frame cannot be read (:func:`read_frame`).
    """
    per_file: dict[str, list[tuple[FrameMatch, float]]] = {}
    for annotation in annotations:
        rgb = read_frame(Path(media_dir) / annotation.file, annotation.frame)
        start = time.perf_counter()
        detections = detector.detect(rgb)
        ms = (time.perf_counter() - start) * 1000.0
        per_file.setdefault(annotation.file, []).append(
            (match_frame(detections, annotation, iou_threshold), ms)
        )
    return [
        FileRecall(
            file=name,
            frames=len(rows),
            faces=sum(m.faces for m, _ in rows),
            found=sum(m.hits for m, _ in rows),
            false_positives=sum(m.false_positives for m, _ in rows),
            median_ms=statistics.median(ms for _, ms in rows),
            on_negatives=sum(m.on_negatives for m, _ in rows),
        )
        for name, rows in per_file.items()
    ]


def total(rows: Sequence[FileRecall]) -> FileRecall:
    """All files' counts added up (file ``"all"``; ``median_ms`` is the median of the files')."""
    return FileRecall(
        file="all",
        frames=sum(r.frames for r in rows),
        faces=sum(r.faces for r in rows),
        found=sum(r.found for r in rows),
        false_positives=sum(r.false_positives for r in rows),
        median_ms=statistics.median(r.median_ms for r in rows) if rows else 0.0,
        on_negatives=sum(r.on_negatives for r in rows),
    )


def format_table(rows: Sequence[FileRecall]) -> str:
    """The rows and their :func:`total` as a Markdown table (file, frames, faces, found, false
    positives, of which on annotated non-faces, recall, precision, ms)."""
    lines = [
        "| file | frames | faces | found | false pos. | on non-faces | recall | precision "
        "| detect ms/frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*rows, total(rows)] if len(rows) > 1 else rows:
        lines.append(
            f"| {r.file} | {r.frames} | {r.faces} | {r.found} | {r.false_positives} | "
            f"{r.on_negatives} | {r.recall:.1%} | {r.precision:.1%} | {r.median_ms:.0f} |"
        )
    return "\n".join(lines)


def default_media_dir() -> Path:
    """The shared media folder: ``ENGAGEMENT_SHARED_DIR`` (a setting) ``/ "media"``."""
    return Path(setting("ENGAGEMENT_SHARED_DIR")) / "media"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the recall table of one or more sources. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m inference_worker.recall", description=__doc__)
    parser.add_argument("annotations", help="annotation JSON, e.g. tests/fixtures/face_boxes.json")
    parser.add_argument(
        "--media",
        default=None,
        help="folder of the media files (default: $ENGAGEMENT_SHARED_DIR/media or ../shared/media)",
    )
    parser.add_argument(
        "--source",
        action="append",
        choices=SOURCES,
        help="detector settings to measure (repeatable; default: all)",
    )
    parser.add_argument("--detector", choices=("full", "short"), default=None)
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="without the second-stage face check (the figures before it)",
    )
    args = parser.parse_args(argv)

    from inference_worker import runtime

    annotations, iou = load_annotations(args.annotations)
    media = Path(args.media) if args.media else default_media_dir()
    for source in args.source or SOURCES:
        detector = runtime.get_detector(source, kind=args.detector, check=not args.no_check)
        detector.detect(np.zeros((240, 320, 3), np.uint8))  # graph start-up, not measured
        rows = evaluate(annotations, detector, media, iou)
        print(
            f"\nsource={source} detector={runtime.detector_kind(args.detector)} "
            f"face check={'off' if args.no_check else 'on'} IoU>={iou:g}"
        )
        print(format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
