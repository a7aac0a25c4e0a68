"""inference_worker.quality_curves: the gate's measurement on a tiny synthetic FER2013 file."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference_worker import quality_curves
from inference_worker.quality import QualityGate
from ml.labels import EXPRESSIONS
from tests.inference_worker.worker_fakes import TINY_CLASSIFIER
from tests.ml.ml_testdata import make_rows, write_fer_csv

NEUTRAL, SAD = EXPRESSIONS.index("neutral"), EXPRESSIONS.index("sad")


def _table(**cols):
    n = len(cols["set"])
    base = {
        "face_px": np.full(n, 40.0),
        "sharpness": np.full(n, 500.0),
        "snr": np.full(n, 10.0),
        "index": np.arange(n),
        "label": np.full(n, NEUTRAL),
        "pred": np.full(n, NEUTRAL),
    }
    table = base | {k: np.asarray(v) for k, v in cols.items()}
    table["correct"] = table["pred"] == table["label"]
    return table


def test_gate_issues_and_the_reports_split_faces_by_the_gate():
    table = _table(
        set=["clean:0", "jpeg:1", "jpeg:1", "defocus:3", "defocus:3"],
        face_px=[40.0, 40.0, 10.0, 40.0, 40.0],
        sharpness=[500.0, 500.0, 500.0, 20.0, 500.0],
        pred=[NEUTRAL, NEUTRAL, SAD, SAD, SAD],
    )
    nan = np.full(5, np.nan)
    issues = quality_curves.gate_issues(QualityGate(), table, nan, nan)
    assert issues.tolist() == ["", "", "too_small", "blurred", ""]
    rep = quality_curves._gate_report(table, issues)
    corrupted = rep["corrupted sets"]
    assert (corrupted["faces"], corrupted["assessed"]) == (4, 2)
    assert corrupted["accuracy_assessed"] == 0.5 and corrupted["accuracy_unassessed"] == 0.0
    assert corrupted["issues"] == {"too_small": 1, "turned_away": 0, "too_dark": 0, "blurred": 1}
    neutral = quality_curves._neutral_report(table, issues)
    assert neutral["per_set"]["clean:0"]["neutral_read_sad"] == 0.0
    assert neutral["per_set"]["defocus:3"]["neutral_read_sad"] == 1.0
    assert neutral["all_sets"] == {"all": 0.6, "assessed": pytest.approx(1 / 3), "unassessed": 1.0}


def test_cli_writes_curves_gate_figures_and_tables(tmp_path, capsys):
    csv = write_fer_csv(
        tmp_path / "fer.csv", make_rows({"Training": 7, "PublicTest": 14, "PrivateTest": 14})
    )
    out = tmp_path / "quality"
    args = ["--model", str(TINY_CLASSIFIER), "--data", str(csv), "--out", str(out), "--no-progress"]
    assert quality_curves.main(args) == 0
    report = json.loads((out / "quality.json").read_text())
    assert report["gate"]["min_face_px"] == QualityGate().min_face_px
    for split in ("PublicTest", "PrivateTest"):
        curves = report["curves"][split]
        # the clean 40-px box and the three low_resolution widths, largest first
        assert [round(b["face_px"], 1) for b in curves["size"]] == [40.0, 20.0, 13.3, 10.0]
        assert sum(b["n"] for b in curves["snr"]) == 14 * 25  # clean + 24 corrupted sets
        gate = report["gate_on_fer2013"][split]["all sets"]
        assert gate["faces"] == 14 * 25
        assert gate["assessed"] + sum(gate["issues"].values()) == gate["faces"]
        assert len(report["neutral_read_as_sad"][split]["per_set"]) == 25
        table = np.load(out / f"table_{split}.npz")
        assert len(table["set"]) == 14 * 25 and "sharpness" in table
    assert (out / "quality_curves.png").stat().st_size > 1000
    assert "neutral faces read sad" in capsys.readouterr().out
    assert quality_curves.main([*args, "--data", str(tmp_path / "missing.csv")]) == 2
