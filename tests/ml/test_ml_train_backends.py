"""Training without TensorFlow: the ``PyDataset`` input and a whole run on Keras's JAX back end.

A GPU machine may have JAX or PyTorch but no TensorFlow; ``KERAS_BACKEND=jax python -m ml.train``
must then train, average, resume and write ``.keras`` files that TensorFlow loads and reads the
same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml.train import array_batches, gpu_names
from tests.ml.ml_testdata import synthetic_faces

REPO_ROOT = Path(__file__).resolve().parents[2]


def _indexed(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces whose first pixel, target and weight all carry the row index."""
    x = np.zeros((n, 48, 48, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(n) / 1000.0
    y = np.zeros((n, 7), np.float32)
    y[:, 0] = np.arange(n)
    w = np.arange(n, dtype=np.float32)
    return x, y, w


def test_training_batches_are_a_fresh_permutation_each_epoch_with_rows_kept_together():
    x, y, w = _indexed(70)
    ds = array_batches(x, y, w, 16, train=True, seed=5, augment="basic", workers=1)
    assert len(ds) == 4  # 70 // 16: the incomplete batch is dropped

    def epoch() -> np.ndarray:
        rows = []
        for i in range(len(ds)):
            xb, yb, wb = ds[i]
            assert xb.dtype == np.float32 and xb.shape == (16, 48, 48, 1)
            assert 0.0 <= xb.min() and xb.max() <= 1.0
            np.testing.assert_array_equal(yb[:, 0], wb)  # target and weight of the same row
            rows.append(wb.astype(int))
        return np.concatenate(rows)

    first = epoch()
    assert len(set(first.tolist())) == 64  # no row twice within an epoch
    ds.on_epoch_end()
    second = epoch()
    assert len(set(second.tolist())) == 64 and not np.array_equal(first, second)
    again = array_batches(x, y, w, 16, train=True, seed=5, augment="basic", workers=1)
    np.testing.assert_array_equal(np.concatenate([again[i][2] for i in range(4)]), first)
    again.start_at(1)  # --resume at the second epoch draws the second epoch's batches
    np.testing.assert_array_equal(np.concatenate([again[i][2] for i in range(4)]), second)


def test_validation_batches_keep_order_and_the_last_batch_and_are_not_augmented():
    x, y, _ = _indexed(21)
    ds = array_batches(x, y, None, 8, train=False, seed=0)
    assert len(ds) == 3
    batches = [ds[i] for i in range(3)]
    assert all(len(b) == 2 for b in batches)  # no weights given, none returned
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_basic_augmentation_changes_the_faces():
    images, labels = synthetic_faces(16, seed=2)
    x = (images.astype(np.float32) / 255.0)[..., None]
    y = np.eye(7, dtype=np.float32)[labels]
    xb, _ = array_batches(x, y, None, 16, train=True, seed=1, augment="basic", workers=1)[0]
    assert xb.shape == x.shape and not np.allclose(np.sort(xb, axis=0), np.sort(x, axis=0))


def test_robust_batches_do_not_depend_on_the_thread_or_the_order_they_are_built_in():
    images, labels = synthetic_faces(48, seed=4)
    y = np.eye(7, dtype=np.float32)[labels]
    w = np.ones(len(y), np.float32)
    a = array_batches(images[..., None], y, w, 16, train=True, seed=3, augment="robust-v2")
    b = array_batches(images[..., None], y, w, 16, train=True, seed=3, augment="robust-v2")
    forward = [a[i][0] for i in range(3)]
    backward = [b[i][0] for i in reversed(range(3))][::-1]
    for fa, fb in zip(forward, backward, strict=True):
        assert fa.dtype == np.float32 and fa.shape == (16, 48, 48, 1)
        assert 0.0 <= fa.min() and fa.max() <= 1.0
        np.testing.assert_array_equal(fa, fb)
    other = array_batches(images[..., None], y, w, 16, train=True, seed=3, augment="robust")
    assert not np.array_equal(other[0][0], forward[0])


def test_array_batches_refuses_bad_settings():
    x, y, w = _indexed(10)
    with pytest.raises(ValueError, match="augment must be one of"):
        array_batches(x, y, w, 4, train=True, seed=0, augment="mixup")
    with pytest.raises(ValueError, match="fewer than one batch"):
        array_batches(x, y, w, 16, train=True, seed=0)


def test_gpu_names_asks_the_back_end_and_decides_the_precision(monkeypatch):
    import keras
    import tensorflow as tf

    import ml.train as train_module

    assert gpu_names() == []  # this CPU machine
    fake = [type("Device", (), {"name": "/physical_device:GPU:0"})()]
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: fake if kind == "GPU" else []
    )
    assert gpu_names() == ["/physical_device:GPU:0"]

    before = keras.mixed_precision.global_policy()
    try:
        assert train_module._set_precision("auto") == "mixed_float16"  # a GPU: float16
        assert train_module._set_precision("off") == "float32"
        monkeypatch.setattr(train_module, "gpu_names", lambda: [])
        assert train_module._set_precision("auto") in ("mixed_bfloat16", "float32")  # the CPU
    finally:
        keras.mixed_precision.set_global_policy(before)


_WITHOUT_TENSORFLOW = """
import runpy, sys


class BlockTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(name + " is blocked: this run must not need TensorFlow")
        return None


sys.meta_path.insert(0, BlockTensorFlow())
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""
"""Runs ``python THIS MODULE ARGS...`` as ``python -m MODULE ARGS...`` with TensorFlow unimportable,
as on a GPU machine that has only JAX or PyTorch."""

_READ_LOGITS = """
import json, sys
import numpy as np
from ml.modelio import load_keras_model
x = np.linspace(0, 1, 2 * 48 * 48, dtype="float32").reshape(2, 48, 48, 1)
print(json.dumps(np.asarray(load_keras_model(sys.argv[1])(x, training=False)).tolist()))
"""


@pytest.mark.slow
def test_a_run_on_the_jax_back_end_trains_averages_resumes_and_loads_in_tensorflow(
    tmp_path, tiny_csv
):
    import jax  # noqa: F401 - a [dev] dependency; this test must not pass without it

    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = tmp_path / "run"
    without_tf = tmp_path / "without_tf.py"
    without_tf.write_text(_WITHOUT_TENSORFLOW)
    args = [
        sys.executable, str(without_tf), "ml.train", "--arch", "cnn", "--width", "0.125",
        "--data", str(tiny_csv), "--out", str(run), "--batch-size", "16",
        "--warmup-epochs", "0", "--patience", "0", "--swa-start-epoch", "1",
        "--mixed-precision", "off", "--verbose", "0",
    ]  # fmt: skip
    subprocess.run([*args, "--epochs", "1"], check=True, cwd=REPO_ROOT, env=env, timeout=300)
    subprocess.run(
        [*args, "--epochs", "2", "--resume"], check=True, cwd=REPO_ROOT, env=env, timeout=300
    )
    config = json.loads((run / "config.json").read_text())
    assert config["hardware"].endswith("Keras back end jax")
    assert config["command"].startswith("python -m ml.train --arch cnn")
    assert len(config["resumed_with"]) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["swa_epochs"] == [1, 2]

    # The averaged model reads the same logits under JAX (where it was written) and TensorFlow.
    read = subprocess.run(
        [sys.executable, "-c", _READ_LOGITS, str(run / "swa.keras")],
        check=True, cwd=REPO_ROOT, env=env, timeout=300, capture_output=True, text=True,
    )  # fmt: skip
    under_jax = np.array(json.loads(read.stdout.strip().splitlines()[-1]))
    from ml.modelio import load_keras_model

    x = np.linspace(0, 1, 2 * 48 * 48, dtype="float32").reshape(2, 48, 48, 1)
    under_tf = np.asarray(load_keras_model(run / "swa.keras")(x, training=False))
    assert under_tf.shape == (2, 7)
    np.testing.assert_allclose(under_tf, under_jax, atol=1e-4)
