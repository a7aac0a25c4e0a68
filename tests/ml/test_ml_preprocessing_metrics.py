"""preprocess_faces (shapes, dtypes, errors) and the numpy metrics against hand-computed values."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml.metrics import accuracy, classification_report, confusion_matrix, macro_f1, per_class_scores
from ml.preprocessing import INPUT_SIZE, preprocess_faces

RNG = np.random.default_rng(0)


def _u8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------ preprocess_faces


def test_gray_batch_at_input_size_is_scaled_copy():
    faces = _u8(5, 48, 48)
    x = preprocess_faces(faces)
    assert x.shape == (5, 48, 48, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(x[..., 0], faces.astype(np.float32) / 255.0)
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_array_and_list_paths_agree():
    faces = _u8(4, 48, 48)
    np.testing.assert_array_equal(preprocess_faces(faces), preprocess_faces(list(faces)))
    np.testing.assert_array_equal(preprocess_faces(faces), preprocess_faces(faces[..., None]))


def test_rgb_is_converted_to_gray():
    rgb = _u8(3, 60, 60, 3)
    x = preprocess_faces(rgb)
    assert x.shape == (3, 48, 48, 1)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    np.testing.assert_array_equal(x, preprocess_faces(gray))


def test_equal_channel_rgb_equals_gray():
    gray = _u8(2, 48, 48)
    rgb = np.repeat(gray[..., None], 3, axis=3)
    np.testing.assert_array_equal(preprocess_faces(rgb), preprocess_faces(gray))


def test_list_of_any_sizes_and_custom_size():
    crops = [_u8(10, 30), _u8(200, 120, 3), _u8(48, 48), _u8(1, 1)]
    x = preprocess_faces(crops)
    assert x.shape == (4, INPUT_SIZE, INPUT_SIZE, 1) and x.dtype == np.float32
    assert preprocess_faces(crops, size=64).shape == (4, 64, 64, 1)
    # shrinking uses area interpolation: a constant image stays constant.
    np.testing.assert_allclose(
        preprocess_faces([np.full((300, 200), 51, np.uint8)]), 0.2, rtol=1e-6
    )


@pytest.mark.parametrize(
    "empty", [np.zeros((0, 48, 48), np.uint8), np.zeros((0, 9, 9, 3), np.uint8), []]
)
def test_empty_batch(empty):
    x = preprocess_faces(empty)
    assert x.shape == (0, 48, 48, 1) and x.dtype == np.float32


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        ([np.zeros((48, 48), np.float32)], "uint8"),
        (np.zeros((2, 48, 48), np.int16), "uint8"),
        ([np.zeros((48, 48, 4), np.uint8)], "expected"),
        ([np.zeros((48,), np.uint8)], "expected"),
        ([np.zeros((0, 10), np.uint8)], "empty"),
        ([np.zeros((10, 0, 3), np.uint8)], "empty"),
    ],
)
def test_bad_crops_raise(faces, message):
    with pytest.raises(ValueError, match=message):
        preprocess_faces(faces)


# ------------------------------------------------------------------ metrics

# 10 samples, 3 classes. Hand count:
#   true 0: predicted 0,0,1      true 1: predicted 1,1,1,2      true 2: predicted 2,0,2
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 1, 2, 2, 0, 2])
CM = np.array([[2, 1, 0], [0, 3, 1], [1, 0, 2]])


def test_confusion_matrix_hand_counted():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)
    assert cm.sum() == len(Y_TRUE)


def test_accuracy_hand_counted():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(7 / 10)
    assert np.isnan(accuracy(np.array([], int), np.array([], int)))


def test_precision_recall_f1_hand_computed():
    s = per_class_scores(CM)
    # precision = TP / column sum: 2/3, 3/4, 2/3; recall = TP / row sum: 2/3, 3/4, 2/3
    np.testing.assert_allclose(s["precision"], [2 / 3, 3 / 4, 2 / 3])
    np.testing.assert_allclose(s["recall"], [2 / 3, 3 / 4, 2 / 3])
    np.testing.assert_allclose(s["f1"], [2 / 3, 3 / 4, 2 / 3])
    np.testing.assert_array_equal(s["support"], [3, 4, 3])
    assert macro_f1(Y_TRUE, Y_PRED, 3) == pytest.approx((2 / 3 + 3 / 4 + 2 / 3) / 3)


def test_asymmetric_precision_recall_and_zero_division():
    # class 0: TP 1, FP 2, FN 0 -> P 1/3, R 1, F1 = 2*(1/3)/(4/3) = 1/2
    # class 1: TP 1, FP 0, FN 2 -> P 1, R 1/3, F1 1/2
    # class 2: never true, never predicted -> P = R = F1 = 0 (zero_division=0)
    t = np.array([0, 1, 1, 1])
    p = np.array([0, 1, 0, 0])
    s = per_class_scores(confusion_matrix(t, p, 3))
    np.testing.assert_allclose(s["precision"], [1 / 3, 1, 0])
    np.testing.assert_allclose(s["recall"], [1, 1 / 3, 0])
    np.testing.assert_allclose(s["f1"], [0.5, 0.5, 0])
    assert macro_f1(t, p, 3) == pytest.approx(1 / 3)


def test_perfect_and_all_wrong():
    y = np.arange(7).repeat(3)
    assert macro_f1(y, y) == 1.0 and accuracy(y, y) == 1.0
    assert macro_f1(y, (y + 1) % 7) == 0.0


def test_classification_report_is_json_ready():
    import json

    rep = classification_report(Y_TRUE, Y_PRED, ("a", "b", "c"))
    json.dumps(rep)
    assert rep["n"] == 10 and rep["accuracy"] == pytest.approx(0.7)
    assert rep["per_class"]["b"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert rep["confusion_matrix"] == CM.tolist()


@pytest.mark.parametrize(
    ("t", "p"),
    [
        (np.array([0, 1]), np.array([0])),
        (np.array([0, 7]), np.array([0, 1])),
        (np.array([0, -1]), np.array([0, 1])),
        (np.array([0.0, 1.0]), np.array([0, 1])),
        (np.zeros((2, 2), int), np.zeros((2, 2), int)),
    ],
)
def test_metric_input_errors(t, p):
    with pytest.raises(ValueError):
        confusion_matrix(t, p, 7)
