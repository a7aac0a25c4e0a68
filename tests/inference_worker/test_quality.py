"""The face-quality gate: which faces get an expression, and that the others skip the classifier."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from contracts import FrameResultPayload
from inference_worker import quality
from inference_worker.pipeline import Detection, analyze_frame
from inference_worker.quality import QualityGate, sharpness, snr
from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector, textured_frame

# right eye, left eye, nose, mouth, right ear, left ear (pixels) of a frontal face in a 80-px box
FRONTAL = ((80.0, 50.0), (120.0, 50.0), (100.0, 65.0), (100.0, 80.0), (60.0, 55.0), (140.0, 55.0))
TURNED = FRONTAL[:2] + ((160.0, 65.0),) + FRONTAL[3:]  # nose far to the right: yaw > 45


def _textured(height: int = 200, width: int = 300) -> np.ndarray:
    return textured_frame(height, width)


def test_sharpness_falls_with_blur_and_is_zero_on_a_flat_face():
    face = _textured(96, 96)
    sharp = sharpness([face])[0]
    blurred = sharpness([cv2.GaussianBlur(face, (0, 0), 6)])[0]
    assert sharpness([np.full((96, 96, 3), 90, np.uint8)])[0] == 0.0
    assert blurred < quality.MIN_SHARPNESS < sharp
    # a small crop is measured at its own size: small and sharp is not "blurred"
    small = cv2.resize(face, (16, 16), interpolation=cv2.INTER_AREA)
    assert sharpness([small])[0] > quality.MIN_SHARPNESS
    # a large crop is measured as the classifier sees it, shrunk to 48x48
    big = cv2.resize(face, (192, 192), interpolation=cv2.INTER_LINEAR)
    shrunk = cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA)
    assert sharpness([big])[0] == pytest.approx(sharpness([shrunk])[0])
    with pytest.raises(ValueError):
        sharpness([np.zeros((0, 5), np.uint8)])


def test_snr_falls_when_a_face_is_dimmed_and_noise_is_added():
    face = _textured(96, 96)
    rng = np.random.default_rng(2)
    dim = np.clip(face * 0.3 + rng.normal(0, 20, face.shape), 0, 255).astype(np.uint8)
    assert snr([dim])[0] < quality.MIN_SNR < snr([face])[0]
    # brightness alone is not a reason: the same face made darker but clean passes
    dark = (face * 0.3).astype(np.uint8)
    assert snr([dark])[0] > quality.MIN_SNR
    assert snr([np.full((48, 48), 30, np.uint8)])[0] == 0.0


def test_gate_checks_size_then_pose_then_noise_then_sharpness():
    gate = QualityGate(
        min_face_px=20, max_yaw_deg=45, max_pitch_deg=40, min_snr=3, min_sharpness=60
    )
    assert gate.issue(19.9, 0.0, 0.0, 10.0, 500.0) == "too_small"
    assert gate.issue(19.9, 80.0, 0.0, 0.0, 0.0) == "too_small"  # the first failing check wins
    assert gate.issue(40.0, -46.0, 0.0, 0.0, 0.0) == "turned_away"
    assert gate.issue(40.0, 0.0, 41.0, 10.0, 500.0) == "turned_away"
    assert gate.issue(40.0, 0.0, 0.0, 2.9, 500.0) == "too_dark"
    assert gate.issue(40.0, 0.0, 0.0, 2.9, 0.0) == "too_dark"  # noise is tested before blur
    assert gate.issue(40.0, None, None, 10.0, 59.0) == "blurred"  # no pose: pixels only
    assert gate.issue(40.0, 45.0, -40.0, 3.0, 60.0) is None  # limits are inclusive


def test_sharp_frontal_face_is_read_and_small_blurred_turned_ones_are_not():
    frame = _textured()
    frame[100:200, 180:290] = cv2.GaussianBlur(frame[100:200, 180:290], (0, 0), 4)
    detector = FakeDetector(
        [
            Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.9, keypoints=FRONTAL),
            Detection(box=(10.0, 150.0, 10.0, 10.0), score=0.8),  # far away
            Detection(box=(60.0, 30.0, 80.0, 80.0), score=0.7, keypoints=TURNED),
            Detection(box=(210.0, 125.0, 60.0, 60.0), score=0.6),  # out of focus
        ]
    )
    classifier = FakeClassifier()
    analysis = analyze_frame(frame, detector, classifier)
    read, small, turned, blurred = analysis.faces
    assert (read.assessed, read.quality_issue) == (True, None)
    assert read.label is not None and read.sharpness > quality.MIN_SHARPNESS
    assert (small.assessed, small.quality_issue) == (False, "too_small")
    assert (turned.assessed, turned.quality_issue) == (False, "turned_away")
    assert (blurred.assessed, blurred.quality_issue) == (False, "blurred")
    for face in (small, turned, blurred):
        assert (face.label, face.probabilities, face.confidence) == (None, None, None)
    # unassessed faces keep everything else: box, score, pose, attention
    assert turned.attentive is False and turned.yaw_deg > 45
    assert analysis.face_count == 4
    # only the one assessed face reached the classifier
    assert [len(call) for call in classifier.calls] == [1]
    payload = FrameResultPayload.from_dict(analysis.to_dict())
    assert [f.assessed for f in payload.faces] == [True, False, False, False]


def test_no_classifier_call_when_no_face_passes():
    detector = FakeDetector([Detection(box=(10.0, 10.0, 8.0, 8.0), score=0.9)])
    classifier = FakeClassifier()
    analysis = analyze_frame(_textured(), detector, classifier)
    assert classifier.calls == [] and analysis.timings.classify == 0.0
    assert analysis.faces[0].quality_issue == "too_small"


def test_gate_none_reads_every_face():
    detector = FakeDetector([Detection(box=(10.0, 10.0, 8.0, 8.0), score=0.9)])
    analysis = analyze_frame(_textured(), detector, FakeClassifier(), gate=None)
    (face,) = analysis.faces
    assert face.assessed is None and face.quality_issue is None and face.label is not None


def test_attention_only_still_reports_the_gate_without_classifying():
    detector = FakeDetector([Detection(box=(10.0, 10.0, 8.0, 8.0), score=0.9)])
    analysis = analyze_frame(_textured(), detector, None, classify=False)
    assert analysis.faces[0].quality_issue == "too_small"


@pytest.mark.slow
def test_real_face_is_read_sharp_and_not_when_blurred_or_shrunk(webcam_photo):
    from inference_worker import runtime

    rgb = cv2.cvtColor(cv2.imread(str(webcam_photo)), cv2.COLOR_BGR2RGB)
    detector, classifier = runtime.get_detector("webcam"), runtime.get_classifier()
    sharp = analyze_frame(rgb, detector, classifier)
    assert sharp.face_count == 4 and all(f.assessed for f in sharp.faces)
    # faces ~190 px wide: sigma 12 is ~3 px at the classifier's 48 px. Blurred further (sigma
    # 16) BlazeFace still finds one face, but so weakly that the face check drops it.
    blurred = analyze_frame(cv2.GaussianBlur(rgb, (0, 0), 12), detector, classifier)
    assert blurred.faces and all(f.quality_issue == "blurred" for f in blurred.faces)
    small = cv2.resize(rgb, (56, 56), interpolation=cv2.INTER_AREA)  # faces of 8-10 px
    tiny = analyze_frame(small, runtime.get_detector("room"), classifier)
    assert tiny.faces and all(f.quality_issue == "too_small" for f in tiny.faces)
