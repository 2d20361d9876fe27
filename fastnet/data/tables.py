"""The data sets fastnet knows: for each, its four files with their checksums,
the mirrors to download them from, and the names of its classes.

Plain data, importing nothing heavy: :mod:`fastnet.config` and the command
line read the names from here before NumPy is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The four files of a data set, in the order of :class:`Dataset`'s fields.
ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set and how to recognise a good copy.

    ``name`` is the distribution's file name without ``.gz``; mirrors serve
    ``name + ".gz"``. ``sha256`` is the SHA-256 of the decompressed IDX bytes
    (it does not depend on how the file was compressed), ``gz_md5`` the MD5 of
    the ``.gz`` file as its publisher distributes it. A download is accepted
    if it matches ``sha256`` or, when that is unknown, ``gz_md5``.
    """

    name: str
    sha256: str | None
    gz_md5: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files (train images, train labels, test images, test labels),
    mirrors, the names of its classes (label ``i`` is ``classes[i]``), the shape of
    an image, and how many samples its training and test files hold (``counts``)."""

    files: tuple[FileSpec, FileSpec, FileSpec, FileSpec]
    mirrors: tuple[str, ...]
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    image_shape: tuple[int, int] = (28, 28)
    counts: tuple[int, int] = (60000, 10000)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _files(*specs) -> tuple:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(FileSpec(name, *spec) for name, spec in zip(names, specs))


#: Every known file of every data set: name, checksums, mirrors to try in order.
DATASETS: dict[str, DatasetSpec] = {
    # SHA-256 of the decompressed files: ../shared/data/mnist/SHA256SUMS.raw.
    # MD5s of the .gz files: as published with the original distribution.
    "mnist": DatasetSpec(
        files=_files(
            ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
             "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
             "d53e105ee54ea40749a09fcbcd1e9432"),
            ("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
             "9fb629c4189551a2d022fa330f9573f3"),
            ("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
             "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    # SHA-256 of the decompressed files, computed on Debian's
    # dataset-fashion-mnist 0.0~git20200523.55506a9-1 (/usr/share/datasets).
    # Debian recompressed the .gz files, so their MD5s are not the published
    # ones; the published .gz MD5s are not needed with the raw SHA-256 known.
    "fashion-mnist": DatasetSpec(
        files=_files(
            ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",),
            ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",),
            ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",),
            ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",),
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    # The raw SHA-256s are unknown (the files could not be fetched where this
    # table was written); the .gz MD5s are the ones published by the KMNIST
    # authors (github.com/rois-codh/kmnist) and used by torchvision.
    "kmnist": DatasetSpec(
        files=_files(
            (None, "bdb82020997e1d708af4cf47b453dcf7"),
            (None, "e144d726b3acfaa3e44228e80efcd344"),
            (None, "5c965bf0a639b31b8f53240b1b52f4d7"),
            (None, "7320c461ea6c1c855c0b718fb2a4b134"),
        ),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    ),
}
