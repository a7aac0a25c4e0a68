"""Head pose from BlazeFace keypoints: synthetic heads with a known pose, mirror symmetry, real faces."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference_worker import headpose
from inference_worker.headpose import (
    ATTENTIVE_MAX_PITCH_DEG,
    ATTENTIVE_MAX_YAW_DEG,
    FRONTAL_NOSE_RATIO,
    MOUTH_DEPTH,
    NOSE_DEPTH,
    HeadPose,
    estimate_head_pose,
    is_attentive,
)

# A synthetic head that satisfies the module's model exactly (units: the eye-to-mouth height).
# Model coordinates: X = towards the image's right when frontal, Y up, Z towards the camera.
# Eyes at depth 0; the nose tip NOSE_DEPTH in front, its height at the frontal ratio; the mouth one
# unit below the eyes, MOUTH_DEPTH in front. Eyes half a distance E apart and ears R apart, with
# the nose E resp. R in front of them, so that 2R/D = 2 = YAW_GAIN for both pairs.
E = NOSE_DEPTH
R = 1.1
HEAD = np.array(
    [
        (-E, 0.0, 0.0),  # right eye (the subject's right: image left)
        (E, 0.0, 0.0),  # left eye
        (0.0, -FRONTAL_NOSE_RATIO, NOSE_DEPTH),  # nose tip
        (0.0, -1.0, MOUTH_DEPTH),  # mouth centre
        (-R, -0.3, NOSE_DEPTH - R),  # right ear tragion
        (R, -0.3, NOSE_DEPTH - R),  # left ear tragion
    ]
)


def _project(
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
    scale: float = 80.0,
    at: tuple[float, float] = (320.0, 240.0),
) -> np.ndarray:
    """Keypoints in image pixels of HEAD turned by yaw, then pitched, then rolled (degrees)."""
    a, b, c = (math.radians(v) for v in (yaw, pitch, roll))
    # Pitch (chin up = forward points move up): Y' = Y cos b + Z sin b, Z' = -Y sin b + Z cos b.
    pitch_m = np.array([[1, 0, 0], [0, math.cos(b), math.sin(b)], [0, -math.sin(b), math.cos(b)]])
    # Yaw (towards the image's right = forward points move to +X): X' = X cos a + Z sin a.
    yaw_m = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    points = HEAD @ pitch_m.T @ yaw_m.T
    image = np.stack([points[:, 0], -points[:, 1]], axis=1)  # orthographic, y down
    rot = np.array([[math.cos(c), -math.sin(c)], [math.sin(c), math.cos(c)]])
    return image @ rot.T * scale + np.asarray(at)


def _mirror(keypoints: np.ndarray, width: float = 640.0) -> np.ndarray:
    """The keypoints of the horizontally flipped image: x -> W - x, subject's right <-> left."""
    flipped = keypoints.copy()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped[[1, 0, 2, 3, 5, 4]]


def test_a_frontal_head_has_zero_yaw_and_pitch_and_is_attentive():
    pose = estimate_head_pose(_project())
    assert pose == HeadPose(
        yaw_deg=pytest.approx(0.0, abs=1e-9), pitch_deg=pytest.approx(0.0, abs=1e-9), attentive=True
    )


@pytest.mark.parametrize("yaw", [-75.0, -40.0, -10.0, 5.0, 25.0, 60.0])
def test_yaw_of_a_turned_head_is_recovered(yaw):
    pose = estimate_head_pose(_project(yaw=yaw))
    assert pose.yaw_deg == pytest.approx(yaw, abs=0.01)
    assert pose.pitch_deg == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("pitch", [-50.0, -20.0, -5.0, 10.0, 35.0])
def test_pitch_of_a_nodding_head_is_recovered(pitch):
    pose = estimate_head_pose(_project(pitch=pitch))
    assert pose.pitch_deg == pytest.approx(pitch, abs=0.01)
    assert pose.yaw_deg == pytest.approx(0.0, abs=0.01)


def test_signs_follow_the_contract():
    right = _project(yaw=20.0)
    assert right[2, 0] > (right[4, 0] + right[5, 0]) / 2  # the nose moved to the image's right
    assert estimate_head_pose(right).yaw_deg > 0
    chin_up = _project(pitch=20.0)
    assert chin_up[2, 1] < _project()[2, 1]  # the nose moved up in the image
    assert estimate_head_pose(chin_up).pitch_deg > 0


@pytest.mark.parametrize("pitch", [-15.0, 15.0])
def test_combined_yaw_and_pitch_are_close(pitch):
    # Pitch is exact; yaw is coupled to pitch (a nodding head moves the nose's depth in front of
    # the eyes and ears), documented as up to ~4 degrees at |pitch| = 15.
    pose = estimate_head_pose(_project(yaw=20.0, pitch=pitch))
    assert pose.yaw_deg == pytest.approx(20.0, abs=4.0)
    assert pose.pitch_deg == pytest.approx(pitch, abs=0.01)


@pytest.mark.parametrize("roll", [-30.0, 15.0, 40.0])
@pytest.mark.parametrize(("yaw", "pitch"), [(25.0, 0.0), (0.0, -20.0)])
def test_roll_changes_nothing(roll, yaw, pitch):
    upright = estimate_head_pose(_project(yaw=yaw, pitch=pitch))
    tilted = estimate_head_pose(_project(yaw=yaw, pitch=pitch, roll=roll))
    assert tilted.yaw_deg == pytest.approx(upright.yaw_deg, abs=1e-6)
    assert tilted.pitch_deg == pytest.approx(upright.pitch_deg, abs=1e-6)


def test_scale_and_position_change_nothing():
    a = estimate_head_pose(_project(yaw=33.0, pitch=12.0))
    b = estimate_head_pose(_project(yaw=33.0, pitch=12.0, scale=7.0, at=(13.0, 900.0)))
    assert (b.yaw_deg, b.pitch_deg) == pytest.approx((a.yaw_deg, a.pitch_deg))


@pytest.mark.parametrize(("yaw", "pitch"), [(0.0, 0.0), (30.0, 10.0), (-55.0, -25.0)])
def test_mirroring_negates_yaw_and_keeps_pitch(yaw, pitch):
    keypoints = _project(yaw=yaw, pitch=pitch)
    pose = estimate_head_pose(keypoints)
    mirrored = estimate_head_pose(_mirror(keypoints))
    assert mirrored.yaw_deg == pytest.approx(-pose.yaw_deg, abs=1e-9)
    assert mirrored.pitch_deg == pytest.approx(pose.pitch_deg, abs=1e-9)


def test_attentive_limits_are_inclusive_and_symmetric():
    assert is_attentive(ATTENTIVE_MAX_YAW_DEG, -ATTENTIVE_MAX_PITCH_DEG)
    assert not is_attentive(ATTENTIVE_MAX_YAW_DEG + 0.1, 0.0)
    assert not is_attentive(0.0, -ATTENTIVE_MAX_PITCH_DEG - 0.1)
    assert not estimate_head_pose(_project(yaw=ATTENTIVE_MAX_YAW_DEG + 5)).attentive
    assert not estimate_head_pose(_project(pitch=-(ATTENTIVE_MAX_PITCH_DEG + 5))).attentive
    assert estimate_head_pose(_project(yaw=-(ATTENTIVE_MAX_YAW_DEG - 5))).attentive


def test_missing_or_degenerate_keypoints_give_no_pose():
    assert estimate_head_pose(None) is None
    assert estimate_head_pose(np.zeros((6, 2))) is None  # every point on top of the others
    level = _project().copy()
    level[3, 1] = level[0, 1]  # mouth on the eye line
    assert estimate_head_pose(level) is None
    nan = _project().copy()
    nan[2, 0] = np.nan
    assert estimate_head_pose(nan) is None


def test_malformed_keypoints_are_an_error():
    with pytest.raises(ValueError, match="6"):
        estimate_head_pose([(0.0, 0.0)] * 5)
    with pytest.raises(ValueError, match="6"):
        estimate_head_pose(np.zeros((6, 3)))


def test_angles_stay_in_range_for_extreme_keypoints():
    far = _project().copy()
    far[2, 0] += 1e6  # nose far off to the right
    pose = estimate_head_pose(far)
    assert 0 < pose.yaw_deg < 90 and pose.attentive is False


def test_module_is_pure():
    source = open(headpose.__file__, encoding="utf-8").read()
    for name in ("django", "celery", "mediapipe", "tensorflow", "cv2", "classroom"):
        assert f"import {name}" not in source and f"from {name}" not in source


# --- real faces ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector():
    from inference_worker import runtime

    return runtime.get_detector("webcam")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "faces"), [("webcam_posed_expressions_4.jpg", 4), ("group_photo_6_people.jpg", 6)]
)
def test_real_frontal_faces_are_attentive_also_when_mirrored(media_dir, detector, name, faces):
    """The 10 people of the shared photos face the camera: all attentive, in the photo and in
    its mirror image. (Exact mirror symmetry of the formulas is tested above; BlazeFace itself is
    not mirror-equivariant: on the flipped group photo it finds 4 of the 6 faces, and under hair
    its ear keypoints move by up to ~20 degrees of yaw.)"""
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(media_dir / name)), cv2.COLOR_BGR2RGB)
    found = detector.detect(rgb)
    assert len(found) == faces
    flipped = detector.detect(np.ascontiguousarray(rgb[:, ::-1]))
    assert len(flipped) >= faces - 2
    for det in found + flipped:
        pose = estimate_head_pose(det.keypoints)
        assert pose is not None and pose.attentive, (det.box, pose)
        assert abs(pose.yaw_deg) < ATTENTIVE_MAX_YAW_DEG
        assert abs(pose.pitch_deg) < ATTENTIVE_MAX_PITCH_DEG
