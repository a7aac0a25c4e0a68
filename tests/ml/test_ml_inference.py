"""ExpressionClassifier on the tiny exported model: shapes, inputs, back ends and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ml.inference as inference
from ml.inference import ExpressionClassifier, softmax
from ml.labels import EXPRESSIONS

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(1)
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tflite_path(exported_tiny) -> Path:
    return exported_tiny[0] / "expression_cnn.tflite"


@pytest.fixture(scope="module")
def clf(tflite_path) -> ExpressionClassifier:
    return ExpressionClassifier.load(tflite_path)


def _faces(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def test_softmax_values_and_stability():
    p = softmax(np.array([[0.0, 0.0], [np.log(3.0), 0.0], [1000.0, 0.0]]))
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.75, 0.25], [1.0, 0.0]], atol=1e-7)


def test_predict_proba_shape_dtype_and_sum(clf):
    p = clf.predict_proba(_faces(5, 48, 48))
    assert p.shape == (5, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (p >= 0).all() and (p <= 1).all()
    assert clf.labels == EXPRESSIONS
    assert clf.backend == "tflite" and clf.input_size == 48
    assert clf.output_kind == "logits"


def test_empty_batches_give_0x7(clf):
    for empty in (np.zeros((0, 48, 48), np.uint8), np.zeros((0, 30, 30, 3), np.uint8), [], ()):
        p = clf.predict_proba(empty)
        assert p.shape == (0, 7) and p.dtype == np.float32


def test_gray_and_rgb_agree(clf):
    gray = _faces(3, 64, 64)
    rgb = np.repeat(gray[..., None], 3, axis=3)
    np.testing.assert_allclose(clf.predict_proba(rgb), clf.predict_proba(gray), atol=1e-6)
    # and an RGB crop is converted, not rejected
    assert clf.predict_proba(_faces(2, 40, 50, 3)).shape == (2, 7)


def test_list_of_differently_sized_crops(clf):
    crops = [_faces(30, 20), _faces(120, 100, 3), _faces(48, 48), _faces(7, 9, 3)]
    p = clf.predict_proba(crops)
    assert p.shape == (4, 7)
    singles = np.concatenate([clf.predict_proba([c]) for c in crops])
    np.testing.assert_allclose(p, singles, atol=1e-5)


def test_batch_sizes_and_chunking_agree(clf, monkeypatch):
    faces = _faces(11, 48, 48)
    whole = clf.predict_proba(faces)
    one_by_one = np.concatenate([clf.predict_proba(faces[i : i + 1]) for i in range(len(faces))])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)
    monkeypatch.setattr(inference, "MAX_BATCH", 4)
    np.testing.assert_allclose(clf.predict_proba(faces), whole, atol=1e-5)


def test_loop_fallback_when_resize_fails(tflite_path, monkeypatch):
    c = ExpressionClassifier.load(tflite_path)
    expected = c.predict_proba(_faces(1, 48, 48))  # batch 1 keeps the loaded shape
    faces = _faces(3, 48, 48)
    reference = ExpressionClassifier.load(tflite_path).predict_proba(faces)

    def refuse(*args, **kwargs):
        raise RuntimeError("fixed batch")

    monkeypatch.setattr(c._backend._interpreter, "resize_tensor_input", refuse)
    np.testing.assert_allclose(c.predict_proba(faces), reference, atol=1e-6)
    assert c._backend._can_resize is False
    assert expected.shape == (1, 7)


def test_keras_backend_matches_tflite(exported_tiny, clf):
    k = ExpressionClassifier.load(exported_tiny[0] / "expression_cnn.keras")
    assert k.backend == "keras" and k.labels == EXPRESSIONS
    faces = _faces(6, 48, 48)
    pk, pt = k.predict_proba(faces), clf.predict_proba(faces)
    assert pk.shape == (6, 7) and pk.dtype == np.float32
    np.testing.assert_allclose(pk, pt, atol=0.02)
    assert k.predict_proba([]).shape == (0, 7)


def test_load_none_uses_shipped_path(tflite_path, tmp_path, monkeypatch):
    missing = tmp_path / "shipped" / "expression_cnn.tflite"
    monkeypatch.setattr(inference, "SHIPPED_MODEL", missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        ExpressionClassifier.load()
    missing.parent.mkdir()
    shutil.copy(tflite_path, missing)
    assert ExpressionClassifier.load().path == missing
    # a folder means <folder>/expression_cnn.tflite
    assert ExpressionClassifier.load(missing.parent).path == missing


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tflite"):
        ExpressionClassifier.load(tmp_path / "nope.tflite")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\0")
    with pytest.raises(ValueError, match="unsupported model format"):
        ExpressionClassifier.load(bad)


def test_metadata_is_read_and_checked(tflite_path, tmp_path):
    copy = tmp_path / "m.tflite"
    shutil.copy(tflite_path, copy)
    assert ExpressionClassifier.load(copy).metadata == {}
    (tmp_path / "m.json").write_text(
        json.dumps({"labels": ["a"] * 7, "output": {"kind": "logits"}})
    )
    assert ExpressionClassifier.load(copy).labels == ("a",) * 7
    (tmp_path / "m.json").write_text(json.dumps({"labels": ["a", "b"]}))
    with pytest.raises(ValueError, match="2 labels"):
        ExpressionClassifier.load(copy)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ExpressionClassifier.load(copy)


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        (np.zeros((48, 48), np.uint8), "wrap a single crop in a list"),
        (np.zeros((2, 48, 48), np.float32), "uint8"),
        (np.zeros((2, 48, 48, 4), np.uint8), "channels"),
        ([np.zeros((0, 5), np.uint8)], "empty"),
        ([np.zeros((5, 5), np.int32)], "uint8"),
        ("not an image", "numpy array or a list"),
    ],
)
def test_bad_inputs_raise_value_error(clf, faces, message):
    with pytest.raises(ValueError, match=message):
        clf.predict_proba(faces)


def test_preprocessed_input_shape_checked(clf):
    with pytest.raises(ValueError, match="expected"):
        clf.predict_proba_preprocessed(np.zeros((1, 32, 32, 1), np.float32))
    assert clf.predict_proba_preprocessed(np.zeros((0, 48, 48, 1), np.float32)).shape == (0, 7)


def test_tflite_path_never_imports_tensorflow(tflite_path):
    code = (
        "import sys, numpy as np\n"
        "from ml.inference import ExpressionClassifier\n"
        f"c = ExpressionClassifier.load({str(tflite_path)!r})\n"
        "p = c.predict_proba([np.zeros((30, 30, 3), np.uint8)])\n"
        "assert p.shape == (1, 7), p.shape\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=120)
