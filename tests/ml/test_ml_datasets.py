"""FER2013 / FER+ loaders on tiny synthetic files (csv and csv.gz), including malformed rows."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from ml.datasets import SPLITS, DatasetError, load_fer2013, load_ferplus
from ml.datasets.fer2013 import ENV_FER2013
from tests.ml.ml_testdata import HEADER, csv_row, make_rows, synthetic_faces, write_fer_csv

COUNTS = {"Training": 7, "PublicTest": 4, "PrivateTest": 3}


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_load_splits_shapes_and_dtypes(tmp_path, suffix):
    path = write_fer_csv(tmp_path / f"fer{suffix}", make_rows(COUNTS))
    data = load_fer2013(path)
    assert set(data.splits) == set(SPLITS)
    for name, n in COUNTS.items():
        split = data[name]
        assert len(split) == n
        assert split.images.shape == (n, 48, 48) and split.images.dtype == np.uint8
        assert (
            split.labels.dtype == np.int64 and split.labels.min() >= 0 and split.labels.max() <= 6
        )
        assert split.soft_labels is None
    assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # rows are the 0-based data-row positions; together they cover every row exactly once.
    rows = np.sort(np.concatenate([data[s].rows for s in SPLITS]))
    assert rows.tolist() == list(range(sum(COUNTS.values())))


def test_csv_and_gz_give_identical_arrays(tmp_path):
    rows = make_rows(COUNTS)
    a = load_fer2013(write_fer_csv(tmp_path / "a.csv", rows))
    b = load_fer2013(write_fer_csv(tmp_path / "b.csv.gz", rows))
    for s in SPLITS:
        np.testing.assert_array_equal(a[s].images, b[s].images)
        np.testing.assert_array_equal(a[s].labels, b[s].labels)


def test_pixels_and_labels_round_trip(tmp_path):
    images, labels = synthetic_faces(3, seed=5)
    rows = [csv_row(int(c), img, "Training") for img, c in zip(images, labels, strict=True)]
    data = load_fer2013(write_fer_csv(tmp_path / "x.csv", rows))
    np.testing.assert_array_equal(data["Training"].images, images)
    np.testing.assert_array_equal(data["Training"].labels, labels)
    assert len(data["PublicTest"]) == 0 and data["PublicTest"].images.shape == (0, 48, 48)
    assert data["Training"].class_counts().tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_limit_reads_first_rows(tmp_path):
    path = write_fer_csv(tmp_path / "x.csv", make_rows(COUNTS))
    data = load_fer2013(path, limit=5)
    assert sum(len(data[s]) for s in SPLITS) == 5


def test_path_from_environment(tmp_path, monkeypatch):
    path = write_fer_csv(tmp_path / "x.csv", make_rows(COUNTS))
    monkeypatch.setenv(ENV_FER2013, str(path))
    assert len(load_fer2013()["Training"]) == COUNTS["Training"]


def test_missing_path_and_unset_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_FER2013, raising=False)
    with pytest.raises(DatasetError, match=ENV_FER2013):
        load_fer2013()
    with pytest.raises(DatasetError, match="not found"):
        load_fer2013(tmp_path / "nope.csv")


GOOD = "0," + " ".join(["7"] * 2304) + ",Training"


def _pixels(values):
    return " ".join(map(str, values))


MALFORMED = [
    pytest.param("3," + _pixels([1] * 2304), "expected 3 columns, got 2", id="too-few-columns"),
    pytest.param("", "expected 3 columns, got 0", id="blank-line"),
    pytest.param(
        "x," + _pixels([1] * 2304) + ",Training",
        "emotion 'x' is not an integer",
        id="emotion-not-int",
    ),
    pytest.param(
        "7," + _pixels([1] * 2304) + ",Training", "emotion 7 outside 0..6", id="emotion-7"
    ),
    pytest.param(
        "-1," + _pixels([1] * 2304) + ",Training", "emotion -1 outside 0..6", id="emotion-negative"
    ),
    pytest.param(
        "2," + _pixels([1] * 2304) + ",Validation", "unknown Usage 'Validation'", id="bad-usage"
    ),
    pytest.param(
        "2," + _pixels([1] * 2303) + " a,Training", "not all integers", id="pixel-not-int"
    ),
    pytest.param(
        "2," + _pixels([1] * 2303) + " 1.5,Training", "not all integers", id="pixel-float"
    ),
    pytest.param(
        "2," + _pixels([1] * 2303) + ",Training",
        "expected 2304 pixels, got 2303",
        id="too-few-pixels",
    ),
    pytest.param(
        "2," + _pixels([1] * 2305) + ",Training",
        "expected 2304 pixels, got 2305",
        id="too-many-pixels",
    ),
    pytest.param(
        "2," + _pixels([1] * 2303 + [256]) + ",Training", "outside 0..255", id="pixel-256"
    ),
    pytest.param(
        "2," + _pixels([-1] + [1] * 2303) + ",Training", "outside 0..255", id="pixel-negative"
    ),
    pytest.param(
        "2," + _pixels([1] * 2303 + [10**12]) + ",Training", "not all integers", id="pixel-overflow"
    ),
]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(("bad", "message"), MALFORMED)
def test_malformed_row_names_line(tmp_path, suffix, bad, message):
    # header is line 1, two good rows are lines 2-3, the bad row is line 4, one more good row.
    path = write_fer_csv(tmp_path / f"bad{suffix}", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(DatasetError) as info:
        load_fer2013(path)
    text = str(info.value)
    assert "line 4:" in text, text
    assert message in text, text
    assert str(path) in text


def test_bad_header_is_line_1(tmp_path):
    path = write_fer_csv(tmp_path / "x.csv", [GOOD], header="label,pixels,Usage")
    with pytest.raises(DatasetError, match="line 1: expected header"):
        load_fer2013(path)


def test_header_only_has_no_data_rows(tmp_path):
    with pytest.raises(DatasetError, match="no data rows"):
        load_fer2013(write_fer_csv(tmp_path / "x.csv", []))


def test_empty_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("")
    with pytest.raises(DatasetError, match="line 1"):
        load_fer2013(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER, GOOD, GOOD]) + "\n").encode())[:60])
    with pytest.raises(DatasetError, match="cannot read"):
        load_fer2013(path)


def test_utf8_bom_header_is_accepted(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("\ufeff" + HEADER + "\n" + GOOD + "\n", encoding="utf-8")
    assert len(load_fer2013(path)["Training"]) == 1


# ---------------------------------------------------------------- FER+

FERPLUS_HEADER = (
    "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
)


def _ferplus(path, rows):
    path.write_text("\n".join([FERPLUS_HEADER, *rows]) + "\n")
    return path


def test_ferplus_joined_by_row_position_with_duplicate_names(tmp_path):
    # 6 FER2013 rows: Training, PublicTest, Training, PrivateTest, Training, PublicTest.
    usages = ["Training", "PublicTest", "Training", "PrivateTest", "Training", "PublicTest"]
    images, _ = synthetic_faces(6)
    fer = write_fer_csv(
        tmp_path / "fer.csv",
        [csv_row(i % 7, img, u) for i, (img, u) in enumerate(zip(images, usages, strict=True))],
    )
    # FER+ votes: row i puts all 10 votes on class (i % 7) in FER order; names repeat (as the
    # real file does for 4 names), which must not matter.
    col_for_class = {
        0: "anger",
        1: "disgust",
        2: "fear",
        3: "happiness",
        4: "sadness",
        5: "surprise",
        6: "neutral",
    }
    cols = FERPLUS_HEADER.split(",")[2:]
    rows = []
    for i, u in enumerate(usages):
        votes = {c: 0 for c in cols}
        votes[col_for_class[(i + 3) % 7]] = 10
        name = "fer0000001.png" if i in (1, 4) else f"fer{i:07d}.png"
        rows.append(",".join([u, name, *(str(votes[c]) for c in cols)]))
    ferplus = _ferplus(tmp_path / "fer2013new.csv", rows)
    data = load_fer2013(fer, ferplus_path=ferplus)
    for name in SPLITS:
        split = data[name]
        assert split.soft_labels.shape == (len(split), 7) and split.soft_labels.dtype == np.float32
        np.testing.assert_allclose(split.soft_labels.sum(axis=1), 1.0, rtol=1e-6)
        expected = np.eye(7, dtype=np.float32)[(split.rows + 3) % 7]
        np.testing.assert_array_equal(split.soft_labels, expected)


def test_ferplus_drops_contempt_unknown_nf_and_normalises(tmp_path):
    rows = [
        "Training,a.png,4,2,0,0,0,0,0,2,1,1",  # neutral 4, happiness 2 -> 2/3, 1/3
        "Training,,0,0,0,0,0,0,0,0,0,10",  # not a face -> uniform
    ]
    soft = load_ferplus(_ferplus(tmp_path / "p.csv", rows))
    np.testing.assert_allclose(soft[0], [0, 0, 0, 1 / 3, 0, 0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(soft[1], np.full(7, 1 / 7), rtol=1e-6)


def test_ferplus_row_count_must_match(tmp_path):
    fer = write_fer_csv(tmp_path / "fer.csv", make_rows({"Training": 3}))
    ferplus = _ferplus(tmp_path / "p.csv", ["Training,a.png,10,0,0,0,0,0,0,0,0,0"] * 2)
    with pytest.raises(DatasetError, match="2 rows, but FER2013 has 3"):
        load_fer2013(fer, ferplus_path=ferplus)


def test_ferplus_bad_votes_name_line(tmp_path):
    rows = ["Training,a.png,10,0,0,0,0,0,0,0,0,0", "Training,b.png,x,0,0,0,0,0,0,0,0,0"]
    with pytest.raises(DatasetError, match="line 3: votes are not integers"):
        load_ferplus(_ferplus(tmp_path / "p.csv", rows))


def test_ferplus_missing_columns_and_file(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("Usage,Image name,neutral\nTraining,a.png,10\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load_ferplus(p)
    with pytest.raises(DatasetError, match="not found"):
        load_ferplus(tmp_path / "nope.csv")
    assert load_ferplus(None) is None
