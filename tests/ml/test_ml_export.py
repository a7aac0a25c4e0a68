"""Export of a tiny model: files, metadata, Keras/LiteRT parity, failure handling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml.export import ParityError, _normalise_command, export_model, main, read_training_info
from ml.labels import EXPRESSIONS
from ml.preprocessing import PREPROCESSING

pytestmark = pytest.mark.slow


def test_export_writes_three_files_and_metadata(exported_tiny, tiny_csv):
    out, meta = exported_tiny
    for suffix in (".keras", ".tflite", ".json"):
        assert (out / f"expression_cnn{suffix}").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    on_disk = json.loads((out / "expression_cnn.json").read_text())
    assert on_disk == json.loads(json.dumps(meta))
    assert meta["labels"] == list(EXPRESSIONS)
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
    assert "swa_epochs" not in info
    (tmp_path / "summary.json").write_text(
        json.dumps({"swa_epochs": 6, "swa_public_test_accuracy": 0.68, "selected_model": "swa"})
    )
    info = read_training_info(tmp_path)
    assert info["swa_epochs"] == 6 and info["selected_model"] == "swa"
    assert info["swa_public_test_accuracy"] == pytest.approx(0.68)
    (tmp_path / "summary.json").write_text("{not json")
    assert "swa_epochs" not in read_training_info(tmp_path)
    assert read_training_info(tmp_path / "nothing") == {}
    assert _normalise_command("python -m ml.train --x") == "python -m ml.train --x"


def test_training_info_follows_the_warm_start_chain(tmp_path):
    base, fine = tmp_path / "base", tmp_path / "fine"
    base.mkdir()
    fine.mkdir()
    (base / "config.json").write_text(json.dumps({"command": "python -m ml.train", "arch": "cnn"}))
    (base / "timing.csv").write_text("epoch,seconds,finished_at\n0,10.0,1\n")
    (fine / "config.json").write_text(
        json.dumps(
            {"command": "python -m ml.train --init-from x", "init_from": str(base / "l.keras")}
        )
    )
    info = read_training_info(fine)
    assert info["initialised_from"]["model"] == str(base / "l.keras")
    assert info["initialised_from"]["arch"] == "cnn"
    assert info["initialised_from"]["training_seconds"] == pytest.approx(10.0)


def test_logit_adjustment_offsets_undo_class_weights():
    from ml.export import logit_adjustment_offsets
    from ml.train import class_weights

    labels = np.array([0] * 40 + [1] * 4 + [3] * 100 + [2, 4, 5, 6] * 10)
    offsets = logit_adjustment_offsets(labels, 0.5)
    w = class_weights(labels, 0.5)
    np.testing.assert_allclose(np.exp(-offsets), w, rtol=1e-6)
    # the rarest class gets the largest penalty, the most frequent the largest bonus
    assert offsets.argmin() == 1 and offsets.argmax() == 3
    np.testing.assert_array_equal(logit_adjustment_offsets(labels, 0.5, tau=0.0), 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        logit_adjustment_offsets(labels, 0.5, tau=-1)


def test_export_with_logit_adjustment_shifts_the_logits(tmp_path, tiny_keras_model, tiny_csv):
    import shutil

    import keras

    from ml.datasets import load_fer2013
    from ml.export import logit_adjustment_offsets
    from ml.inference import ExpressionClassifier

    run = tmp_path / "run"
    run.mkdir()
    model_path = Path(shutil.copy(tiny_keras_model, run / "best.keras"))
    (run / "config.json").write_text(json.dumps({"arch": "cnn", "class_weight_power": 0.5}))
    meta = export_model(
        model_path,
        tmp_path / "adj",
        data=tiny_csv,
        quantize="none",
        min_parity_samples=20,
        logit_adjustment=1.0,
    )
    offsets = logit_adjustment_offsets(load_fer2013(tiny_csv)["Training"].labels, 0.5)
    adj = meta["model"]["logit_adjustment"]
    assert adj["tau"] == 1.0 and adj["class_weight_power"] == 0.5
    np.testing.assert_allclose(adj["offsets"], offsets, atol=1e-6)
    faces = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    plain = keras.models.load_model(tiny_keras_model, compile=False)(faces).numpy()
    shipped = ExpressionClassifier.load(tmp_path / "adj" / "expression_cnn.keras")
    got = np.log(shipped.predict_proba_preprocessed(faces))
    expected = np.log(np.exp(plain + offsets) / np.exp(plain + offsets).sum(1, keepdims=True))
    np.testing.assert_allclose(got, expected, atol=2e-2)
    with pytest.raises(ValueError, match="class_weight_power"):
        export_model(
            tiny_keras_model,
            tmp_path / "no-config",
            data=tiny_csv,
            quantize="none",
            min_parity_samples=20,
            logit_adjustment=1.0,
        )


def test_export_with_a_logit_bias_adds_it_to_the_logits(tmp_path, tiny_keras_model, tiny_csv):
    import keras

    from ml.inference import ExpressionClassifier

    bias = {"angry": 0.5, "neutral": -0.25}
    meta = export_model(
        tiny_keras_model,
        tmp_path / "bias",
        data=tiny_csv,
        quantize="none",
        min_parity_samples=20,
        logit_bias=bias,
    )
    offsets = np.array([0.5, 0, 0, 0, 0, 0, -0.25], np.float32)
    assert meta["model"]["logit_bias"]["offsets"]["angry"] == 0.5
    faces = np.random.default_rng(1).random((3, 48, 48, 1), dtype=np.float32)
    plain = keras.models.load_model(tiny_keras_model, compile=False)(faces).numpy()
    got = np.log(
        ExpressionClassifier.load(
            tmp_path / "bias" / "expression_cnn.keras"
        ).predict_proba_preprocessed(faces)
    )
    expected = plain + offsets
    expected = expected - np.log(np.exp(expected).sum(1, keepdims=True))
    np.testing.assert_allclose(got, expected, atol=2e-3)
    with pytest.raises(ValueError, match="unknown labels"):
        export_model(
            tiny_keras_model,
            tmp_path / "bad",
            data=tiny_csv,
            quantize="none",
            min_parity_samples=20,
            logit_bias={"anger": 1.0},
        )


def test_fit_logit_bias_corrects_a_prior_shift_on_held_out_faces():
    from ml.calibration import fit_logit_bias

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 2000)
    logits = rng.normal(0, 1, (2000, 7))
    logits[np.arange(2000), labels] += 2.0
    logits[:, 6] += 1.0  # a model that favours neutral
    logits[:, 0] -= 0.8  # and neglects angry
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    before = (p.argmax(1) == labels).mean()
    offsets, accuracy = fit_logit_bias(p, labels, [0, 6], {0: 0.6, 6: 0.6})
    assert offsets[0] > 0 and offsets[6] < 0 and offsets[1:6].tolist() == [0] * 5
    assert accuracy > before
    with pytest.raises(ValueError, match="floors"):
        fit_logit_bias(p, labels, [0], {0: 1.0})


def test_selection_export_measures_no_private_test_score(tmp_path, tiny_keras_model, tiny_csv):
    meta = export_model(
        tiny_keras_model, tmp_path / "o", data=tiny_csv, min_parity_samples=20, selection=True
    )
    assert meta["metrics"]["selection"] is True
    assert "PrivateTest" not in meta["metrics"] and meta["metrics"]["PublicTest"]["n"] == 21
    # Parity still runs on PrivateTest (label-free agreement), with no accuracy recorded.
    parity = meta["parity"]
    assert parity["samples"] == 28 and parity["argmax_agreement"] >= 0.995
    assert "tflite_accuracy" not in parity and "keras_accuracy" not in parity
    on_disk = (tmp_path / "o" / "expression_cnn.json").read_text()
    assert "PrivateTest" in on_disk  # the parity split's name only
    assert '"accuracy"' in on_disk and on_disk.count('"accuracy"') == 1  # PublicTest's


def test_cli_selection_prints_no_private_test_score(monkeypatch, capsys):
    from ml import export

    seen = {}

    def fake_export(*args, **kwargs):
        seen.update(kwargs)
        public = {"n": 21, "accuracy": 0.5, "macro_f1": 0.4}
        return {
            "parity": {"argmax_agreement": 1.0, "samples": 28, "max_abs_probability_diff": 0.0},
            "metrics": {"selection": kwargs["selection"], "PublicTest": public},
            "latency_ms_per_face_batch1": {"tflite": 0.1},
        }

    monkeypatch.setattr(export, "export_model", fake_export)
    assert main(["model.keras", "--selection"]) == 0
    out = capsys.readouterr().out
    assert seen["selection"] is True
    assert (
        "PublicTest   accuracy 0.5000" in out and "PrivateTest  not measured (--selection)" in out
    )
