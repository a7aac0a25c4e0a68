"""Fixtures for the ml tests: a tiny synthetic FER2013 file and a tiny exported model.

Nothing here needs Django, the real data set or a trained model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ml.ml_testdata import make_rows, write_fer_csv

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory) -> Path:
    """A FER2013 csv with 56 Training, 21 PublicTest and 28 PrivateTest synthetic faces."""
    path = tmp_path_factory.mktemp("fer") / "tiny.csv"
    return write_fer_csv(path, make_rows({"Training": 56, "PublicTest": 21, "PrivateTest": 28}))


@pytest.fixture(scope="session")
def tiny_keras_model(tmp_path_factory) -> Path:
    """Our CNN at width 0.125 (about 0.1M parameters), random weights, saved as ``.keras``."""
    import keras

    from ml.models import build_model

    keras.utils.set_random_seed(7)
    model = build_model("cnn", width=0.125)
    path = tmp_path_factory.mktemp("tiny_model") / "best.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory, tiny_keras_model: Path, tiny_csv: Path) -> tuple[Path, dict]:
    """The tiny model exported by :func:`ml.export.export_model` (float16); (folder, metadata)."""
    from ml.export import export_model

    out = tmp_path_factory.mktemp("shipped")
    meta = export_model(
        tiny_keras_model, out, name="expression_cnn", data=tiny_csv, min_parity_samples=20
    )
    return out, meta
