"""fastnet's data layer: IDX files in, NumPy arrays out.

- :func:`read_idx` / :func:`write_idx` read and write IDX files (raw or gzip),
  every IDX type, any rank; bad files raise :class:`IdxFormatError`.
- :func:`load_dataset` finds (or downloads and verifies) MNIST, Fashion-MNIST
  or KMNIST and returns its four arrays.
"""
from fastnet.data.idx import IdxFormatError, read_idx, write_idx
from fastnet.data.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    load_dataset,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "IdxFormatError",
    "load_dataset",
    "read_idx",
    "write_idx",
]
