"""load_dataset: where it looks, which file names it accepts, and how it checks contents."""
import dataclasses
import os

import numpy as np
import pytest

from fastnet import cli
from fastnet.data import (DATASETS, ChecksumError, Dataset, DatasetError, DatasetNotFoundError,
                          load_dataset, read_idx, write_idx)
from fastnet.data import datasets
from fastnet.model import MLP

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
    load_dataset("mnist", tmp_path / "d")  # data of one's own in MNIST's format: not checked
    with pytest.raises(ChecksumError, match="checksum mismatch: not mnist's train-images-idx3-ubyte "
                                            r"\(SHA-256 of the decompressed file: expected ba891046"):
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
    # verified by default too; the stamps go to the cache, as the system folder is read-only
    load_dataset("fashion-mnist", offline=True)
    stamps = datasets._read_stamps(datasets.default_cache_dir() / datasets.STAMPS)
    assert [stamps[str(system / "fashion-mnist" / (f.name + ".gz"))]["sha256"] for f in
            DATASETS["fashion-mnist"].files] == [f.sha256 for f in DATASETS["fashion-mnist"].files]


# --- known data sets verified on first use (issue 15, item 10) ---------------------------------


IDX_SHA256 = datasets._idx_sha256  # as it is, for the fixtures (`hashes` counts its calls)


@pytest.fixture
def as_known(monkeypatch):
    """Make the files of a small fake data set the table's own: ``as_known(folder, name)`` sets
    ``name``'s checksums to those files' and its counts to theirs; returns the checksums."""
    def make(folder, name="mnist"):
        arrays = [read_idx(folder / (n + ".gz")) for n in NAMES]
        sums = [IDX_SHA256(a) for a in arrays]
        spec = DATASETS[name]
        files = tuple(dataclasses.replace(f, sha256=h) for f, h in zip(spec.files, sums))
        monkeypatch.setitem(datasets.DATASETS, name, dataclasses.replace(
            spec, files=files, counts=(len(arrays[0]), len(arrays[2]))))
        return sums
    return make


@pytest.fixture
def hashes(monkeypatch):
    """The arrays :func:`datasets._idx_sha256` hashes, one list per load."""
    calls = []
    real = datasets._idx_sha256
    monkeypatch.setattr(datasets, "_idx_sha256", lambda a: calls.append(a.shape) or real(a))
    return calls


def test_idx_sha256_is_the_decompressed_files(mnist_dir):
    """The checksum is computed from the arrays read, as the table's: of the uncompressed file."""
    for spec in DATASETS["mnist"].files:
        assert datasets._idx_sha256(read_idx(mnist_dir / (spec.name + ".gz"))) == spec.sha256


def test_known_files_are_hashed_once(tmp_path, rng, as_known, hashes):
    fake_dataset(tmp_path / "d", rng)
    sums = as_known(tmp_path / "d")
    cache = tmp_path / "cache"
    load_dataset("mnist", tmp_path / "d", cache_dir=cache)
    assert len(hashes) == 4
    stamps = datasets._read_stamps(cache / datasets.STAMPS)
    assert [stamps[str((tmp_path / "d" / (n + ".gz")).resolve())]["sha256"] for n in NAMES] == sums
    load_dataset("mnist", tmp_path / "d", cache_dir=cache)
    assert len(hashes) == 4  # the stamps stood for the files
    # a file touched, or replaced by another of the same size and time, is hashed again
    path = tmp_path / "d" / (NAMES[1] + ".gz")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    load_dataset("mnist", tmp_path / "d", cache_dir=cache)
    assert len(hashes) == 5


def test_a_changed_file_is_refused_though_it_was_verified(tmp_path, rng, as_known):
    fake_dataset(tmp_path / "d", rng)
    as_known(tmp_path / "d")
    load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    path = tmp_path / "d" / (NAMES[2] + ".gz")
    images = read_idx(path)
    images[0, 0, 0] ^= 1
    write_idx(path, images)
    with pytest.raises(ChecksumError, match=f"{path}: checksum mismatch: not mnist's t10k-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")


def test_files_of_another_data_set_are_named(tmp_path, rng, as_known, monkeypatch):
    """Fashion-MNIST's files in a folder of MNIST: the error says whose they are."""
    fake_dataset(tmp_path / "mnist", rng)
    as_known(tmp_path / "mnist", "fashion-mnist")
    monkeypatch.setitem(datasets.DATASETS, "mnist", dataclasses.replace(
        DATASETS["mnist"], counts=DATASETS["fashion-mnist"].counts))
    with pytest.raises(ChecksumError, match="not mnist's train-images-idx3-ubyte .*expected ba891046.*; "
                                            "it is fashion-mnist's train-images-idx3-ubyte$") as info:
        load_dataset("mnist", tmp_path / "mnist", cache_dir=tmp_path / "cache")
    assert info.value.belongs_to == ("fashion-mnist", "train-images-idx3-ubyte")


def test_files_in_a_searched_folder_are_verified_too(tmp_path, rng, as_known, monkeypatch):
    fake_dataset(tmp_path / "env" / "mnist", rng)
    as_known(tmp_path / "env" / "mnist")
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "env"))
    load_dataset("mnist", offline=True)
    write_idx(tmp_path / "env" / "mnist" / (NAMES[3] + ".gz"), rng.integers(0, 10, 4, dtype=np.uint8))
    with pytest.raises(ChecksumError, match="not mnist's t10k-labels-idx1-ubyte"):
        load_dataset("mnist", offline=True)


def test_own_data_in_a_known_format_is_not_verified(tmp_path, rng, hashes):
    """Files with other sample counts than the data set's are data of one's own: read, not hashed."""
    fake_dataset(tmp_path / "d", rng)
    load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    assert hashes == [] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("how", ["verify=False", "FASTNET_VERIFY=0"])
def test_verification_can_be_turned_off(tmp_path, rng, as_known, hashes, monkeypatch, how):
    fake_dataset(tmp_path / "d", rng)
    as_known(tmp_path / "d")
    write_idx(tmp_path / "d" / (NAMES[1] + ".gz"), rng.integers(0, 10, 6, dtype=np.uint8))  # not the table's
    if how == "FASTNET_VERIFY=0":
        monkeypatch.setenv("FASTNET_VERIFY", "0")
        load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
        with pytest.raises(ChecksumError):  # an explicit verify=True wins over the variable
            load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache", verify=True)
    else:
        load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache", verify=False)
        assert hashes == []


def test_an_unwritable_cache_costs_a_hash_not_an_error(tmp_path, rng, as_known, hashes):
    """The stamps live in the cache root; where it cannot be written (here it is a file, which
    stops root too), every load hashes the files again and nothing fails."""
    fake_dataset(tmp_path / "d", rng)
    as_known(tmp_path / "d")
    (tmp_path / "cache").write_text("not a folder")
    for _ in range(2):
        load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    assert len(hashes) == 8


def test_a_read_only_data_folder_is_verified_and_stamped_in_the_cache(tmp_path, rng, as_known, hashes):
    fake_dataset(tmp_path / "d", rng)
    as_known(tmp_path / "d")
    (tmp_path / "d").chmod(0o555)
    try:
        for _ in range(2):
            load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    finally:
        (tmp_path / "d").chmod(0o755)
    assert len(hashes) == 4
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == sorted(n + ".gz" for n in NAMES)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"x": 1}', b"\xff" * 10,
                                     b'{"PATH": {"stat": "no", "sha256": 3}}'])
def test_a_damaged_stamps_file_is_ignored(tmp_path, rng, as_known, hashes, content):
    fake_dataset(tmp_path / "d", rng)
    as_known(tmp_path / "d")
    key = str((tmp_path / "d" / (NAMES[0] + ".gz")).resolve())
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / datasets.STAMPS).write_bytes(content.replace(b"PATH", key.encode()))
    load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    assert len(hashes) == 4
    load_dataset("mnist", tmp_path / "d", cache_dir=tmp_path / "cache")
    assert len(hashes) == 4  # rewritten whole


FASHION = datasets.Path("/usr/share/datasets/fashion-mnist")


def test_debian_fashion_mnist_in_a_folder_of_mnist(tmp_path, monkeypatch, capsys):
    """Issue 15, item 10: Fashion-MNIST's files placed in the mnist folder were used silently."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("dataset-fashion-mnist is not installed")
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    for path in FASHION.glob("*-ubyte.gz"):
        (tmp_path / "data" / "mnist" / path.name).symlink_to(path)
    monkeypatch.setenv("FASTNET_DATA", str(tmp_path / "data"))
    with pytest.raises(ChecksumError, match="it is fashion-mnist's train-images-idx3-ubyte"):
        load_dataset("mnist", offline=True)
    code = cli.main(["--epochs", "1", "--no-save", "--threads", "1", "--offline"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"fastnet-train: error: {tmp_path / 'data' / 'mnist' / 'train-images-idx3-ubyte.gz'}: "
                          "checksum mismatch: not mnist's train-images-idx3-ubyte")
    assert err.strip().endswith("it is fashion-mnist's train-images-idx3-ubyte: pass --dataset fashion-mnist, "
                                "or put mnist's own files there")


# --- a set with no samples (issue 15, item 10) --------------------------------------------------


@pytest.mark.parametrize("n_train, n_test, part, file", [(0, 4, "training", NAMES[0]),
                                                         (6, 0, "test", NAMES[2])])
def test_a_set_with_no_samples_is_refused(tmp_path, rng, n_train, n_test, part, file):
    fake_dataset(tmp_path / "d", rng, n_train=n_train, n_test=n_test)
    with pytest.raises(DatasetError, match=f"{file}.gz: holds 0 images; expected at least one {part} sample"):
        load_dataset("mnist", tmp_path / "d")


@pytest.mark.parametrize("n_train, n_test", [(0, 4), (6, 0)])
def test_the_commands_refuse_a_set_with_no_samples(tmp_path, rng, capsys, n_train, n_test):
    """0 test samples printed "n/a" with exit 0; 0 training samples: exit 1, like an empty .npz."""
    fake_dataset(tmp_path / "d", rng, n_train=n_train, n_test=n_test)
    MLP([784, 4, 10]).save(tmp_path / "m.npz")
    for entry, argv in [(cli.main, ["--data", str(tmp_path / "d"), "--epochs", "1", "--no-save",
                                    "--threads", "1", "--hidden", "4"]),
                        (cli.eval_main, [str(tmp_path / "m.npz"), "--data", str(tmp_path / "d")])]:
        code = entry(argv)
        out, err = capsys.readouterr()
        assert code == 1, (argv, out, err)
        assert len(err.strip().splitlines()) == 1 and "holds 0 images" in err and "n/a" not in out, err
