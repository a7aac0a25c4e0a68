"""The pure pipeline with fake models: no Django, no Celery, no model file."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inference_worker import pipeline
from inference_worker.pipeline import (
    Detection,
    FrameDecodeError,
    analyze_bytes,
    analyze_frame,
    decode_image,
    face_crop,
)
from ml.labels import EXPRESSIONS
from ml.preprocessing import aligned_crop, eye_roll_deg, preprocess_faces
from tests.inference_worker.worker_fakes import (
    FACE_KEYS,
    FakeClassifier,
    FakeDetector,
    textured_frame,
)

TIMING_KEYS = {"decode", "detect", "crop", "classify", "total"}


def _frame(height: int = 100, width: int = 200) -> np.ndarray:
    return textured_frame(height, width)


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


def test_boxes_are_normalised_to_the_frame(fake_classifier):
    detector = FakeDetector([Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9)])
    analysis = analyze_frame(_frame(100, 200), detector, fake_classifier)
    assert (analysis.width, analysis.height) == (200, 100)
    (face,) = analysis.faces
    assert face.box == pytest.approx((0.2, 0.2, 0.25, 0.6))
    assert face.score == pytest.approx(0.9)


def test_boxes_reaching_outside_the_frame_are_clipped(fake_classifier):
    detector = FakeDetector(
        [
            Detection(box=(-20.0, -10.0, 60.0, 40.0), score=0.8),
            Detection(box=(180.0, 80.0, 40.0, 40.0), score=0.7),
        ]
    )
    analysis = analyze_frame(_frame(100, 200), detector, fake_classifier)
    first, second = analysis.faces
    assert first.box == pytest.approx((0.0, 0.0, 0.2, 0.3))
    assert second.box == pytest.approx((0.9, 0.8, 0.1, 0.2))
    for face in analysis.faces:
        x, y, w, h = face.box
        assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 and 0 < h <= 1
        assert x + w <= 1 + 1e-9 and y + h <= 1 + 1e-9


def test_all_faces_of_a_frame_are_classified_in_one_batch():
    boxes = [(10.0, 10.0, 30.0, 30.0), (80.0, 20.0, 40.0, 50.0), (150.0, 40.0, 30.0, 30.0)]
    detector = FakeDetector([Detection(box=b, score=0.9 - i * 0.1) for i, b in enumerate(boxes)])
    classifier = FakeClassifier()
    analysis = analyze_frame(_frame(100, 200), detector, classifier)
    assert detector.calls == 1
    assert len(classifier.calls) == 1
    assert len(classifier.calls[0]) == 3
    # the classifier gets its own input: gray 48x48 uint8, as preprocess_faces makes it
    for crop, box in zip(classifier.calls[0], boxes, strict=True):
        assert crop.dtype == np.uint8 and crop.shape == (48, 48)
        expected = preprocess_faces([face_crop(_frame(100, 200), Detection(box, 0.9))])[0, :, :, 0]
        assert np.array_equal(crop, np.rint(expected * 255).astype(np.uint8))
    assert analysis.face_count == 3
    assert all(f.assessed for f in analysis.faces)
    # crop i got class i % 7 from the fake; faces keep the detector's score order
    assert [f.label for f in analysis.faces] == [EXPRESSIONS[0], EXPRESSIONS[1], EXPRESSIONS[2]]
    assert [f.score for f in analysis.faces] == pytest.approx([0.9, 0.8, 0.7])


def test_faces_are_sorted_by_detector_score(fake_classifier):
    detector = FakeDetector(
        [
            Detection(box=(10.0, 10.0, 30.0, 30.0), score=0.6),
            Detection(box=(100.0, 10.0, 30.0, 30.0), score=0.95),
        ]
    )
    analysis = analyze_frame(_frame(), detector, fake_classifier)
    assert [f.score for f in analysis.faces] == pytest.approx([0.95, 0.6])
    assert analysis.faces[0].box[0] == pytest.approx(0.5)


def test_label_and_confidence_follow_the_probabilities(fake_detector):
    analysis = analyze_frame(_frame(), fake_detector, FakeClassifier(top=0.82))
    (face,) = analysis.faces
    assert len(face.probabilities) == 7
    assert sum(face.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert face.label == EXPRESSIONS[int(np.argmax(face.probabilities))]
    assert face.confidence == pytest.approx(max(face.probabilities)) == pytest.approx(0.82)


def test_zero_faces_skips_the_classifier(fake_classifier):
    analysis = analyze_frame(_frame(), FakeDetector([]), fake_classifier)
    assert analysis.faces == ()
    assert fake_classifier.calls == []
    assert analysis.timings.classify == 0.0
    assert analysis.to_dict()["faces"] == []


def test_timings_cover_every_stage(fake_detector, fake_classifier):
    analysis = analyze_bytes(_png(_frame()), fake_detector, fake_classifier)
    timings = analysis.to_dict()["timings_ms"]
    assert set(timings) == TIMING_KEYS
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["decode"] > 0
    stages = timings["decode"] + timings["detect"] + timings["crop"] + timings["classify"]
    assert timings["total"] >= stages - 1e-6


def test_analyze_frame_reports_no_decode_time_by_default(fake_detector, fake_classifier):
    analysis = analyze_frame(_frame(), fake_detector, fake_classifier)
    assert analysis.timings.decode == 0.0
    assert analysis.timings.total >= analysis.timings.detect


def test_to_dict_has_exactly_the_contract_schema(fake_detector, fake_classifier):
    result = analyze_bytes(_png(_frame()), fake_detector, fake_classifier).to_dict()
    assert set(result) == {"width", "height", "faces", "timings_ms"}
    assert type(result["width"]) is int and type(result["height"]) is int
    (face,) = result["faces"]
    assert set(face) == FACE_KEYS
    assert face["yaw_deg"] is None and face["attentive"] is None  # the fake has no keypoints
    assert len(face["box"]) == 4 and all(type(v) is float for v in face["box"])
    assert len(face["probabilities"]) == 7 and all(type(v) is float for v in face["probabilities"])
    assert type(face["score"]) is float and type(face["confidence"]) is float
    assert face["label"] in EXPRESSIONS
    assert json.loads(json.dumps(result)) == result  # JSON-able as is


def test_results_are_frozen(fake_detector, fake_classifier):
    analysis = analyze_frame(_frame(), fake_detector, fake_classifier)
    with pytest.raises(AttributeError):
        analysis.width = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        analysis.faces[0].label = "happy"  # type: ignore[misc]


def test_keypoints_are_normalised_but_not_in_the_result_dict(fake_classifier):
    keypoints = (
        (50.0, 30.0),
        (70.0, 30.0),
        (60.0, 45.0),
        (60.0, 60.0),
        (40.0, 35.0),
        (250.0, 35.0),
    )
    detector = FakeDetector(
        [Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9, keypoints=keypoints)]
    )
    (face,) = analyze_frame(_frame(100, 200), detector, fake_classifier).faces
    assert face.keypoints[0] == pytest.approx((0.25, 0.3))
    assert face.keypoints[5] == pytest.approx((1.0, 0.35))  # clipped
    assert "keypoints" not in face.to_dict()


def test_classifier_with_a_wrong_output_shape_is_an_error(fake_detector):
    class Broken:
        def predict_proba(self, faces):
            return np.zeros((len(list(faces)), 5), np.float32)

    with pytest.raises(ValueError, match="shape"):
        analyze_frame(_frame(), fake_detector, Broken())


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3))]
)
def test_analyze_frame_rejects_non_rgb_uint8(bad, fake_detector, fake_classifier):
    with pytest.raises(ValueError):
        analyze_frame(bad, fake_detector, fake_classifier)


# --- face_crop and aligned_crop ---------------------------------------------------------------


def test_face_crop_in_the_middle_is_square_with_margin():
    rgb = _frame(200, 300)
    crop = face_crop(rgb, Detection(box=(100.0, 50.0, 40.0, 50.0), score=0.9), margin=0.2)
    assert crop.shape == (60, 60, 3)  # longer side 50 * 1.2
    # centred on the box centre (120, 75)
    np.testing.assert_array_equal(crop, rgb[45:105, 90:150])


def test_face_crop_without_margin_is_the_longer_side():
    crop = face_crop(_frame(200, 300), Detection((100.0, 50.0, 40.0, 50.0), 0.9), margin=0.0)
    assert crop.shape == (50, 50, 3)


@pytest.mark.parametrize(
    ("box", "inside"),
    [
        ((-10.0, -10.0, 40.0, 40.0), (slice(14, 48), slice(14, 48), slice(0, 34), slice(0, 34))),
        (
            (280.0, 180.0, 40.0, 40.0),
            (slice(0, 24), slice(0, 24), slice(176, 200), slice(276, 300)),
        ),
    ],
)
def test_face_crop_at_the_frame_edge_stays_square_and_repeats_the_border(box, inside):
    rgb = _frame(200, 300)
    crop = face_crop(rgb, Detection(box, 0.9), margin=0.2)
    assert crop.shape == (48, 48, 3)
    cy, cx, fy, fx = inside
    np.testing.assert_array_equal(crop[cy, cx], rgb[fy, fx])  # the part inside the frame
    if box[0] < 0:  # left of the frame: copies of column 0
        np.testing.assert_array_equal(crop[20, :14], np.repeat(rgb[6:7, 0], 14, axis=0))


def _eyes_at(angle_deg: float, centre=(100.0, 100.0), half=30.0):
    a = np.radians(angle_deg)
    right = (centre[0] - half * np.cos(a), centre[1] - half * np.sin(a))
    left = (centre[0] + half * np.cos(a), centre[1] + half * np.sin(a))
    return right, left


def test_eye_roll_is_the_angle_of_the_eye_line():
    for angle in (0.0, 12.0, -25.0):
        assert eye_roll_deg(*_eyes_at(angle)) == pytest.approx(angle)


def test_face_crop_levels_tilted_eyes_and_leaves_level_ones():
    image = np.zeros((200, 200, 3), np.uint8)
    right, left = _eyes_at(20.0)
    for x, y in (right, left):
        cv2.circle(image, (round(x), round(y)), 4, (255, 255, 255), -1)
    keypoints = (right, left, (100.0, 110.0), (100.0, 130.0), (60.0, 100.0), (140.0, 100.0))
    detection = Detection((60.0, 60.0, 80.0, 80.0), 0.9, keypoints)
    levelled = face_crop(image, detection, margin=0.0, level_above_deg=10.0)
    ys, xs = np.nonzero(levelled[:, :, 0] > 128)
    on_left = xs < 40
    assert abs(ys[on_left].mean() - ys[~on_left].mean()) < 1.0  # level
    assert abs(ys.mean() - 39.5) < 1.0  # still centred
    # Below the threshold, or with levelling off, the crop is the plain square.
    plain = image[60:140, 60:140]
    np.testing.assert_array_equal(face_crop(image, detection, 0.0, level_above_deg=25.0), plain)
    np.testing.assert_array_equal(face_crop(image, detection, 0.0, level_above_deg=None), plain)
    # Without keypoints there is nothing to level by.
    np.testing.assert_array_equal(face_crop(image, Detection(detection.box, 0.9), 0.0), plain)


def test_face_crop_outside_the_frame_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        face_crop(_frame(100, 100), Detection((500.0, 500.0, 20.0, 20.0), 0.9))


@pytest.mark.parametrize("box", [(0.0, 0.0, 0.0, 10.0), (0.0, 0.0, 10.0, -1.0), (1.0, 2.0, 3.0)])
def test_aligned_crop_rejects_degenerate_boxes(box):
    with pytest.raises(ValueError):
        aligned_crop(_frame(), box, 0.2)


def test_aligned_crop_rejects_a_negative_margin():
    with pytest.raises(ValueError, match="margin"):
        aligned_crop(_frame(), (10.0, 10.0, 20.0, 20.0), -0.1)


def test_detections_entirely_outside_the_frame_are_dropped(fake_classifier):
    detector = FakeDetector(
        [
            Detection(box=(500.0, 500.0, 20.0, 20.0), score=0.9),
            Detection(box=(10.0, 10.0, 40.0, 40.0), score=0.8),
        ]
    )
    analysis = analyze_frame(_frame(100, 200), detector, fake_classifier)
    assert analysis.face_count == 1
    assert len(fake_classifier.calls[0]) == 1


# --- decoding -------------------------------------------------------------------------------


def test_decode_image_returns_rgb_uint8():
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[..., 0] = 255  # pure red in RGB order
    decoded = decode_image(_png(rgb))
    assert decoded.dtype == np.uint8 and decoded.shape == (8, 12, 3)
    assert decoded.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(decoded, rgb)


def test_decode_image_makes_gray_images_rgb():
    ok, buf = cv2.imencode(".png", np.full((5, 7), 128, np.uint8))
    assert ok
    decoded = decode_image(buf.tobytes())
    assert decoded.shape == (5, 7, 3)
    assert (decoded == 128).all()


def test_decode_image_reads_jpeg():
    ok, buf = cv2.imencode(".jpg", np.full((32, 48, 3), 90, np.uint8))
    assert ok
    assert decode_image(buf.tobytes()).shape == (32, 48, 3)


@pytest.mark.parametrize(
    "data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 20, b"\x89PNG\r\n\x1a\n"]
)
def test_decode_errors_raise_frame_decode_error(data):
    with pytest.raises(FrameDecodeError):
        decode_image(data)


def test_frame_decode_error_is_a_value_error():
    assert issubclass(FrameDecodeError, ValueError)


def test_decode_image_enforces_max_side():
    data = _png(np.zeros((10, 40, 3), np.uint8))
    assert decode_image(data, max_side=40).shape == (10, 40, 3)
    with pytest.raises(FrameDecodeError, match="exceeds"):
        decode_image(data, max_side=39)


def test_analyze_bytes_propagates_decode_errors(fake_detector, fake_classifier):
    with pytest.raises(FrameDecodeError):
        analyze_bytes(b"garbage", fake_detector, fake_classifier)
    assert fake_detector.calls == 0


def test_pipeline_module_is_pure():
    source = open(pipeline.__file__, encoding="utf-8").read()
    for name in ("django", "celery", "mediapipe", "tensorflow", "keras", "classroom"):
        assert f"import {name}" not in source and f"from {name}" not in source


# --- head pose and attention-only analysis -----------------------------------------------------

# A frontal face in pixels (right eye, left eye, nose, mouth, right ear, left ear): the nose sits
# halfway between the ears and the eyes, at the frontal ratio between eye line and mouth.
FRONTAL = ((80.0, 50.0), (120.0, 50.0), (100.0, 65.0), (100.0, 80.0), (60.0, 55.0), (140.0, 55.0))


def _turned(dx: float) -> tuple[tuple[float, float], ...]:
    nose = (FRONTAL[2][0] + dx, FRONTAL[2][1])
    return FRONTAL[:2] + (nose,) + FRONTAL[3:]


def test_faces_with_keypoints_get_a_head_pose_in_the_result(fake_classifier):
    detector = FakeDetector(
        [
            Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.9, keypoints=FRONTAL),
            Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.8, keypoints=_turned(60.0)),
            Detection(box=(10.0, 10.0, 30.0, 30.0), score=0.7),
        ]
    )
    analysis = analyze_frame(_frame(200, 300), detector, fake_classifier)
    front, turned, bare = analysis.to_dict()["faces"]
    assert front["yaw_deg"] == pytest.approx(0.0, abs=1e-9)
    assert abs(front["pitch_deg"]) < 1.0 and front["attentive"] is True
    assert turned["yaw_deg"] > 45.0 and turned["attentive"] is False  # nose moved to the right
    assert (bare["yaw_deg"], bare["pitch_deg"], bare["attentive"]) == (None, None, None)
    assert type(front["yaw_deg"]) is float and type(front["attentive"]) is bool


def test_head_pose_uses_pixel_keypoints_not_the_normalised_ones(fake_classifier):
    # The same face in a very wide frame: normalised x shrinks, pixel geometry does not.
    detector = FakeDetector(
        [Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.9, keypoints=_turned(10.0))]
    )
    narrow = analyze_frame(_frame(200, 300), detector, fake_classifier).faces[0]
    wide = analyze_frame(_frame(200, 3000), detector, fake_classifier).faces[0]
    assert narrow.yaw_deg == pytest.approx(wide.yaw_deg)
    assert narrow.yaw_deg > 0


def test_attention_only_never_calls_the_classifier(fake_classifier):
    detector = FakeDetector([Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.9, keypoints=FRONTAL)])
    analysis = analyze_frame(_frame(200, 300), detector, fake_classifier, classify=False)
    assert fake_classifier.calls == []
    assert analysis.timings.classify == 0.0
    (face,) = analysis.to_dict()["faces"]
    assert set(face) == FACE_KEYS
    assert (face["probabilities"], face["label"], face["confidence"]) == (None, None, None)
    assert face["attentive"] is True
    assert json.loads(json.dumps(face)) == face


def test_attention_only_needs_no_classifier_at_all():
    detector = FakeDetector([Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.9, keypoints=FRONTAL)])
    analysis = analyze_bytes(_png(_frame(200, 300)), detector, None, classify=False)
    assert analysis.face_count == 1 and analysis.faces[0].label is None
    with pytest.raises(ValueError, match="classifier"):
        analyze_frame(_frame(), detector, None)


def test_attention_only_still_drops_off_frame_detections(fake_classifier):
    detector = FakeDetector(
        [
            Detection(box=(500.0, 500.0, 20.0, 20.0), score=0.9),
            Detection(box=(10.0, 10.0, 20.0, 20.0), score=0.5),
        ]
    )
    analysis = analyze_frame(_frame(100, 200), detector, fake_classifier, classify=False)
    assert analysis.face_count == 1 and analysis.faces[0].score == pytest.approx(0.5)
