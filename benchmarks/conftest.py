"""Fixtures of the benchmarks: the MNIST folder (found as tests/conftest.py finds it),
the same thread count for every engine, and the machine facts a report needs.

Every side of a comparison runs with :data:`THREADS` threads: Numba's pool,
the BLAS under NumPy (threadpoolctl) and PyTorch's intra-op pool. The
environment is left alone (``OPENBLAS_CORETYPE`` and friends included);
``benchmarks/report.py`` is the place that cleans it for a measured run.
"""
import os
from pathlib import Path

import numba
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from benchmarks._common import THREADS

REPO = Path(__file__).resolve().parents[1]

#: Environment variables that change how OpenBLAS runs; shown in the JSON's machine_info.
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


@pytest.fixture(scope="session")
def mnist_dir():
    """``$FASTNET_DATA/mnist``, else ``../shared/data/mnist`` beside the checkout; skip if neither."""
    candidates = [Path(os.environ["FASTNET_DATA"]) / "mnist"] if os.environ.get("FASTNET_DATA") else []
    candidates.append(REPO.parent / "shared" / "data" / "mnist")
    for path in candidates:
        if (path / "train-images-idx3-ubyte.gz").is_file():
            return path
    pytest.skip("MNIST not found: set FASTNET_DATA to a folder holding mnist/")


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """MNIST's four uint8 arrays (a :class:`fastnet.data.Dataset`), loaded once."""
    from fastnet.data import load_dataset

    return load_dataset("mnist", mnist_dir, offline=True)


@pytest.fixture(scope="session", autouse=True)
def same_threads():
    """Numba and the BLAS get :data:`THREADS` threads for the whole session."""
    before = numba.get_num_threads()
    numba.set_num_threads(THREADS)
    try:
        with threadpool_limits(limits=THREADS):
            yield THREADS
    finally:
        numba.set_num_threads(before)


@pytest.fixture(scope="session")
def torch():
    """PyTorch with :data:`THREADS` intra-op threads; skips the test when it is not installed."""
    try:
        import torch
    except ImportError as exc:  # absent, or installed but broken
        pytest.skip(f"PyTorch not available ({exc}); pip install fastnet[torch]")
    torch.set_num_threads(THREADS)
    return torch


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record the threads, the BLAS threadpoolctl sees and the BLAS environment in the JSON."""
    import sys

    info = {
        "threads": THREADS,
        "numba": numba.__version__,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                 for lib in threadpool_info() if lib.get("user_api") == "blas"],
        "env": {name: os.environ[name] for name in BLAS_ENV if name in os.environ},
    }
    if "torch" in sys.modules:
        info["torch"] = sys.modules["torch"].__version__
    machine_info["fastnet"] = info
