"""ml.robustness (the corruption suite) and ml.calibration (ECE, NLL, temperature scaling)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
)
from ml.robustness import CORRUPTIONS, SEVERITIES, corrupt, format_markdown, run_suite
from tests.ml.ml_testdata import synthetic_faces


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return synthetic_faces(6, seed=3)[0]


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_the_faces_and_is_deterministic_for_a_seed(faces, name):
    previous = faces.astype(np.int64)
    for severity in SEVERITIES:
        out = corrupt(faces, name, severity, seed=5)
        assert out.dtype == np.uint8 and out.shape == faces.shape
        assert np.abs(out.astype(np.int64) - faces).mean() > 0.5  # visibly changed
        np.testing.assert_array_equal(out, corrupt(faces, name, severity, seed=5))
        assert not np.array_equal(out, previous)  # each severity is a different image
        previous = out
    assert corrupt(faces[:0], name, 1).shape == (0, 48, 48)


def test_severity_increases_the_damage_for_blur_and_low_resolution(faces):
    for name in ("defocus", "motion_blur", "low_resolution", "jpeg"):
        damage = [
            np.abs(corrupt(faces, name, s, seed=0).astype(np.int64) - faces).mean()
            for s in SEVERITIES
        ]
        assert damage == sorted(damage), name


def test_random_corruptions_depend_on_the_seed(faces):
    for name in ("low_light", "occlusion"):
        assert not np.array_equal(corrupt(faces, name, 2, seed=0), corrupt(faces, name, 2, seed=1))


def test_bad_corruption_arguments_are_clear_errors(faces):
    with pytest.raises(KeyError, match="unknown corruption 'fog'"):
        corrupt(faces, "fog", 1)
    with pytest.raises(ValueError, match="severity must be one of"):
        corrupt(faces, "jpeg", 4)
    with pytest.raises(ValueError, match="uint8"):
        corrupt(faces.astype(np.float32), "jpeg", 1)


def test_run_suite_scores_a_model_that_only_reads_clean_faces(faces):
    labels = np.arange(len(faces)) % 7
    lookup = {f.tobytes(): int(y) for f, y in zip(faces, labels, strict=True)}

    def knows_clean(batch):  # right on the clean faces, a confident "angry" otherwise
        ids = [lookup.get(f.tobytes(), 0) for f in batch]
        return np.eye(7, dtype=np.float32)[ids]

    res = run_suite({"m": knows_clean}, faces, labels, names=("jpeg", "defocus"), progress=False)
    rep = res["m"]
    assert rep["clean"]["accuracy"] == 1.0 and rep["clean"]["ece"] == 0.0
    assert set(rep["corruptions"]) == {"jpeg", "defocus"}
    assert set(rep["corruptions"]["jpeg"]) == {"1", "2", "3"}
    expected = float(np.mean(labels == 0))  # only the angry faces are still right
    assert rep["mean_accuracy"] == pytest.approx(expected)
    assert rep["mean_drop_points"] == pytest.approx(100 * (1 - expected))
    assert "ece_at_temperature" not in rep["clean"]
    # a temperature of 1 changes nothing; a fitted one is scored on every cell
    same = run_suite(
        {"m": knows_clean}, faces, labels, names=("jpeg",), progress=False, temperatures={"m": 1.0}
    )["m"]
    for cell in [same["clean"], *same["corruptions"]["jpeg"].values()]:
        assert cell["ece_at_temperature"] == pytest.approx(cell["ece"], abs=1e-6)
    soft = run_suite(
        {"m": knows_clean}, faces, labels, names=("jpeg",), progress=False, temperatures={"m": 5.0}
    )["m"]
    # one-hot answers made soft: confidence falls below 1, so the always-right clean ECE rises
    assert soft["clean"]["ece_at_temperature"] > 0.01 and soft["clean"]["ece"] == 0.0
    assert soft["middle_severity_ece_at_temperature"] == pytest.approx(
        soft["corruptions"]["jpeg"]["2"]["ece_at_temperature"]
    )
    table = format_markdown(res)
    assert table.count("\n| jpeg |") == 3 and "mean drop" in table
    with pytest.raises(KeyError):
        run_suite({"m": knows_clean}, faces, labels, names=("fog",), progress=False)


def test_ece_matches_a_hand_computed_example():
    # two faces at confidence 0.9 (one right), two at 0.6 (both right): bins 0.9 and 0.6
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]], np.float64)
    y = np.array([0, 1, 1, 1])
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.4
    assert expected_calibration_error(p, y, bins=15) == pytest.approx(0.4)
    rel = reliability_bins(p, y, bins=10)
    assert sum(rel["count"]) == 4 and rel["count"][8] == 2 and rel["count"][5] == 2
    assert rel["accuracy"][8] == 0.5 and rel["accuracy"][5] == 1.0
    assert negative_log_likelihood(p, y) == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.6])))
    with pytest.raises(ValueError):
        expected_calibration_error(p, np.array([0, 1, 2, 1]))


def test_a_calibrated_predictor_has_a_small_ece_and_temperature_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, (20000, 7))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(7, p=row) for row in p])  # labels drawn from the probabilities
    assert expected_calibration_error(p, y) < 0.02
    assert fit_temperature(p, y) == pytest.approx(1.0, abs=0.05)
    # the same model made overconfident by T = 0.5 is fitted back to about 2
    sharp = apply_temperature(p, 0.5)
    assert expected_calibration_error(sharp, y) > 0.05
    assert fit_temperature(sharp, y) == pytest.approx(2.0, rel=0.05)


def test_apply_temperature_keeps_the_argmax_and_t1_is_the_identity():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    for t in (0.3, 3.0):
        q = apply_temperature(p, t)
        assert (q.argmax(axis=1) == p.argmax(axis=1)).all()
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    assert apply_temperature(p, 3.0).max() < p.max()  # softer
    with pytest.raises(ValueError):
        apply_temperature(p, 0.0)


def test_cli_corruption_suite_writes_json_markdown_and_examples(
    tmp_path, exported_tiny, tiny_csv, capsys
):
    from ml.evaluate import main

    model = exported_tiny[0] / "expression_cnn.tflite"
    out = tmp_path / "eval"
    args = [str(model), "--data", str(tiny_csv), "--out", str(out), "--no-progress"]
    assert main([*args, "--corruptions", "jpeg,rotation"]) == 0
    stdout = capsys.readouterr().out
    assert "corruption suite on PrivateTest" in stdout and "| rotation |" in stdout
    report = json.loads((out / "robustness.json").read_text())
    assert report["split"] == "PrivateTest" and report["n"] == 28
    row = report["results"]["expression_cnn.tflite"]
    assert set(row["corruptions"]) == {"jpeg", "rotation"}
    assert 0 <= row["corruptions"]["jpeg"]["3"]["ece"] <= 1
    assert 0 <= row["middle_severity_ece_at_temperature"] <= 1  # the PublicTest temperature
    assert "at the PublicTest T=" in stdout
    assert (out / "robustness.md").read_text().startswith("| corruption | severity |")
    assert (out / "corruption_examples.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["robustness"]["seed"] == 0
    assert main([*args, "--corruptions", "fog"]) == 2
    assert "unknown corruption" in capsys.readouterr().err
    # Choosing between models: the suite on PublicTest (21 faces in the tiny file).
    assert main([*args, "--corruptions", "jpeg", "--suite-split", "PublicTest"]) == 0
    assert "corruption suite on PublicTest" in capsys.readouterr().out
    report = json.loads((out / "robustness.json").read_text())
    assert report["split"] == "PublicTest" and report["n"] == 21
