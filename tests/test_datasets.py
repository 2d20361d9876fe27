"""load_dataset: where it looks, which file names it accepts, and how it checks contents."""
import numpy as np
import pytest

from fastnet.data import (DATASETS, Dataset, DatasetError, DatasetNotFoundError, load_dataset,
                          read_idx, write_idx)
from fastnet.data import datasets

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def isolated(isolated_data_env):
    """Every test here sees only the data it makes (tests/conftest.py)."""


def fake_dataset(folder, rng, n_train=6, n_test=4, *, names=NAMES, suffix=".gz", labels=None):
    """Write a small MNIST-shaped data set into ``folder``; return its arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = Dataset(
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8) if labels is None else labels,
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    for name, array in zip(names, arrays):
        write_idx(folder / (name + suffix), array)
    return arrays


def assert_dataset_equal(got, want):
    assert isinstance(got, Dataset)
    for field, a, b in zip(Dataset._fields, got, want):
        np.testing.assert_array_equal(a, b, err_msg=field)
        assert a.dtype == np.uint8, field


def test_table_covers_every_file():
    for name, spec in DATASETS.items():
        assert [f.name for f in spec.files] == list(NAMES), name
        assert spec.mirrors and all(m.endswith("/") for m in spec.mirrors), name
        for f in spec.files:
            assert f.sha256 is not None or f.gz_md5 is not None, (name, f.name)
            assert f.sha256 is None or len(f.sha256) == 64
            assert f.gz_md5 is None or len(f.gz_md5) == 32


def test_mnist_table_matches_shared_sums(mnist_dir):
    sums = dict(line.split()[::-1] for line in (mnist_dir / "SHA256SUMS.raw").read_text().splitlines())
    assert {f.name: f.sha256 for f in DATASETS["mnist"].files} == sums


def test_real_mnist(mnist_dir):
    data = load_dataset("mnist", mnist_dir, verify=True)
    assert [a.shape for a in data] == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    assert all(a.dtype == np.uint8 for a in data)
    assert np.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                      974, 1009]


def test_explicit_data_dir(tmp_path, rng):
    want = fake_dataset(tmp_path / "mine", rng)
    assert_dataset_equal(load_dataset("mnist", tmp_path / "mine"), want)


def test_explicit_data_dir_without_the_files_is_an_error_not_a_fallback(tmp_path, rng, monkeypatch):
    fake_dataset(tmp_path / "env" / "mnist", rng)
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "env"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=f"data_dir {tmp_path / 'empty'} does not hold"):
        load_dataset("mnist", tmp_path / "empty")
    # A parent of the right folder gets a hint.
    with pytest.raises(DatasetNotFoundError, match=f"they are in {tmp_path / 'env' / 'mnist'}"):
        load_dataset("mnist", tmp_path / "env")


def test_search_order(tmp_path, rng, monkeypatch):
    system = tmp_path / "system"
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", (system,))
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "env"))
    cache = tmp_path / "cache"
    in_system = fake_dataset(system / "fashion-mnist", rng, n_train=1)
    load = lambda: load_dataset("fashion-mnist", cache_dir=cache, offline=True)  # noqa: E731
    assert_dataset_equal(load(), in_system)
    in_cache = fake_dataset(cache / "fashion-mnist", rng, n_train=2)
    assert_dataset_equal(load(), in_cache)
    in_env = fake_dataset(tmp_path / "env" / "fashion-mnist", rng, n_train=3)
    assert_dataset_equal(load(), in_env)
    explicit = fake_dataset(tmp_path / "explicit", rng, n_train=4)
    assert_dataset_equal(load_dataset("fashion-mnist", tmp_path / "explicit", offline=True), explicit)


def test_incomplete_folder_is_skipped(tmp_path, rng, monkeypatch):
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "env"))
    fake_dataset(tmp_path / "env" / "kmnist", rng)
    (tmp_path / "env" / "kmnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    want = fake_dataset(tmp_path / "cache" / "kmnist", rng)
    assert_dataset_equal(load_dataset("kmnist", cache_dir=tmp_path / "cache", offline=True), want)


@pytest.mark.parametrize("names, suffix", [
    (NAMES, ""),
    ([n.replace("-idx", ".idx") for n in NAMES], ".gz"),
    ([n.replace("-idx", ".idx") for n in NAMES], ""),
], ids=["raw", "dotted-gz", "dotted-raw"])
def test_file_name_variants(tmp_path, rng, names, suffix):
    want = fake_dataset(tmp_path / "d", rng, names=names, suffix=suffix)
    assert_dataset_equal(load_dataset("mnist", tmp_path / "d"), want)


def test_count_mismatch_names_the_files(tmp_path, rng):
    fake_dataset(tmp_path / "d", rng, n_train=6, labels=np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: holds 5 labels, but .*"
                                           r"train-images-idx3-ubyte.gz holds 6 images"):
        load_dataset("mnist", tmp_path / "d")


def test_label_out_of_range_names_the_file(tmp_path, rng):
    fake_dataset(tmp_path / "d", rng, n_train=3, labels=np.array([1, 10, 2], np.uint8))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: expected labels 0..9, "
                                           r"found 10 at index 1"):
        load_dataset("mnist", tmp_path / "d")


@pytest.mark.parametrize("images", [np.zeros((3, 28, 27), np.uint8), np.zeros((3, 784), np.uint8),
                                    np.zeros((3, 28, 28), np.int16)], ids=["27 wide", "flat", "int16"])
def test_wrong_images_name_the_file(tmp_path, rng, images):
    fake_dataset(tmp_path / "d", rng, n_train=3)
    write_idx(tmp_path / "d" / "train-images-idx3-ubyte.gz", images)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: expected uint8 images of shape Nx28x28"):
        load_dataset("mnist", tmp_path / "d")


def test_corrupt_file_raises_idx_format_error(tmp_path, rng):
    fake_dataset(tmp_path / "d", rng)
    path = tmp_path / "d" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=str(path)):
        load_dataset("mnist", tmp_path / "d")


def test_verify_checks_local_copies(tmp_path, rng):
    fake_dataset(tmp_path / "d", rng)
    load_dataset("mnist", tmp_path / "d")  # structure alone is fine
    with pytest.raises(DatasetError, match="checksum mismatch.*expected ba891046"):
        load_dataset("mnist", tmp_path / "d", verify=True)


def test_verify_accepts_raw_copies(tmp_path, mnist_dir):
    for name in NAMES:
        write_idx(tmp_path / name, read_idx(mnist_dir / (name + ".gz")))
    load_dataset("mnist", tmp_path, verify=True)


def test_unknown_name():
    with pytest.raises(ValueError, match="unknown data set 'cifar'; expected one of mnist, fashion-mnist, kmnist"):
        load_dataset("cifar")


def test_debian_fashion_mnist(monkeypatch):
    """Where Debian's dataset-fashion-mnist is installed, it is found and its checksums match."""
    system = datasets.Path("/usr/share/datasets")
    if not (system / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", (system,))
    data = load_dataset("fashion-mnist", offline=True, verify=True)
    assert [a.shape for a in data] == [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
