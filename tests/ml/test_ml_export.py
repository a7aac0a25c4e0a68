"""Export of a tiny model: files, metadata, Keras/LiteRT parity, failure handling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.export import ParityError, _normalise_command, export_model, main, read_training_info
from ml.labels import EMOTIONS
from ml.preprocessing import PREPROCESSING

pytestmark = pytest.mark.slow


def test_export_writes_three_files_and_metadata(exported_tiny, tiny_csv):
    out, meta = exported_tiny
    for suffix in (".keras", ".tflite", ".json"):
        assert (out / f"expression_cnn{suffix}").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    on_disk = json.loads((out / "expression_cnn.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["labels"] == list(EMOTIONS)
    assert meta["input_size"] == 48
    assert meta["preprocessing"] == PREPROCESSING
    assert meta["input"]["shape"] == [None, 48, 48, 1] and meta["input"]["dtype"] == "float32"
    assert meta["output"]["kind"] == "logits" and meta["output"]["shape"] == [None, 7]
    assert meta["files"]["tflite"]["quantization"] == "float16"
    import hashlib

    assert meta["data"]["sha256"] == hashlib.sha256(tiny_csv.read_bytes()).hexdigest()
    for split, n in (("PublicTest", 21), ("PrivateTest", 28)):
        m = meta["metrics"][split]
        assert m["n"] == n and 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0
        assert len(m["confusion_matrix"]) == 7
    assert meta["parity"]["split"] == "PrivateTest" and meta["parity"]["samples"] == 28
    assert meta["latency_ms_per_face_batch1"]["tflite"] > 0


def test_parity_between_keras_and_tflite(exported_tiny, tiny_csv):
    """The acceptance rule itself: same argmax on >= 99.5% of test faces."""
    from ml.datasets import load_fer2013
    from ml.inference import ExpressionClassifier

    out, meta = exported_tiny
    assert meta["parity"]["argmax_agreement"] >= 0.995
    faces = load_fer2013(tiny_csv)["PrivateTest"].images
    k = ExpressionClassifier.load(out / "expression_cnn.keras").predict_proba(faces)
    t = ExpressionClassifier.load(out / "expression_cnn.tflite").predict_proba(faces)
    assert np.mean(k.argmax(1) == t.argmax(1)) >= 0.995
    np.testing.assert_allclose(k, t, atol=0.02)


def test_parity_failure_writes_nothing(tmp_path, tiny_keras_model, tiny_csv, monkeypatch):
    """A converter that swaps classes must fail the check and leave ``out`` untouched."""
    import keras

    from ml import export

    real_convert = export.convert_to_tflite

    def wrong_convert(model, quantize, calibration):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        kernel, bias = clone.get_layer("logits").get_weights()
        clone.get_layer("logits").set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])
        return real_convert(clone, quantize, calibration)

    monkeypatch.setattr(export, "convert_to_tflite", wrong_convert)
    out = tmp_path / "shipped"
    out.mkdir()
    (out / "expression_cnn.tflite").write_bytes(b"previous model")
    with pytest.raises(ParityError, match="agree on 0.00%"):
        export_model(tiny_keras_model, out, data=tiny_csv, min_parity_samples=20)
    assert [p.name for p in out.iterdir()] == ["expression_cnn.tflite"]
    assert (out / "expression_cnn.tflite").read_bytes() == b"previous model"


def test_cli_parity_failure_exits_1(monkeypatch, capsys):
    from ml import export

    def fail(*args, **kwargs):
        raise ParityError("agree on 90.00%")

    monkeypatch.setattr(export, "export_model", fail)
    assert main(["model.keras"]) == 1
    assert "parity check failed" in capsys.readouterr().err


def test_cli_exit_codes(tmp_path, tiny_keras_model, tiny_csv, capsys):
    # 28 PrivateTest faces < the 1,000 the CLI requires -> bad input, exit 2, nothing written.
    code = main([str(tiny_keras_model), "--out", str(tmp_path / "o"), "--data", str(tiny_csv)])
    assert code == 2
    assert "at least 1000 PrivateTest faces" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.keras"), "--data", str(tiny_csv)]) == 2


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")
def test_int8_and_none_quantization(tmp_path, tiny_keras_model, tiny_csv):
    for q in ("none", "int8"):
        meta = export_model(
            tiny_keras_model,
            tmp_path / q,
            data=tiny_csv,
            quantize=q,
            min_parity=0.0,
            min_parity_samples=20,
            calibration_samples=20,
        )
        assert meta["files"]["tflite"]["quantization"] == q
        if q == "none":
            assert meta["parity"]["argmax_agreement"] == 1.0


def test_training_info_from_run_folder(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"command": "/x/ml/train.py --arch cnn --epochs 3", "arch": "cnn", "data_sha256": "ab"}
        )
    )
    (tmp_path / "log.csv").write_text(
        "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.3,1.8,0.35,1.7\n1,0.5,1.2,0.55,1.3\n2,0.6,1.1,0.5,1.2\n"
    )
    (tmp_path / "timing.csv").write_text(
        "epoch,seconds,finished_at\n0,10.0,1\n1,12.0,2\n2,14.0,3\n"
    )
    info = read_training_info(tmp_path)
    assert info["command"] == "python -m ml.train --arch cnn --epochs 3"
    assert info["epochs_run"] == 3 and info["best_epoch"] == 2
    assert info["best_public_test_accuracy"] == pytest.approx(0.55)
    assert info["training_seconds"] == pytest.approx(36.0)
    assert read_training_info(tmp_path / "nothing") == {}
    assert _normalise_command("python -m ml.train --x") == "python -m ml.train --x"
