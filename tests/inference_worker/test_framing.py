"""The framing measurement (inference_worker.framing) with a fake detector and classifier."""

from __future__ import annotations

import numpy as np

from inference_worker.framing import CANVAS_PX, format_markdown, measure, staged_face
from inference_worker.pipeline import Detection


class RollingDetector:
    """Finds the staged face on every other call; eye keypoints tilted by ``-roll`` degrees
    (the canvas turned counter-clockwise), as BlazeFace would report them."""

    def __init__(self):
        self.roll = 0.0
        self.calls = 0

    def detect(self, rgb):
        self.calls += 1
        if self.calls % 2 == 0:
            return []
        c, half, a = CANVAS_PX / 2, 40.0, np.radians(-self.roll)
        right = (c - half * np.cos(a), c - half * np.sin(a))
        left = (c + half * np.cos(a), c + half * np.sin(a))
        return [Detection((c - 80, c - 80, 160.0, 160.0), 0.9, (right, left, (c, c)))]


class ConstantClassifier:
    def __init__(self):
        self.batches = []

    def predict_proba(self, faces):
        self.batches.append(len(faces))
        out = np.zeros((len(faces), 7), np.float32)
        out[:, 3] = 1.0
        return out


def test_staged_face_is_a_rolled_rgb_canvas():
    face = np.zeros((48, 48), np.uint8)
    face[:, 24:] = 255  # right half white
    flat, turned = staged_face(face, 0.0), staged_face(face, 90.0)
    assert flat.shape == turned.shape == (CANVAS_PX, CANVAS_PX, 3) and flat.dtype == np.uint8
    c = CANVAS_PX // 2
    assert flat[c, c + 50, 0] == 255 and flat[c, c - 50, 0] == 0
    # turned 90° counter-clockwise: the white right half is now on top
    assert turned[c - 50, c, 0] == 255 and turned[c + 50, c, 0] == 0


def test_measure_scores_the_same_detected_faces_in_every_row():
    detector, classifier = RollingDetector(), ConstantClassifier()
    images = np.full((6, 48, 48), 128, np.uint8)
    labels = np.array([3, 3, 0, 3, 3, 3])  # face 2 is wrong whatever the crop
    report = None
    for roll in (0.0, 30.0):
        detector.roll, detector.calls = roll, 0
        report = measure(
            images,
            labels,
            classifier,
            detector,
            margins=(0.0, 0.2),
            rolls=(roll,),
            level_above=(10.0,),
            progress=False,
        )
        row = report["rolls"][f"{roll:g}"]
        assert row["detected"] == 3  # faces 0, 2, 4
        assert row["roll_error_deg"] < 1e-6
        for kind in ("square", "aligned", "aligned_above_10"):
            assert row[kind] == {"0": 2 / 3, "0.2": 2 / 3}
    assert report["original_accuracy"] == 5 / 6
    table = format_markdown(report)
    assert "| 30° | eyes levelled | 3/6 | 66.7% | 66.7% | 66.7% |" in table
    assert "levelled when roll >= 10°" in table
