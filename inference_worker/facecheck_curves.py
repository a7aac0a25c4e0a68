"""The measurements behind :data:`inference_worker.facecheck.DEFAULT_RULE`.

``python -m inference_worker.facecheck_curves [tests/fixtures/face_boxes.json] [--media DIR]``
prints three Markdown tables of the share of boxes whose face presence reaches each threshold:

1. **Faces by size**: every annotated face that a detection mode finds (IoU >= 0.4; the
   detection supplies the eye line, as in the worker), by the box's longer side.
2. **Degraded faces** (32 px or more): the annotated frames darkened (x0.5 with Gaussian noise
   sigma 4, x0.25 with sigma 6), blurred (Gaussian sigma 2.5 px) and JPEG-compressed (quality
   15), each face as ``webcam`` mode finds it there; with and without the contrast stretch.
3. **Non-faces**: what BlazeFace detects at a score threshold of 0.05 that overlaps no
   annotated face (IoU < 0.1), 24 px or more: hands, clothing, furniture, hair.

The CCTV clip is left out of 2 and 3: not every pupil in it is annotated, so an "off-face"
box there may be a face. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from inference_worker.detection import iou_matrix
from inference_worker.facecheck import check_input
from inference_worker.recall import default_media_dir, load_annotations, read_frame

__all__ = ["DEGRADATIONS", "THRESHOLDS", "main", "share_table"]

THRESHOLDS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.3, 0.5)
"""Presence thresholds tabulated."""

SIZE_BANDS: tuple[tuple[float, float], ...] = ((10, 16), (16, 24), (24, 32), (32, 1e9))
"""Longer box side bands, pixels, ``[low, high)``."""


def _dim(factor: float, sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(rgb: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(0).normal(0.0, sigma, rgb.shape)
        return np.clip(rgb.astype(np.float32) * factor + noise, 0, 255).astype(np.uint8)

    return apply


def _jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def apply(rgb: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if ok else rgb

    return apply


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "clean": lambda rgb: rgb,
    "light x0.5": _dim(0.5, 4.0),
    "light x0.25": _dim(0.25, 6.0),
    "blur 2.5 px": lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 2.5),
    "JPEG 15": _jpeg(15),
}
"""Name -> ``uint8`` RGB frame transform (seeded, so the tables repeat)."""


def share_table(rows: dict[str, Sequence[float]]) -> str:
    """A Markdown table: one row per named list of presence scores, one column per threshold
    (share of scores ``>=`` it) and the count."""
    head = "| boxes | n | " + " | ".join(f">= {t:g}" for t in THRESHOLDS) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(THRESHOLDS)]
    for name, values in rows.items():
        v = np.asarray(values, dtype=np.float64)
        shares = " | ".join(f"{np.mean(v >= t):.0%}" if len(v) else "-" for t in THRESHOLDS)
        lines.append(f"| {name} | {len(v)} | {shares} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the three tables of the module docstring. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m inference_worker.facecheck_curves", description=__doc__
    )
    parser.add_argument(
        "annotations", nargs="?", default="tests/fixtures/face_boxes.json", help="annotation JSON"
    )
    parser.add_argument("--media", default=None, help="media folder (default: shared/media)")
    args = parser.parse_args(argv)

    from inference_worker import runtime
    from inference_worker.blazeface import DETECTOR_MODELS, MediaPipeFaceDetector

    annotations, iou = load_annotations(args.annotations)
    media = Path(args.media) if args.media else default_media_dir()
    check = runtime.get_face_check()

    def presence(rgb, detection, stretch=True):
        return check.presence(check_input(rgb, detection, stretch=stretch))

    by_size: dict[str, list[float]] = {f"faces {lo:g}-{hi:g} px": [] for lo, hi in SIZE_BANDS}
    by_size[f"faces {SIZE_BANDS[-1][0]:g} px and more"] = by_size.pop(
        f"faces {SIZE_BANDS[-1][0]:g}-{SIZE_BANDS[-1][1]:g} px"
    )
    names = list(by_size)
    degraded: dict[str, list[float]] = {}
    non_faces: dict[str, list[float]] = {"non-faces, stretched": [], "non-faces, raw": []}
    detectors = {s: runtime.get_detector(s, check=False) for s in ("webcam", "screen", "room")}
    weak = MediaPipeFaceDetector(DETECTOR_MODELS["full"], min_confidence=0.05)
    try:
        for annotation in annotations:
            rgb = read_frame(media / annotation.file, annotation.frame)
            taken: set[int] = set()
            for detector in detectors.values():
                for d in detector.detect(rgb):
                    if not annotation.boxes:
                        continue
                    overlaps = iou_matrix([d.box], annotation.boxes)[0]
                    best = int(np.argmax(overlaps))
                    if overlaps[best] < iou or best in taken:
                        continue
                    taken.add(best)
                    side = max(d.box[2], d.box[3])
                    for (lo, hi), name in zip(SIZE_BANDS, names, strict=True):
                        if lo <= side < hi:
                            by_size[name].append(presence(rgb, d))
            if annotation.file == "classroom_cctv.mp4":
                continue
            for kind, transform in DEGRADATIONS.items():
                image = transform(rgb)
                for d in detectors["webcam"].detect(image):
                    if max(d.box[2:]) < 32 or not annotation.boxes:
                        continue
                    if iou_matrix([d.box], annotation.boxes).max() < iou:
                        continue
                    degraded.setdefault(f"{kind}, stretched", []).append(presence(image, d))
                    degraded.setdefault(f"{kind}, raw", []).append(presence(image, d, False))
            for d in weak.detect(rgb):
                if max(d.box[2:]) < 24:
                    continue
                if annotation.boxes and iou_matrix([d.box], annotation.boxes).max() >= 0.1:
                    continue
                non_faces["non-faces, stretched"].append(presence(rgb, d))
                non_faces["non-faces, raw"].append(presence(rgb, d, False))
    finally:
        weak.close()
    print("\n1. Annotated faces found by a detection mode, by size\n")
    print(share_table(by_size))
    print("\n2. Faces of 32 px or more in degraded frames (webcam mode)\n")
    print(share_table(dict(sorted(degraded.items(), key=lambda kv: kv[0].endswith("raw")))))
    print("\n3. BlazeFace detections at score >= 0.05 off every annotated face, 24 px or more\n")
    print(share_table(non_faces))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
