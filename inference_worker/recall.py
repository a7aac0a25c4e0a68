"""Face-detection recall and precision against hand-annotated boxes.

``python -m inference_worker.recall tests/fixtures/face_boxes.json [--source room] [--media DIR]``
prints one row per file: frames, faces annotated, faces found, false positives, recall,
precision and the median detection time per frame.

Annotation file (JSON)::

    {"iou_threshold": 0.4,
     "items": [{"file": "classroom_cctv.mp4", "frame": 110,
                "boxes": [[x, y, w, h], ...], "ignore": [[x, y, w, h], ...]}, ...]}

``file`` is a name inside the media folder, ``frame`` the 0-based decoded frame index (0 for a
still image), boxes are pixels (top-left origin). ``ignore`` boxes mark faces that are barely
visible (a head bent over a desk): a detection on one is neither a hit nor a false positive,
and missing one is not a miss (the "don't care" regions of PASCAL VOC / WIDER FACE).

Matching (:func:`match_frame`): detections are taken by descending score; each is matched to the
unmatched annotated face it overlaps most if that IoU is ``>= iou_threshold`` (a hit), else it is
ignored if it overlaps an ignore box with IoU ``>= iou_threshold``, else it is a false positive
(so a second detection of an already matched face is a false positive too).
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

from inference_worker.detection import SOURCES, iou_matrix
from inference_worker.pipeline import Detection, FaceDetector

__all__ = [
    "DEFAULT_IOU",
    "Annotation",
    "FileRecall",
    "FrameMatch",
    "evaluate",
    "format_table",
    "load_annotations",
    "main",
    "match_frame",
    "read_frame",
]

DEFAULT_IOU: float = 0.4
"""IoU a detection needs with an annotated box to count as finding it. Lower than the
0.5 of PASCAL VOC because hand-drawn boxes of 15 px faces and BlazeFace's square boxes (which
include the forehead) disagree by a few pixels, which costs much IoU at that size."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """The annotated faces of one frame.

    Attributes:
        file: media file name, relative to the media folder.
        frame: 0-based frame index (0 for an image).
        boxes: faces to find, ``(x, y, w, h)`` pixels.
        ignore: "don't care" boxes, same format.
    """

    file: str
    frame: int
    boxes: tuple[tuple[float, float, float, float], ...]
    ignore: tuple[tuple[float, float, float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class FrameMatch:
    """Counts of one frame: ``hits`` of ``faces`` annotated faces found, ``false_positives``."""

    faces: int
    hits: int
    false_positives: int


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
    """

    file: str
    frames: int
    faces: int
    found: int
    false_positives: int
    median_ms: float

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
        annotations.append(
            Annotation(
                file=str(item["file"]),
                frame=int(item.get("frame", 0)),
                boxes=_boxes(item["boxes"], where),
                ignore=_boxes(item.get("ignore", []), where),
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
    to_ignore = (
        iou_matrix(boxes, annotation.ignore) if annotation.ignore else np.zeros((len(boxes), 0))
    )
    taken = np.zeros(faces, dtype=bool)
    hits = false_positives = 0
    for i in range(len(ordered)):
        overlaps = np.where(taken, -1.0, to_faces[i])
        best = int(np.argmax(overlaps)) if faces else -1
        if faces and overlaps[best] >= iou_threshold:
            taken[best] = True
            hits += 1
        elif to_ignore.shape[1] and to_ignore[i].max() >= iou_threshold:
            continue
        else:
            false_positives += 1
    return FrameMatch(faces=faces, hits=hits, false_positives=false_positives)


def read_frame(path: str | os.PathLike, frame: int = 0) -> np.ndarray:
    """Read one frame of an image or video as RGB.

    Args:
        path: an image (``frame`` must be 0) or a video file.
        frame: 0-based index of the decoded frame (read sequentially, so exact).

    Returns:
        ``uint8`` ``(H, W, 3)`` RGB.

    Raises:
        ValueError: the file cannot be read or has no such frame.
    """
    path = str(path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is not None:
        if frame != 0:
            raise ValueError(f"{path} is a still image; frame {frame} does not exist")
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
        )
        for name, rows in per_file.items()
    ]


def format_table(rows: Sequence[FileRecall]) -> str:
    """The rows as a Markdown table (file, frames, faces, found, FP, recall, precision, ms)."""
    lines = [
        "| file | frames | faces | found | false pos. | recall | precision | detect ms/frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.file} | {r.frames} | {r.faces} | {r.found} | {r.false_positives} | "
            f"{r.recall:.0%} | {r.precision:.0%} | {r.median_ms:.0f} |"
        )
    return "\n".join(lines)


def _default_media_dir() -> Path:
    shared = os.environ.get("ENGAGEMENT_SHARED_DIR")
    if shared:
        return Path(shared) / "media"
    return Path(__file__).resolve().parents[2] / "shared" / "media"


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
    args = parser.parse_args(argv)

    from inference_worker import runtime

    annotations, iou = load_annotations(args.annotations)
    media = Path(args.media) if args.media else _default_media_dir()
    for source in args.source or SOURCES:
        detector = runtime.get_detector(source, kind=args.detector)
        detector.detect(np.zeros((240, 320, 3), np.uint8))  # graph start-up, not measured
        rows = evaluate(annotations, detector, media, iou)
        print(f"\nsource={source} detector={runtime.detector_kind(args.detector)} IoU>={iou:g}")
        print(format_table(rows))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
