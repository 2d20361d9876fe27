"""fastnet's data layer: IDX files in, NumPy arrays out.

- :func:`read_idx` / :func:`write_idx` read and write IDX files (raw or gzip),
  every IDX type, any rank; bad files raise :class:`IdxFormatError`.
- :func:`load_dataset` finds (or downloads and verifies) MNIST, Fashion-MNIST
  or KMNIST and returns its four arrays.

The names below load their modules on first use, so that importing
:mod:`fastnet.data.tables` (the data sets' table) loads neither NumPy nor
the Cython reader.
"""
import importlib

_WHERE = {
    "ChecksumError": "datasets",
    "IdxFormatError": "idx",
    "read_idx": "idx",
    "write_idx": "idx",
    "DATASETS": "tables",
    "Dataset": "datasets",
    "DatasetError": "datasets",
    "DatasetNotFoundError": "datasets",
    "load_dataset": "datasets",
}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__():
    return __all__
