"""Synthetic FER2013 files for the ml tests (a uniquely named module, importable from tests).

The synthetic faces are class-dependent gradients plus noise: valid 48x48 ``uint8`` images in
the FER2013 csv layout (header ``emotion,pixels,Usage``).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

SIDE = 48
HEADER = "emotion,pixels,Usage"


def synthetic_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ``uint8`` ``(48, 48)`` images and ``int64`` labels cycling through 0..6."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    images = np.empty((n, SIDE, SIDE), np.uint8)
    for i, c in enumerate(labels):
        angle = c * np.pi / 7
        base = 127 + 100 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 6.0)
        images[i] = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def csv_row(label: int, image: np.ndarray, usage: str) -> str:
    return f"{label},{' '.join(map(str, image.reshape(-1).tolist()))},{usage}"


def write_fer_csv(path: Path, rows: list[str], *, header: str = HEADER) -> Path:
    """Write a FER2013-style csv (gzip-compressed when ``path`` ends in ``.gz``)."""
    text = "\n".join([header, *rows]) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def make_rows(counts: dict[str, int], seed: int = 0) -> list[str]:
    """Rows for each split, interleaved (Training, PublicTest, PrivateTest, Training, ...)."""
    rows: list[tuple[int, str]] = []
    for k, (usage, n) in enumerate(counts.items()):
        images, labels = synthetic_faces(n, seed + k)
        rows += [
            (i * 3 + k, csv_row(int(c), img, usage))
            for i, (img, c) in enumerate(zip(images, labels, strict=True))
        ]
    return [r for _, r in sorted(rows)]
