"""Training smoke run on tiny synthetic data, resume, CLI parsing and the model registry."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ml.train import TrainConfig, _command_line, class_weights, make_targets, parse_args, train


def _log_rows(run):
    with open(run / "log.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_train_smoke_and_resume(tmp_path, tiny_csv):
    import keras

    run = tmp_path / "run"
    cfg = TrainConfig(
        arch="cnn",
        data=str(tiny_csv),
        out=str(run),
        epochs=1,
        batch_size=16,
        warmup_epochs=0,
        patience=0,
        mixed_precision="off",
        model_kwargs={"width": 0.125},
        verbose=0,
    )
    before = keras.mixed_precision.global_policy().name
    summary = train(cfg)
    for name in (
        "last.keras",
        "best.keras",
        "log.csv",
        "config.json",
        "summary.json",
        "timing.csv",
    ):
        assert (run / name).is_file(), name
    assert len(_log_rows(run)) == 1
    assert summary["epochs_run"] == 1 and summary["best_epoch"] == 1
    assert 0.0 <= summary["best_public_test_accuracy"] <= 1.0
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "cnn" and config["data_sha256"] == summary["data_sha256"]
    assert keras.mixed_precision.global_policy().name == before

    # --resume continues at epoch 2 instead of starting over.
    cfg.epochs = 2
    summary = train(cfg, resume=True)
    rows = _log_rows(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    resumed = json.loads((run / "config.json").read_text())
    assert resumed["command"] == config["command"] and len(resumed["resumed_with"]) == 1
    assert summary["epochs_run"] == 2
    with open(run / "timing.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["0", "1"]

    # the checkpoint loads for inference and gives probabilities
    from ml.inference import ExpressionClassifier

    clf = ExpressionClassifier.load(run / "best.keras")
    p = clf.predict_proba(np.zeros((2, 48, 48), np.uint8))
    assert p.shape == (2, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_train_rejects_too_little_data(tmp_path, tiny_csv):
    cfg = TrainConfig(
        data=str(tiny_csv), out=str(tmp_path / "r"), batch_size=1000, mixed_precision="off"
    )
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(cfg)


def test_parse_args_builds_config():
    cfg, resume = parse_args(
        [
            "--arch",
            "resnet50",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--weights",
            "none",
            "--resume",
        ]
    )
    assert (cfg.arch, cfg.epochs, cfg.batch_size, cfg.out) == ("resnet50", 3, 8, "runs/resnet50")
    assert cfg.model_kwargs == {} and resume is True
    cfg, _ = parse_args(["--width", "0.25"])
    assert cfg.model_kwargs == {"width": 0.25}
    cfg, _ = parse_args(["--arch", "resnet50", "--input-size", "64"])
    assert cfg.model_kwargs == {"input_size": 64}
    cfg, _ = parse_args(["--width", "0.4375", "--dropout", "0.1"])
    assert cfg.model_kwargs == {"width": 0.4375, "dropout": 0.1}
    # One teacher file stays a path; several make an ensemble teacher.
    cfg, _ = parse_args(["--teacher", "a.keras"])
    assert cfg.teacher == "a.keras"
    cfg, _ = parse_args(["--teacher", "a.keras", "b.keras"])
    assert cfg.teacher == ["a.keras", "b.keras"]


def test_dropout_reaches_the_model_and_is_range_checked(capsys):
    from ml.models import build_model

    cfg, _ = parse_args(["--width", "0.25", "--dropout", "0.1"])
    model = build_model(cfg.arch, **cfg.model_kwargs)
    rates = {layer.name: layer.rate for layer in model.layers if hasattr(layer, "rate")}
    assert rates["fc_drop"] == pytest.approx(0.1) and rates["s1_drop"] == pytest.approx(0.05)
    with pytest.raises(SystemExit):
        parse_args(["--dropout", "1.0"])
    assert "--dropout must be in [0, 1)" in capsys.readouterr().err


def test_input_size_is_refused_for_the_cnn(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--arch", "cnn", "--input-size", "64"])
    assert "--input-size applies to --arch resnet50 only" in capsys.readouterr().err


def test_command_line_is_runnable_form():
    assert _command_line(["/repo/ml/train.py", "--arch", "cnn"]) == "python -m ml.train --arch cnn"
    assert _command_line(["train.py", "--out", "a b"]) == "train.py --out 'a b'"
    assert _command_line([]) == ""


def test_class_weights_and_targets():
    labels = np.array([0, 0, 0, 0, 1])
    w = class_weights(labels, 0.5)
    assert w.shape == (7,) and w.dtype == np.float32
    assert w[1] / w[0] == pytest.approx(2.0)  # sqrt(4 / 1)
    assert w[labels].mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(class_weights(labels, 0.0)[labels], 1.0)
    soft = np.full((5, 7), 1 / 7, np.float32)
    t = make_targets(labels, soft, 0.5)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)
    assert t[0, 0] == pytest.approx(0.5 + 0.5 / 7)
    np.testing.assert_array_equal(
        make_targets(labels, None, 0.5), np.eye(7, dtype=np.float32)[labels]
    )


@pytest.mark.slow
def test_registry_builds_both_architectures():
    from ml.models import build_model

    cnn = build_model("cnn", width=0.125)
    assert cnn.input_shape == (None, 48, 48, 1) and cnn.output_shape == (None, 7)
    res = build_model("resnet50", input_size=32)
    assert res.input_shape == (None, 48, 48, 1) and res.output_shape == (None, 7)
    with pytest.raises(KeyError, match="known"):
        build_model("vgg")
    with pytest.raises(ValueError, match=">= 32"):
        build_model("resnet50", input_size=16)


@pytest.mark.slow
def test_mixed_precision_model_loads_as_float32(tmp_path):
    """Checkpoints trained under mixed_bfloat16 are rebuilt in float32 for export/inference."""
    import keras

    from ml.modelio import load_keras_model
    from ml.models import build_model

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(3)
        model = build_model("cnn", width=0.125)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"float32"}
    x = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    y16 = np.asarray(model(x, training=False), np.float32)
    y32 = np.asarray(loaded(x, training=False))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y16, atol=0.1)
    with pytest.raises(FileNotFoundError):
        load_keras_model(tmp_path / "missing.keras")


def test_parse_args_warm_start_and_swa():
    cfg, _ = parse_args(
        ["--init-from", "runs/a/last.keras", "--swa-start-epoch", "3", "--swa-lr", "1e-4"]
    )
    assert cfg.init_from == "runs/a/last.keras"
    assert (cfg.swa_start_epoch, cfg.swa_lr) == (3, 1e-4)
    assert cfg.swa_learning_rate() == 1e-4
    cfg, _ = parse_args(["--lr", "0.002"])
    assert cfg.swa_start_epoch == 0 and cfg.swa_learning_rate() == pytest.approx(0.0002)


def test_swa_start_epoch_beyond_the_run_is_refused(tmp_path, tiny_csv):
    cfg = TrainConfig(data=str(tiny_csv), out=str(tmp_path / "r"), epochs=2, swa_start_epoch=3)
    with pytest.raises(ValueError, match="swa_start_epoch must be in 0..2"):
        train(cfg)


def test_recompute_batchnorm_statistics_is_the_mean_of_batch_statistics():
    import keras

    from ml.train import recompute_batchnorm_statistics

    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Sequential([keras.Input((3,)), bn])
    bn.moving_mean.assign(np.full(3, 5.0, np.float32))
    bn.moving_variance.assign(np.full(3, 9.0, np.float32))
    x = np.random.default_rng(0).normal(2.0, 3.0, (40, 3)).astype(np.float32)
    assert recompute_batchnorm_statistics(model, x, batch_size=10) == 1
    batches = x.reshape(4, 10, 3)
    np.testing.assert_allclose(bn.moving_mean.numpy(), batches.mean(axis=1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batches.var(axis=1).mean(0), rtol=1e-4)
    assert bn.momentum == 0.99  # restored
    # the trainable weights are untouched
    np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(3, np.float32))


def test_swa_callback_averages_epochs_from_the_start_and_resumes(tmp_path):
    import keras

    from ml.train import _swa_callback

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    state = tmp_path / "swa_state.npz"
    cb = _swa_callback(state, start_epoch=2)
    cb.set_model(model)
    snapshots = []
    for epoch in range(3):  # epochs 1, 2, 3 (1-based); epoch 1 is before the start
        model.set_weights([np.full((2, 1), epoch + 1.0), np.array([10.0 * epoch])])
        snapshots.append(model.get_weights())
        cb.on_epoch_end(epoch)
    assert cb.epochs == [1, 2] and state.exists()
    kernel, bias = cb.average()
    np.testing.assert_allclose(kernel, np.full((2, 1), 2.5))
    np.testing.assert_allclose(bias, [15.0])

    # a resumed run reads the sum back and does not count an epoch twice
    resumed = _swa_callback(state, start_epoch=2)
    resumed.set_model(model)
    resumed.on_epoch_end(2)
    np.testing.assert_allclose(resumed.average()[0], np.full((2, 1), 2.5))
    model.set_weights([np.full((2, 1), 5.5), np.array([0.0])])
    resumed.on_epoch_end(3)
    np.testing.assert_allclose(resumed.average()[0], np.full((2, 1), 3.5))
    assert resumed.epochs == [1, 2, 3]
    assert _swa_callback(tmp_path / "none.npz", start_epoch=1).average() is None


@pytest.mark.slow
def test_init_from_copies_weights_and_refuses_another_width(tmp_path):
    import keras

    from ml.models import build_model
    from ml.train import load_initial_weights

    keras.utils.set_random_seed(1)
    source = build_model("cnn", width=0.125)
    source.save(tmp_path / "src.keras")
    keras.utils.set_random_seed(2)
    target = build_model("cnn", width=0.125)
    load_initial_weights(target, tmp_path / "src.keras")
    for a, b in zip(target.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="do not fit"):
        load_initial_weights(build_model("cnn", width=0.25), tmp_path / "src.keras")
    with pytest.raises(FileNotFoundError):
        load_initial_weights(target, tmp_path / "missing.keras")


@pytest.mark.slow
def test_warm_start_with_swa_writes_the_averaged_model(tmp_path, tiny_csv):
    base = dict(
        arch="cnn",
        data=str(tiny_csv),
        epochs=1,
        batch_size=16,
        warmup_epochs=0,
        patience=0,
        mixed_precision="off",
        model_kwargs={"width": 0.125},
        verbose=0,
    )
    first = train(TrainConfig(**base, out=str(tmp_path / "a")))
    run = tmp_path / "b"
    summary = train(
        TrainConfig(
            **{**base, "epochs": 3},
            out=str(run),
            init_from=first["last_model"],
            swa_start_epoch=2,
            lr=1e-3,
        )
    )
    assert summary["swa_epochs"] == [2, 3]
    assert (run / "swa.keras").is_file() and (run / "swa_state.npz").is_file()
    assert 0.0 <= summary["swa_public_test_accuracy"] <= 1.0
    expected = (
        summary["swa_model"]
        if summary["swa_public_test_accuracy"] > summary["best_public_test_accuracy"]
        else summary["best_model"]
    )
    assert summary["selected_model"] == expected
    with pytest.raises(ValueError, match="do not fit"):
        train(
            TrainConfig(
                **{**base, "model_kwargs": {"width": 0.25}},
                out=str(tmp_path / "c"),
                init_from=first["last_model"],
            )
        )
