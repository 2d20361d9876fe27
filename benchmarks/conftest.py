"""Fixtures of the benchmarks: the MNIST folder, found as tests/conftest.py finds it."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir():
    """``$FASTNET_DATA/mnist``, else ``../shared/data/mnist`` beside the checkout; skip if neither."""
    candidates = [Path(os.environ["FASTNET_DATA"]) / "mnist"] if os.environ.get("FASTNET_DATA") else []
    candidates.append(REPO.parent / "shared" / "data" / "mnist")
    for path in candidates:
        if (path / "train-images-idx3-ubyte.gz").is_file():
            return path
    pytest.skip("MNIST not found: set FASTNET_DATA to a folder holding mnist/")
