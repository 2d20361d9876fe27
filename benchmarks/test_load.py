"""How fast the four MNIST files load, against the floor set by zlib and NumPy.

Groups (compare rows by ``which``):

- ``load-gz``: the four ``.gz`` files into arrays. ``zlib`` only decompresses
  bytes already in memory (the floor: fastnet must stay within 1.1x of it);
  ``numpy`` is the usual ``gzip.open(...).read()`` + ``np.frombuffer``.
- ``load-raw``: the four decompressed files. ``numpy`` is ``np.fromfile``
  (fastnet must stay within 2x of it).
- ``load-scaled``: training images as float32 in [0, 1]; ``numpy`` reads then
  divides, fastnet fuses the conversion into the read.

Run with ``pytest benchmarks/test_load.py``; ``--benchmark-disable`` runs each once.
"""
import gzip
import zlib

import numpy as np
import pytest

from fastnet.data import read_idx

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
ROUNDS = dict(rounds=7, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="session")
def gz_paths(mnist_dir):
    return [mnist_dir / (name + ".gz") for name in FILES]


@pytest.fixture(scope="session")
def raw_paths(gz_paths, tmp_path_factory):
    """Decompressed copies of the four files, written once per session."""
    folder = tmp_path_factory.mktemp("mnist-raw")
    paths = []
    for gz_path, name in zip(gz_paths, FILES):
        (folder / name).write_bytes(gzip.decompress(gz_path.read_bytes()))
        paths.append(folder / name)
    return paths


def _from_gzip_open(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    header = 4 + 4 * data[3]
    return np.frombuffer(data, np.uint8, offset=header)


@pytest.mark.benchmark(group="load-gz")
@pytest.mark.parametrize("which", ["fastnet", "zlib", "numpy"])
def test_load_gz(benchmark, gz_paths, which):
    if which == "fastnet":
        arrays = benchmark.pedantic(lambda: [read_idx(p) for p in gz_paths], **ROUNDS)
    elif which == "zlib":
        compressed = [p.read_bytes() for p in gz_paths]
        arrays = benchmark.pedantic(lambda: [zlib.decompress(c, wbits=31) for c in compressed], **ROUNDS)
    else:
        arrays = benchmark.pedantic(lambda: [_from_gzip_open(p) for p in gz_paths], **ROUNDS)
    assert sum(len(a) for a in arrays) >= 70000


@pytest.mark.benchmark(group="load-raw")
@pytest.mark.parametrize("which", ["fastnet", "numpy"])
def test_load_raw(benchmark, raw_paths, which):
    if which == "fastnet":
        arrays = benchmark.pedantic(lambda: [read_idx(p) for p in raw_paths], **ROUNDS)
    else:
        arrays = benchmark.pedantic(lambda: [np.fromfile(p, np.uint8) for p in raw_paths], **ROUNDS)
    assert sum(len(a) for a in arrays) >= 70000


@pytest.mark.benchmark(group="load-scaled")
@pytest.mark.parametrize("which", ["fastnet", "numpy"])
def test_load_scaled(benchmark, raw_paths, which):
    path = raw_paths[0]
    if which == "fastnet":
        images = benchmark.pedantic(lambda: read_idx(path, scale=1 / 255), **ROUNDS)
    else:
        def numpy_scaled():
            return (np.fromfile(path, np.uint8, offset=16) / np.float32(255)).reshape(-1, 28, 28)
        images = benchmark.pedantic(numpy_scaled, **ROUNDS)
    assert images.dtype == np.float32 and images.shape == (60000, 28, 28)
