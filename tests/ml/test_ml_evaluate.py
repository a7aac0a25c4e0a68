"""ml.evaluate: TTA views, tables, plots and the CLI on the tiny exported model and a tiny peer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.evaluate import (
    PeerModel,
    evaluate,
    find_training_log,
    format_table,
    main,
    plot_training_curves,
    tta_views,
)
from ml.metrics import classification_report

LOG = "epoch,accuracy,loss,val_accuracy,val_loss\n0,0.3,1.8,0.35,1.7\n1,0.5,1.2,0.55,1.3\n"


def test_tta_views():
    images = np.arange(2 * 48 * 48, dtype=np.int64).reshape(2, 48, 48).astype(np.uint8)
    views = dict(tta_views(images, crop=4))
    assert len(views) == 12
    np.testing.assert_array_equal(views["full"], images)
    np.testing.assert_array_equal(views["full_flip"], images[:, :, ::-1])
    np.testing.assert_array_equal(views["bottom_right"], images[:, 4:, 4:])
    np.testing.assert_array_equal(views["centre"], images[:, 2:46, 2:46])
    assert all(v.shape[1:] in ((48, 48), (44, 44)) and v.dtype == np.uint8 for v in views.values())
    assert len(dict(tta_views(images, crop=0))) == 2
    with pytest.raises(ValueError):
        list(tta_views(images, crop=48))


def test_evaluate_with_a_perfect_and_a_constant_predictor(tiny_csv):
    from ml.datasets import load_fer2013

    data = load_fer2013(tiny_csv)
    # look up the true label of each face by its bytes: a perfect predictor.
    lookup = {
        data[s].images[i].tobytes(): data[s].labels[i]
        for s in ("PublicTest", "PrivateTest")
        for i in range(len(data[s]))
    }

    def perfect(faces):
        return np.eye(7, dtype=np.float32)[[lookup[f.tobytes()] for f in faces]]

    res = evaluate(perfect, data, progress=False)
    assert res["PrivateTest"]["accuracy"] == 1.0 and res["PublicTest"]["macro_f1"] == 1.0

    def happy(faces):
        return np.tile(np.eye(7, dtype=np.float32)[3], (len(faces), 1))

    res = evaluate(happy, data, tta=True, progress=False)
    labels = data["PrivateTest"].labels
    calibration = res["PrivateTest"].pop("calibration")
    assert res["PrivateTest"] == classification_report(labels, np.full_like(labels, 3))
    # always 100% sure of "happy": ECE is 1 - the share of happy faces
    assert calibration["ece"] == pytest.approx(1 - np.mean(labels == 3))


def test_format_table_mentions_every_row():
    rep = classification_report(np.array([0, 1, 2]), np.array([0, 1, 1]))
    text = format_table(
        {"model.tflite": {"PublicTest": rep, "PrivateTest": rep}, "peer": {"PrivateTest": rep}}
    )
    assert "model.tflite" in text and "peer: per class on PrivateTest" in text
    assert "0.6667" in text  # accuracy 2/3
    for name in ("angry", "disgust", "neutral"):
        assert name in text


def test_training_curves_png(tmp_path):
    (tmp_path / "log.csv").write_text(LOG)
    assert plot_training_curves(tmp_path / "log.csv", tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "bad.csv").write_text("epoch,loss\n0,1\n")
    assert not plot_training_curves(tmp_path / "bad.csv", tmp_path / "d.png")
    model = tmp_path / "run" / "best.keras"
    assert (
        find_training_log(model, {"model": {"source": str(tmp_path / "x.keras")}})
        == tmp_path / "log.csv"
    )
    assert find_training_log(model, {}) is None


@pytest.fixture(scope="module")
def tiny_peer(tmp_path_factory):
    """A mini-Xception stand-in: 64x64 gray input, softmax output, saved as legacy .hdf5."""
    import keras

    keras.utils.set_random_seed(11)
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(7)(x)
    outputs = keras.layers.Activation("softmax")(x)
    path = tmp_path_factory.mktemp("peer") / "emotion_model.hdf5"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.slow
def test_peer_model_preprocessing(tiny_peer):
    peer = PeerModel(tiny_peer)
    assert peer.input_size == 64
    p = peer.predict_proba(np.zeros((3, 48, 48), np.uint8))
    assert p.shape == (3, 7) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    # input is scaled to [-1, 1]: black -> -1
    x = np.full((1, 64, 64, 1), -1.0, np.float32)
    np.testing.assert_allclose(p[0], np.asarray(peer.model(x))[0], atol=1e-6)
    with pytest.raises(ValueError):
        peer.predict_proba(np.zeros((3, 48, 48), np.float32))


@pytest.mark.slow
def test_cli_writes_metrics_confusion_and_curves(
    tmp_path, exported_tiny, tiny_csv, tiny_peer, capsys
):
    model = exported_tiny[0] / "expression_cnn.tflite"
    (tmp_path / "log.csv").write_text(LOG)
    out = tmp_path / "eval"
    code = main(
        [
            str(model),
            "--data",
            str(tiny_csv),
            "--tta",
            "--peer",
            str(tiny_peer),
            "--out",
            str(out),
            "--log",
            str(tmp_path / "log.csv"),
            "--no-progress",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "expression_cnn.tflite+tta" in stdout and "peer:emotion_model.hdf5" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["results"]
    assert set(rows) == {
        "expression_cnn.tflite",
        "expression_cnn.tflite+tta",
        "peer:emotion_model.hdf5",
        "peer:emotion_model.hdf5+tta",
    }
    for splits in rows.values():
        assert set(splits) == {"PublicTest", "PrivateTest"}
        assert splits["PrivateTest"]["n"] == 28
        assert set(splits["PrivateTest"]["per_class"]["happy"]) == {
            "precision",
            "recall",
            "f1",
            "support",
        }
    # the exported metadata measured the same tflite: same plain accuracy
    assert rows["expression_cnn.tflite"]["PrivateTest"]["accuracy"] == pytest.approx(
        exported_tiny[1]["metrics"]["PrivateTest"]["accuracy"]
    )
    confusion = json.loads((out / "confusion.json").read_text())
    assert (
        confusion["expression_cnn.tflite"]["PrivateTest"]["matrix"]
        == rows["expression_cnn.tflite"]["PrivateTest"]["confusion_matrix"]
    )
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "curves.png" in pngs and "reliability.png" in pngs and len(pngs) == 2 + 4 * 2
    assert set(metrics["calibration"]["temperature"]) == set(rows)
    for splits in rows.values():
        assert 0 <= splits["PrivateTest"]["calibration"]["ece"] <= 1
    assert metrics["curves_png"] == "curves.png" and metrics["tta"]["views"] == 12


@pytest.mark.slow
def test_cli_reports_unloadable_peer(tmp_path, exported_tiny, tiny_csv, capsys):
    bad_peer = tmp_path / "emotion_model.hdf5"
    bad_peer.write_bytes(b"not an hdf5 file")
    out = tmp_path / "eval"
    code = main(
        [
            str(exported_tiny[0] / "expression_cnn.tflite"),
            "--data",
            str(tiny_csv),
            "--peer",
            str(bad_peer),
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "peer model not evaluated" in captured.err and "NOT evaluated" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert "could not load" in metrics["peer"]["peer_error"]
    assert list(metrics["results"]) == ["expression_cnn.tflite"]


def test_cli_bad_model_exits_2(tmp_path, tiny_csv, capsys):
    assert (
        main([str(tmp_path / "none.tflite"), "--data", str(tiny_csv), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_select_tta_views_ranks_subsets_by_accuracy():
    from ml.evaluate import select_tta_views

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, 30)
    truth = {images[i].tobytes(): labels[i] for i in range(30)}
    full = {img.tobytes() for img in images}

    def knows_only_the_full_face(faces):
        # right (confidently) on the unmodified face, a flat guess of class 0 on any other view
        out = np.full((len(faces), 7), 0.1, np.float32)
        out[:, 0] = 0.4
        for i, f in enumerate(faces):
            if f.tobytes() in full:
                out[i] = np.eye(7, dtype=np.float32)[truth[f.tobytes()]] * 0.99 + 0.01 / 7
        return out

    ranked = select_tta_views(knows_only_the_full_face, images, labels, 1, progress=False)
    assert len(ranked) == 12
    assert ranked[0] == (("full",), 1.0)
    assert ranked[1][1] == pytest.approx(float((labels == 0).mean()))
    ranked3 = select_tta_views(knows_only_the_full_face, images, labels, 3, progress=False)
    assert len(ranked3) == 220 and "full" in ranked3[0][0] and ranked3[0][1] == 1.0
    assert [acc for _, acc in ranked3] == sorted((acc for _, acc in ranked3), reverse=True)
    with pytest.raises(ValueError, match="k must be in 1..12"):
        select_tta_views(knows_only_the_full_face, images, labels, 13, progress=False)
    with pytest.raises(ValueError, match="labels"):
        select_tta_views(knows_only_the_full_face, images, labels[:3], 1, progress=False)


def test_cli_select_tta_views_uses_public_test_only(tmp_path, tiny_csv, exported_tiny, capsys):
    out = tmp_path / "sel"
    args = [str(exported_tiny[0] / "expression_cnn.tflite"), "--data", str(tiny_csv)]
    code = main([*args, "--select-tta-views", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    stdout = capsys.readouterr().out
    selection = json.loads((out / "metrics.json").read_text())["tta_selection"]
    assert selection["split"] == "PublicTest" and selection["k"] == 2
    best = selection["top"][0]
    assert len(best["views"]) == 2 and f"--tta-views {','.join(best['views'])}" in stdout
    accs = [t["accuracy"] for t in selection["top"]]
    assert accs == sorted(accs, reverse=True) and len(accs) == 5
    assert main([*args, "--select-tta-views", "0", "--out", str(out), "--no-progress"]) == 2
    assert "k must be in 1..12" in capsys.readouterr().err


def test_cli_fit_logit_bias_honours_the_recall_floor(tmp_path, tiny_csv, exported_tiny, capsys):
    args = [str(exported_tiny[0] / "expression_cnn.tflite"), "--data", str(tiny_csv)]
    args += ["--fit-logit-bias", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*args, "--recall-floor", "0"]) == 0
    out = capsys.readouterr().out
    assert "angry and neutral recall >= 0%" in out and "--logit-bias" in out
    # The floor reaches the fit: the tiny model cannot keep 95% recall of both classes.
    assert main([*args, "--recall-floor", "0.95"]) == 2
    assert "meet the recall floors {0: 0.95, 6: 0.95}" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused before the model is loaded
        main([*args, "--recall-floor", "1.5"])
    assert "--recall-floor must be in [0, 1]" in capsys.readouterr().err


def test_cli_selection_scores_public_test_only(tmp_path, tiny_csv, exported_tiny, capsys):
    out = tmp_path / "sel"
    args = [str(exported_tiny[0] / "expression_cnn.tflite"), "--data", str(tiny_csv)]
    code = main([*args, "--selection", "--corruptions", "jpeg", "--out", str(out), "--no-progress"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "PrivateTest" not in stdout
    assert "per class on PublicTest" in stdout and "corruption suite on PublicTest" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection"] is True
    assert set(metrics["results"]["expression_cnn.tflite"]) == {"PublicTest"}
    assert metrics["robustness"]["split"] == "PublicTest"
    assert not (out / "reliability.png").exists()
    assert set(json.loads((out / "confusion.json").read_text())["expression_cnn.tflite"]) == {
        "PublicTest"
    }
    with pytest.raises(SystemExit):  # a selection run never scores PrivateTest
        main([*args, "--selection", "--suite-split", "PrivateTest"])
    assert "--selection scores PublicTest only" in capsys.readouterr().err
