"""Measure face framing: which crop margin, and whether levelling the eyes, helps the classifier.

::

    python -m inference_worker.framing --data ../shared/data/fer2013/fer2013.csv.gz \
        [--model MODEL] [--limit 800] [--out runs/framing]

FER2013 faces are what the classifier was trained on, so the worker's crop should frame a face
found by BlazeFace the way FER2013 frames it. On PublicTest faces (never PrivateTest: the margin
is a choice) scaled from 48 to 192 px, set on a 320x320 canvas (border pixels repeated) and
rolled in-plane by 0, 15 or 30 degrees (a head tilt), BlazeFace (full range) finds the face and
:func:`ml.preprocessing.aligned_crop` cuts it with each margin in ``MARGINS``, once as a plain
square (``roll_deg=0``) and once rotated by the eye line of the keypoints
(:func:`ml.preprocessing.eye_roll_deg`). The classifier's accuracy on each variant, next to its
accuracy on the original 48x48 faces, says which margin reproduces FER2013's framing and what
levelling the eyes is worth. Faces BlazeFace misses are counted and left out of every row, so
all rows score the same faces.

Writes ``framing.json`` and ``framing.md`` to ``--out`` and prints the table. A measurement to
read, not a timed test: about 2 minutes for 800 faces on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

MARGINS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
LEVEL_ABOVE_DEG: tuple[float, ...] = (5.0, 10.0)
"""Thresholds tried for levelling only faces whose measured roll is at least this large."""
ROLLS_DEG: tuple[float, ...] = (0.0, 15.0, 30.0)
SCALE_PX = 192
CANVAS_PX = 320


def staged_face(face: np.ndarray, roll_deg: float) -> np.ndarray:
    """A 48-px gray face as a camera would show it: 192 px on a 320 px RGB canvas, rolled.

    Args:
        face: ``uint8`` ``(48, 48)``.
        roll_deg: in-plane rotation about the canvas centre (positive: counter-clockwise on
            screen, so the subject's left eye goes down).

    Returns:
        ``uint8`` ``(320, 320, 3)``.
    """
    import cv2

    big = cv2.resize(face, (SCALE_PX, SCALE_PX), interpolation=cv2.INTER_CUBIC)
    pad = (CANVAS_PX - SCALE_PX) // 2
    canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    if roll_deg:
        centre = (CANVAS_PX / 2 - 0.5, CANVAS_PX / 2 - 0.5)
        matrix = cv2.getRotationMatrix2D(centre, roll_deg, 1.0)
        canvas = cv2.warpAffine(
            canvas,
            matrix,
            (CANVAS_PX, CANVAS_PX),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB)


def measure(
    images: np.ndarray,
    labels: np.ndarray,
    classifier,
    detector,
    *,
    margins=MARGINS,
    rolls=ROLLS_DEG,
    level_above=LEVEL_ABOVE_DEG,
    progress: bool = True,
) -> dict:
    """Accuracy of ``classifier`` per roll, margin and alignment (see the module docstring).

    Args:
        images: ``uint8`` ``(N, 48, 48)`` faces.
        labels: ``int`` ``(N,)`` FER2013 class ids.
        classifier: anything with ``predict_proba(list of crops) -> (N, 7)``.
        detector: a :class:`~inference_worker.pipeline.FaceDetector` returning keypoints.
        margins: crop margins to try.
        rolls: in-plane rolls in degrees.
        level_above: roll thresholds (degrees) for the ``aligned_above_T`` rows: a face is
            levelled only when its measured roll is at least ``T``, else cut square.
        progress: show a tqdm bar.

    Returns:
        ``{"faces", "original_accuracy", "rolls": {roll: {"detected", "original_accuracy",
        "square": {margin: acc}, "aligned": {margin: acc}, "aligned_above_T": {margin: acc},
        "roll_error_deg"}}}``; accuracies in
        ``[0, 1]`` on the faces detected at that roll.
    """
    from tqdm.auto import tqdm

    from ml.preprocessing import aligned_crop, eye_roll_deg

    original = classifier.predict_proba(images).argmax(1) == labels
    report: dict = {
        "faces": int(len(images)),
        "original_accuracy": float(original.mean()),
        "rolls": {},
    }
    for roll in rolls:
        found, crops, errors, measured_rolls = [], {m: ([], []) for m in margins}, [], []
        for i in tqdm(range(len(images)), desc=f"roll {roll:g}°", disable=not progress):
            frame = staged_face(images[i], roll)
            detections = sorted(detector.detect(frame), key=lambda d: d.score, reverse=True)
            if not detections or not detections[0].keypoints:
                continue
            best = detections[0]
            found.append(i)
            # On screen the face turned counter-clockwise by `roll`, so its eye line now
            # descends to the LEFT: eye_roll_deg reads -roll.
            measured = eye_roll_deg(best.keypoints[0], best.keypoints[1])
            errors.append(measured + roll)
            measured_rolls.append(measured)
            for m in margins:
                crops[m][0].append(aligned_crop(frame, best.box, m))
                crops[m][1].append(aligned_crop(frame, best.box, m, roll_deg=measured))
        idx = np.asarray(found, int)
        row = {
            "detected": int(len(idx)),
            "original_accuracy": float(original[idx].mean()) if len(idx) else None,
            "roll_error_deg": float(np.median(np.abs(errors))) if errors else None,
            "square": {},
            "aligned": {},
            **{f"aligned_above_{t:g}": {} for t in level_above},
        }
        big_roll = {t: np.abs(np.asarray(measured_rolls)) >= t for t in level_above}
        for m in margins:
            right = {}
            for kind, batch in (("square", crops[m][0]), ("aligned", crops[m][1])):
                if not batch:
                    right[kind] = None
                    row[kind][f"{m:g}"] = None
                    continue
                right[kind] = classifier.predict_proba(batch).argmax(1) == labels[idx]
                row[kind][f"{m:g}"] = float(np.mean(right[kind]))
            for t in level_above:
                row[f"aligned_above_{t:g}"][f"{m:g}"] = (
                    None
                    if right["square"] is None
                    else float(np.mean(np.where(big_roll[t], right["aligned"], right["square"])))
                )
        report["rolls"][f"{roll:g}"] = row
    return report


def _kind_label(kind: str) -> str:
    if kind == "square":
        return "square"
    if kind == "aligned":
        return "eyes levelled"
    return f"levelled when roll >= {kind.rsplit('_', 1)[1]}°"


def format_markdown(report: dict) -> str:
    """The report as a Markdown table: one row per roll and crop kind, one column per margin."""
    first = next(iter(report["rolls"].values()))
    margins = list(first["square"])
    lines = [
        "| roll | crop | faces found | 48-px original | "
        + " | ".join(f"margin {m}" for m in margins)
        + " |",
        "|" + " --- |" * (4 + len(margins)),
    ]
    for roll, row in report["rolls"].items():
        kinds = [k for k in row if k == "square" or k.startswith("aligned")]
        for kind in kinds:
            cells = [
                "n/a" if row[kind][m] is None else f"{100 * row[kind][m]:.1f}%" for m in margins
            ]
            orig = row["original_accuracy"]
            lines.append(
                f"| {roll}° | {_kind_label(kind)} | "
                f"{row['detected']}/{report['faces']} | "
                f"{'n/a' if orig is None else f'{100 * orig:.1f}%'} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    from inference_worker.blazeface import DETECTOR_MODELS, MODELS_DIR, MediaPipeFaceDetector
    from ml.datasets import DatasetError, load_fer2013
    from ml.inference import ExpressionClassifier

    p = argparse.ArgumentParser(
        prog="python -m inference_worker.framing", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", default=None, help="FER2013 csv (default $ENGAGEMENT_FER2013_CSV)")
    p.add_argument("--model", default=None, help="classifier (default: the shipped one)")
    p.add_argument("--limit", type=int, default=800, help="PublicTest faces to use (first N)")
    p.add_argument("--out", default="runs/framing")
    a = p.parse_args(argv)
    try:
        split = load_fer2013(a.data)["PublicTest"]
        classifier = ExpressionClassifier.load(a.model)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images, labels = split.images[: a.limit], split.labels[: a.limit]
    detector = MediaPipeFaceDetector(MODELS_DIR / DETECTOR_MODELS["full"], min_confidence=0.3)
    try:
        report = measure(images, labels, classifier, detector)
    finally:
        detector.close()
    report["model"] = str(classifier.path)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "framing.json").write_text(json.dumps(report, indent=2) + "\n")
    table = format_markdown(report)
    (out / "framing.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
