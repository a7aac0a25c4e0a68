"""Dataset loaders: FER2013 images and splits, FER+ crowd labels."""

from ml.datasets.fer2013 import (
    FER2013,
    SPLITS,
    DatasetError,
    Split,
    ferplus_unusable,
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
    "ferplus_unusable",
    "file_sha256",
    "load_fer2013",
    "load_ferplus",
    "resolve_fer2013_path",
]
