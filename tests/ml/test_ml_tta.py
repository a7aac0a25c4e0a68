"""Test-time augmentation inside the graph (ml.models.tta) and its export (dynamic quantization)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml.evaluate import tta_views
from ml.labels import NUM_CLASSES
from ml.preprocessing import preprocess_faces

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model():
    import keras

    from ml.models import build_model

    keras.utils.set_random_seed(11)
    return build_model("cnn", width=0.125)


def _faces(n: int = 6, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Smooth random faces: bilinear resizing of smooth images differs little between libraries.
    small = rng.integers(0, 256, size=(n, 12, 12), dtype=np.uint8)
    return np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_CUBIC) for f in small])


def _logits(model, faces_uint8: np.ndarray) -> np.ndarray:
    return np.asarray(model(preprocess_faces(faces_uint8, 48), training=False), np.float32)


def test_mirror_view_is_the_model_on_the_mirrored_face(base_model):
    from ml.models.tta import with_tta

    faces = _faces()
    wrapped = with_tta(base_model, ["full_flip"])
    expected = _logits(base_model, faces[:, :, ::-1].copy())
    np.testing.assert_allclose(_logits(wrapped, faces), expected, rtol=1e-5, atol=1e-5)


def test_wrapped_model_averages_the_logits_of_the_evaluate_views(base_model):
    """Same views as ml.evaluate.tta_views (crops resized back by preprocess_faces)."""
    from ml.models.tta import DEFAULT_VIEWS, with_tta

    faces = _faces()
    views = dict(tta_views(faces))
    expected = np.mean([_logits(base_model, views[v]) for v in DEFAULT_VIEWS], axis=0)
    got = _logits(with_tta(base_model, DEFAULT_VIEWS), faces)
    assert got.shape == (len(faces), NUM_CLASSES)
    np.testing.assert_allclose(got, expected, atol=2e-3)
    # and it is not just the plain model
    assert not np.allclose(got, _logits(base_model, faces), atol=1e-4)


def test_wrapped_model_saves_and_loads_in_safe_mode(base_model, tmp_path):
    import keras

    from ml.models.tta import with_tta

    faces = _faces()
    wrapped = with_tta(base_model, ["full", "centre", "bottom_left_flip"])
    path = tmp_path / "tta.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(_logits(loaded, faces), _logits(wrapped, faces), atol=1e-6)


@pytest.mark.parametrize(
    "views, message",
    [([], "at least one"), (["full", "full"], "repeated"), (["left_ear"], "unknown TTA view")],
)
def test_bad_views_are_refused(base_model, views, message):
    from ml.models.tta import with_tta

    with pytest.raises(ValueError, match=message):
        with_tta(base_model, views)


def test_export_with_tta_and_dynamic_quantization(tmp_path, tiny_keras_model, tiny_csv):
    """The exported LiteRT model carries the views; parity and metrics are measured on it."""
    from ml.export import export_model
    from ml.inference import ExpressionClassifier

    views = ["full", "top_left_flip", "bottom_right_flip"]
    meta = export_model(
        tiny_keras_model,
        tmp_path,
        data=tiny_csv,
        quantize="dynamic",
        min_parity_samples=20,
        tta_views=views,
    )
    assert meta["files"]["tflite"]["quantization"] == "dynamic"
    assert meta["model"]["test_time_augmentation"]["views"] == views
    assert meta["parity"]["argmax_agreement"] >= 0.995
    faces = _faces(8)
    lite = ExpressionClassifier.load(tmp_path / "expression_cnn.tflite").predict_proba(faces)
    keras_ = ExpressionClassifier.load(tmp_path / "expression_cnn.keras").predict_proba(faces)
    np.testing.assert_allclose(lite, keras_, atol=0.03)
    np.testing.assert_allclose(lite.sum(axis=1), 1.0, atol=1e-5)
    # Dynamic range quantization stores int8 weights: the file is smaller than float16 would be.
    assert (tmp_path / "expression_cnn.tflite").stat().st_size < tiny_keras_model.stat().st_size


def test_float16_weight_storage_halves_the_file_and_loads_back_as_float32(base_model, tmp_path):
    from ml.modelio import load_keras_model, with_float16_weights

    full, half = tmp_path / "f32.keras", tmp_path / "f16.keras"
    base_model.save(full)
    with_float16_weights(base_model).save(half)
    # (0.51x for the shipped model; fixed h5 and config overhead weighs more in a tiny one)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    loaded = load_keras_model(half, float32=True)
    assert all(w.dtype == np.float32 for w in loaded.get_weights())
    for got, want in zip(loaded.get_weights(), base_model.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=2**-10, atol=1e-6)
    faces = _faces()
    np.testing.assert_allclose(_logits(loaded, faces), _logits(base_model, faces), atol=1e-2)
