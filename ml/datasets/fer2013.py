"""FER2013 and FER+ loaders.

FER2013 (Goodfellow et al., "Challenges in Representation Learning", 2013): a csv with header
``emotion,pixels,Usage``; ``pixels`` holds 2304 space-separated grey levels (row-major 48x48);
``Usage`` is ``Training`` (28,709 rows), ``PublicTest`` (3,589) or ``PrivateTest`` (3,589).

FER+ (Barsoum et al., ICMI 2016, arXiv:1608.01041): ``fer2013new.csv`` with 10 crowd votes per
image, in the same row order as FER2013. It is joined **by row position**, never by image name
(four names occur twice in that file).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.labels import EXPRESSIONS, NUM_CLASSES

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIDE = 48
ENV_FER2013 = "ENGAGEMENT_FER2013_CSV"
ENV_FERPLUS = "ENGAGEMENT_FERPLUS_CSV"

# FER+ column name -> FER2013 class id (see ../shared/data/ferplus/README.md).
_FERPLUS_TO_FER = {
    "anger": 0,
    "disgust": 1,
    "fear": 2,
    "happiness": 3,
    "sadness": 4,
    "surprise": 5,
    "neutral": 6,
}


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the row."""


@dataclass(frozen=True)
class Split:
    """One FER2013 split.

    Attributes:
        images: ``uint8`` ``(N, 48, 48)`` grey faces.
        labels: ``int64`` ``(N,)`` FER2013 class ids in ``0..6``.
        rows: ``int64`` ``(N,)`` 0-based data-row positions in the csv (header excluded), the
            key for joining FER+.
        soft_labels: ``float32`` ``(N, 7)`` FER+ vote shares over the 7 FER classes (rows sum
            to 1), or ``None`` when FER+ was not loaded.
    """

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    soft_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, keep: np.ndarray) -> Split:
        """The faces where ``keep`` (``bool`` ``(N,)``) is true, all fields subset alike."""
        return Split(
            images=self.images[keep],
            labels=self.labels[keep],
            rows=self.rows[keep],
            soft_labels=None if self.soft_labels is None else self.soft_labels[keep],
        )

    def class_counts(self) -> np.ndarray:
        """``int64`` ``(7,)`` number of images per class."""
        return np.bincount(self.labels, minlength=NUM_CLASSES)


@dataclass(frozen=True)
class FER2013:
    """FER2013 split into Training, PublicTest and PrivateTest, plus the file's sha256."""

    splits: dict[str, Split]
    sha256: str
    path: str

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]


def resolve_fer2013_path(path: str | os.PathLike | None = None) -> Path:
    """Return the FER2013 csv path from the argument or ``$ENGAGEMENT_FER2013_CSV``.

    Raises:
        DatasetError: no path given and the variable is unset, or the file does not exist.
    """
    raw = path or os.environ.get(ENV_FER2013)
    if not raw:
        raise DatasetError(
            f"no FER2013 csv given: pass a path or set ${ENV_FER2013} "
            "(for example ../shared/data/fer2013/fer2013.csv.gz)"
        )
    p = Path(raw).expanduser()
    if not p.is_file():
        raise DatasetError(f"FER2013 csv not found: {p}")
    return p


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (as stored, so of the ``.gz`` for a gzipped csv)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def load_fer2013(
    path: str | os.PathLike | None = None,
    *,
    ferplus_path: str | os.PathLike | None = None,
    limit: int | None = None,
) -> FER2013:
    """Load FER2013 from a ``.csv`` or ``.csv.gz`` file.

    Args:
        path: the csv; ``None`` reads ``$ENGAGEMENT_FER2013_CSV``.
        ferplus_path: optional FER+ ``fer2013new.csv``; when given, every split gets
            ``soft_labels`` from the crowd votes (``$ENGAGEMENT_FERPLUS_CSV`` is *not* read
            implicitly, so soft targets are always an explicit choice).
        limit: read at most this many data rows (for smoke runs).

    Returns:
        The three splits as ``uint8`` arrays and the file's sha256.

    Raises:
        DatasetError: missing file, wrong header, or a malformed row (wrong number of pixels,
            a value outside 0..255, an unknown ``Usage``, a label outside 0..6); the message
            gives the 1-based line number in the file.
    """
    p = resolve_fer2013_path(path)
    try:
        images, labels, usages = _read_fer2013_rows(p, limit)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        # gzip.BadGzipFile is an OSError; csv.Error covers NUL bytes and similar damage.
        raise DatasetError(f"{p}: cannot read the file: {exc}") from exc
    if not images:
        raise DatasetError(f"{p}: no data rows")
    all_images = np.stack(images)
    all_labels = np.asarray(labels, np.int64)
    all_usage = np.asarray(usages, np.int64)
    soft = load_ferplus(ferplus_path, expected_rows=len(labels) if limit is None else None)
    if soft is not None:
        soft = soft[: len(labels)]
    splits = {}
    for i, name in enumerate(SPLITS):
        idx = np.flatnonzero(all_usage == i)
        splits[name] = Split(
            images=all_images[idx],
            labels=all_labels[idx],
            rows=idx.astype(np.int64),
            soft_labels=None if soft is None else soft[idx],
        )
    return FER2013(splits=splits, sha256=file_sha256(p), path=str(p))


def _read_fer2013_rows(p: Path, limit: int | None) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Parse and validate the data rows; see :func:`load_fer2013` for the checks."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    usages: list[int] = []
    with _open_text(p) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["emotion", "pixels", "Usage"]:
            raise DatasetError(
                f"{p}: line 1: expected header 'emotion,pixels,Usage', got {header!r}"
            )
        for row_index, row in enumerate(reader):
            if limit is not None and row_index >= limit:
                break
            line = reader.line_num  # physical line in the file (1-based, header is line 1)
            if len(row) < 3:
                raise DatasetError(f"{p}: line {line}: expected 3 columns, got {len(row)}")
            try:
                label = int(row[0])
            except (ValueError, OverflowError):
                raise DatasetError(
                    f"{p}: line {line}: emotion {row[0]!r} is not an integer"
                ) from None
            if not 0 <= label < NUM_CLASSES:
                raise DatasetError(
                    f"{p}: line {line}: emotion {label} outside 0..{NUM_CLASSES - 1}"
                )
            usage = row[2].strip()
            if usage not in SPLITS:
                raise DatasetError(
                    f"{p}: line {line}: unknown Usage {usage!r}, expected one of {SPLITS}"
                )
            try:
                pixels = np.array(row[1].split(), dtype=np.int32)
            except (ValueError, OverflowError):
                raise DatasetError(
                    f"{p}: line {line}: pixels are not all integers in 0..255"
                ) from None
            if pixels.size != IMAGE_SIDE * IMAGE_SIDE:
                raise DatasetError(
                    f"{p}: line {line}: expected {IMAGE_SIDE * IMAGE_SIDE} pixels, got {pixels.size}"
                )
            if pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(f"{p}: line {line}: pixel values outside 0..255")
            images.append(pixels.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE))
            labels.append(label)
            usages.append(SPLITS.index(usage))
    return images, labels, usages


def _ferplus_votes(path: str | os.PathLike, columns: list[str]) -> np.ndarray:
    """``int64`` ``(rows, len(columns))`` vote counts of a FER+ csv; see :func:`load_ferplus`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"FER+ csv not found: {p}")
    with _open_text(p) as fh:
        reader = csv.DictReader(fh)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{p}: line 1: missing columns {sorted(missing)}")
        votes = []
        for row in reader:
            try:
                votes.append([int(row[c]) for c in columns])
            except (TypeError, ValueError):
                raise DatasetError(f"{p}: line {reader.line_num}: votes are not integers") from None
    return np.asarray(votes, np.int64).reshape(-1, len(columns))


def _check_rows(path, rows: int, expected_rows: int | None) -> None:
    if expected_rows is not None and rows != expected_rows:
        raise DatasetError(
            f"{Path(path).expanduser()}: {rows} rows, but FER2013 has {expected_rows}"
        )


def load_ferplus(
    path: str | os.PathLike | None, *, expected_rows: int | None = None
) -> np.ndarray | None:
    """Load FER+ votes as soft targets over the 7 FER2013 classes.

    Contempt, unknown and NF (not a face) votes are dropped; a row with no vote for any of the
    7 classes falls back to a uniform distribution, which carries no information for training.

    Args:
        path: ``fer2013new.csv``, or ``None`` to skip.
        expected_rows: when given, the number of data rows must match (row-position join).

    Returns:
        ``float32`` ``(rows, 7)`` vote shares in FER2013 class order, rows summing to 1; or
        ``None`` when ``path`` is ``None``.

    Raises:
        DatasetError: missing file, missing columns, non-integer votes, or a row count that
            does not match FER2013.
    """
    if path is None:
        return None
    names = sorted(_FERPLUS_TO_FER, key=_FERPLUS_TO_FER.get)  # FER2013 class order
    arr = _ferplus_votes(path, names).astype(np.float32)
    _check_rows(path, arr.shape[0], expected_rows)
    totals = arr.sum(axis=1, keepdims=True)
    arr = np.where(totals > 0, arr / np.maximum(totals, 1e-9), 1.0 / NUM_CLASSES)
    return arr.astype(np.float32)


def ferplus_unusable(path: str | os.PathLike, *, expected_rows: int | None = None) -> np.ndarray:
    """Which FER2013 rows FER+ annotators judged unusable for expression training.

    A row is unusable when its most-voted FER+ column is ``NF`` (not a face) or ``unknown``
    (ties go to the expression columns), or when it has no vote at all. Barsoum et al. 2016
    drop these faces from FER+ training; 320 of FER2013's 28,709 Training faces (1.1%).

    Args:
        path: ``fer2013new.csv``.
        expected_rows: when given, the number of data rows must match (row-position join).

    Returns:
        ``bool`` ``(rows,)``, ``True`` for unusable rows, in FER2013 row order.

    Raises:
        DatasetError: missing file, missing columns, non-integer votes, or a row count that
            does not match FER2013.
    """
    votes = _ferplus_votes(path, [*_FERPLUS_TO_FER, "contempt", "unknown", "NF"])
    _check_rows(path, votes.shape[0], expected_rows)
    best = votes.max(axis=1)
    # Unusable when no expression column (contempt included) reaches the top vote count.
    return (best == 0) | (votes[:, :-2].max(axis=1) < best)


__all__ = [
    "EXPRESSIONS",
    "SPLITS",
    "DatasetError",
    "FER2013",
    "Split",
    "ferplus_unusable",
    "load_fer2013",
    "load_ferplus",
]
