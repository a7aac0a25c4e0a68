"""Dataset loaders: FER2013 images and splits, FER+ crowd labels."""

from ml.datasets.fer2013 import (
    FER2013,
    SPLITS,
    DatasetError,
    Split,
    file_sha256,
    load_fer2013,
    load_ferplus,
    resolve_fer2013_path,
)

__all__ = [
    "SPLITS",
    "DatasetError",
    "FER2013",
    "Split",
    "file_sha256",
    "load_fer2013",
    "load_ferplus",
    "resolve_fer2013_path",
]
