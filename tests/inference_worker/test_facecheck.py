"""The second-stage face check: its input, its rule, the wrapper, and the real landmark model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_worker import facecheck, runtime
from inference_worker.facecheck import (
    CHECK_INPUT_SIDE,
    CheckedFaceDetector,
    FaceCheckRule,
    FaceLandmarkCheck,
    check_input,
    stretch_contrast,
)
from inference_worker.pipeline import Detection, analyze_frame
from inference_worker.recall import load_annotations, read_frame
from ml.preprocessing import aligned_crop
from tests.inference_worker.worker_fakes import REPO_ROOT, FakeClassifier, FakeDetector

FACE_BOXES = REPO_ROOT / "tests" / "fixtures" / "face_boxes.json"


def _det(side: float, score: float = 0.9, x: float = 10.0, y: float = 10.0) -> Detection:
    return Detection(box=(x, y, side, side), score=score)


class FakeCheck:
    """Presence = the mean red level of the box's pixels / 255 (no model)."""

    def __init__(self):
        self.calls = 0

    def scores(self, rgb, detections):
        self.calls += 1
        out = []
        for d in detections:
            x, y, w, h = (int(v) for v in d.box)
            out.append(float(rgb[y : y + h, x : x + w, 0].mean()) / 255.0)
        return out


# --- the model input ------------------------------------------------------------------------


def test_aligned_crop_resamples_the_same_square_at_a_fixed_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = (40.0, 30.0, 40.0, 40.0)
    native = aligned_crop(image, box, 0.5)
    assert native.shape == (60, 60, 3)
    same = aligned_crop(image, box, 0.5, out_size=60)
    np.testing.assert_array_equal(same, native)
    big = aligned_crop(image, box, 0.5, out_size=180)
    assert big.shape == (180, 180, 3)
    # 3x nearest pixel centres of the upsampled crop land on the native pixels' centres
    np.testing.assert_allclose(big[1::3, 1::3].astype(float), native.astype(float), atol=1.0)
    with pytest.raises(ValueError):
        aligned_crop(image, box, 0.5, out_size=0)


def test_aligned_crop_at_a_fixed_size_levels_a_tilted_line():
    image = np.zeros((200, 200), np.uint8)
    # a bright line through the centre at +30 degrees (going down to the right)
    for t in np.linspace(-60, 60, 400):
        x, y = 100 + t * np.cos(np.radians(30)), 100 + t * np.sin(np.radians(30))
        image[int(round(y)), int(round(x))] = 255
    crop = aligned_crop(image, (70.0, 70.0, 60.0, 60.0), 0.5, roll_deg=30.0, out_size=96)
    rows = np.where(crop.max(axis=1) > 100)[0]
    assert rows.max() - rows.min() <= 6  # level: the line occupies a few rows only


def test_stretch_contrast_spreads_a_dim_crop_and_leaves_a_flat_one():
    dim = np.linspace(10, 40, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)
    out = stretch_contrast(dim)
    assert out.dtype == np.uint8 and out.min() <= 5 and out.max() >= 250
    flat = np.full((64, 64, 3), 17, np.uint8)
    assert stretch_contrast(flat) is flat


@pytest.mark.parametrize("seed", range(20))
def test_stretch_contrast_gives_the_bytes_of_the_per_pixel_float32_stretch(seed):
    """The lookup table gives exactly the bytes of stretching every pixel in float32: percentiles
    1 and 99 (of every 4th pixel) to 0 and 255, clipped, truncated to uint8."""
    rng = np.random.default_rng(seed)
    low, high = sorted(rng.integers(0, 250, 2))
    face = rng.integers(low, high + 6, (192, 192, 3)).clip(0, 255).astype(np.uint8)
    lo, hi = np.percentile(face[::4, ::4], (1.0, 99.0))
    per_pixel = (face.astype(np.float32) - lo) * (255.0 / (hi - lo))
    expected = np.clip(per_pixel, 0.0, 255.0).astype(np.uint8)
    out = stretch_contrast(face)
    assert out.shape == face.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_check_input_is_a_192_px_square_rotated_by_the_eye_line():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 30:70] = 200
    level = Detection(box=(40.0, 40.0, 20.0, 20.0), score=0.9, keypoints=((44, 45), (56, 45)))
    out = check_input(image, level)
    assert out.shape == (CHECK_INPUT_SIDE, CHECK_INPUT_SIDE, 3) and out.dtype == np.uint8
    tilted = Detection(box=(40.0, 40.0, 20.0, 20.0), score=0.9, keypoints=((44, 40), (56, 52)))
    assert not np.array_equal(check_input(image, tilted), out)
    with pytest.raises(ValueError):
        check_input(image, Detection(box=(500.0, 500.0, 10.0, 10.0), score=0.9))


# --- the rule and the wrapper (fake model) --------------------------------------------------


@pytest.mark.parametrize(
    ("side", "presence", "kept"),
    [
        (9.9, 1.0, False),  # too small to be anything, whatever the model says
        (10.0, 0.0, True),  # small: the model's doubt is not trusted
        (31.9, 0.0, True),
        (32.0, 0.0, False),  # large enough to judge: not a face
        (32.0, 0.049, False),
        (32.0, 0.05, True),
        (200.0, 0.9, True),
        (200.0, None, False),  # never measured: not kept
    ],
)
def test_the_rule_drops_tiny_boxes_trusts_presence_from_32_px(side, presence, kept):
    assert FaceCheckRule().keeps(_det(side), presence) is kept


def test_checked_detector_keeps_faces_drops_the_rest_and_reports_presence():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[10:50, 10:50, 0] = 255  # a 40 px "face" the fake check likes
    rgb[10:50, 100:140, 0] = 0  # a 40 px box it does not
    inner = FakeDetector(
        [
            _det(40, 0.9, 10, 10),
            _det(40, 0.95, 100, 10),
            _det(20, 0.5, 200, 10),  # small: kept unjudged
            _det(8, 0.99, 250, 10),  # tiny: dropped before the model runs
        ]
    )
    fake = FakeCheck()
    detector = CheckedFaceDetector(inner, fake)
    found = detector.detect(rgb)
    assert [d.box[0] for d in found] == [10.0, 200.0]
    assert found[0].presence == pytest.approx(1.0) and found[1].presence == pytest.approx(0.0)
    assert fake.calls == 1


def test_presence_travels_to_the_worker_result():
    rgb = np.zeros((120, 120, 3), np.uint8)
    rgb[10:50, 10:50, 0] = 200
    detector = CheckedFaceDetector(FakeDetector([_det(40, 0.9, 10, 10)]), FakeCheck())
    analysis = analyze_frame(rgb, detector, FakeClassifier())
    (face,) = analysis.faces
    assert face.presence == pytest.approx(200 / 255)
    assert analysis.to_dict()["faces"][0]["presence"] == pytest.approx(200 / 255)
    plain = analyze_frame(rgb, FakeDetector([_det(40, 0.9, 10, 10)]), FakeClassifier())
    assert plain.to_dict()["faces"][0]["presence"] is None


def test_a_wrong_model_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        FaceLandmarkCheck(tmp_path / "missing.tflite")
    tiny = REPO_ROOT / "tests" / "inference_worker" / "fixtures" / "tiny_classifier.tflite"
    with pytest.raises(ValueError, match="192"):
        FaceLandmarkCheck(tiny)


def test_the_shipped_model_has_its_licence_and_source():
    models = Path(facecheck.__file__).parent / "models"
    source = (models / "SOURCE.md").read_text()
    assert "face_landmark.tflite" in source and (models / "LICENSE").is_file()
    import hashlib

    digest = hashlib.sha256(facecheck.LANDMARK_MODEL.read_bytes()).hexdigest()
    assert digest in source


# --- the real landmark model on the shared media --------------------------------------------


@pytest.mark.slow
def test_real_faces_score_high_and_what_blazeface_mistakes_for_faces_low(media_dir):
    """Faces of 32 px or more pass; BlazeFace's own weak detections off the faces do not.

    The non-faces are what BlazeFace finds at a score threshold of 0.05 (hands, clothing,
    furniture, hair) lying on no annotated face: the kind of box the check must reject.
    """
    from inference_worker.blazeface import DETECTOR_MODELS, MediaPipeFaceDetector
    from inference_worker.detection import iou_matrix

    check = runtime.get_face_check()
    weak = MediaPipeFaceDetector(DETECTOR_MODELS["full"], min_confidence=0.05)
    annotations, _ = load_annotations(FACE_BOXES)
    faces, non_faces = [], []
    try:
        for annotation in annotations:
            if annotation.file == "classroom_cctv.mp4":  # not every pupil is annotated there
                continue
            rgb = read_frame(media_dir / annotation.file, annotation.frame)
            big = [Detection(box=b, score=1.0) for b in annotation.boxes if max(b[2:]) >= 32]
            faces += check.scores(rgb, big)
            off_faces = [
                d
                for d in weak.detect(rgb)
                if max(d.box[2:]) >= 32 and iou_matrix([d.box], annotation.boxes).max() < 0.1
            ]
            non_faces += check.scores(rgb, off_faces)
    finally:
        weak.close()
    rule = facecheck.DEFAULT_RULE
    assert len(faces) >= 90 and len(non_faces) >= 20
    # Measured: every face (upright box, no eye line) >= 0.5; 1-3% of the non-faces >= 0.05.
    assert np.mean(np.array(faces) >= rule.min_presence) >= 0.97
    assert np.mean(np.array(non_faces) < rule.min_presence) >= 0.95


@pytest.mark.slow
def test_the_four_webcam_faces_pass_the_check(webcam_photo):
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(webcam_photo)), cv2.COLOR_BGR2RGB)
    found = runtime.get_detector("webcam", check=False).detect(rgb)
    scores = runtime.get_face_check().scores(rgb, found)
    assert len(scores) == 4 and min(scores) > 0.5
