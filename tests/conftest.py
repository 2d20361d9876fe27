"""Shared fixtures: a seeded random generator and the local copy of MNIST."""
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _mnist_dir():
    """The folder holding the four MNIST files, or None.

    ``$FASTNET_DATA/mnist`` first (CI sets it), then ``../shared/data/mnist``
    beside the checkout, where these machines keep their offline copy.
    """
    candidates = []
    if os.environ.get("FASTNET_DATA"):
        candidates.append(Path(os.environ["FASTNET_DATA"]) / "mnist")
    candidates.append(REPO.parent / "shared" / "data" / "mnist")
    for path in candidates:
        if (path / "train-images-idx3-ubyte.gz").is_file():
            return path
    return None


MNIST_DIR = _mnist_dir()


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)


@pytest.fixture(scope="session")
def mnist_dir():
    if MNIST_DIR is None:
        pytest.skip("MNIST not found: set FASTNET_DATA to a folder holding mnist/")
    return MNIST_DIR


@pytest.fixture
def isolated_data_env(monkeypatch, tmp_path):
    """No FASTNET_* variable (CI sets FASTNET_OFFLINE=1), no system folder, and a
    default cache under tmp_path: load_dataset sees only what a test gives it."""
    from fastnet.data import datasets

    for var in ("FASTNET_DATA", "FASTNET_OFFLINE", "FASTNET_MIRRORS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", ())
    monkeypatch.setattr(datasets, "default_cache_dir", lambda: tmp_path / "default-cache")
