"""MNIST, Fashion-MNIST and KMNIST: find them on disk, or download and verify them.

:func:`load_dataset` looks for the four IDX files of a data set in, in order:

1. the ``data_dir`` argument (``fastnet-train --data DIR``): if given, the
   files must be there; no other folder is tried;
2. ``$FASTNET_DATA/<name>``;
3. the user cache folder, ``~/.cache/fastnet/<name>`` on Linux;
4. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist``).

Each file may be gzip-compressed or not, under the distribution's name
(``train-images-idx3-ubyte``) or the common variant with a dot
(``train-images.idx3-ubyte``). If no folder holds all four, the missing files
are downloaded into the cache folder from the mirrors in :data:`DATASETS`.
Every download is written to a temporary file beside its destination, checked
against its checksum, and only then renamed into place; a file that fails the
check is deleted and the next mirror is tried. ``offline=True`` or
``FASTNET_OFFLINE=1`` forbids downloading, and ``FASTNET_MIRRORS`` (or the
``mirrors`` argument) replaces the mirror list, e.g. for a local server. A
download is given up past :data:`MAX_DOWNLOAD_BYTES` or :data:`DOWNLOAD_SECONDS`.

Files found on disk are verified on first use: each that holds the data set's
own number of samples (a copy of the data set, not data of one's own in its
format) is checked against the SHA-256 of its decompressed bytes, and the
result kept in :data:`STAMPS` in the cache root, so that later loads do not
hash it again (see ``verify`` in :func:`load_dataset`).

Why not pooch. pooch 1.9.0 (read, and tried against local servers) covers a
temporary file moved into place after a hash check, a tqdm bar and a per-read
timeout: about 10 of the download path's 160 lines here. It does not cover
the rest, which would stay around it: mirrors (one URL per file), offline
mode (a missing file is always downloaded), a size cap or an overall
deadline (``HTTPDownloader(timeout=1)`` was still reading a server's byte per
0.05 s after 8 s), a checksum of the decompressed bytes (it hashes the file
as downloaded, so a recompressed copy of the same data fails: the shared
MNIST's train-images, Debian's Fashion-MNIST), and short error lines. It would
also add requests and its four dependencies, and it silently downloads over
a cached file whose hash differs. So fastnet keeps its own.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from fastnet._files import atomic_write_json, temporary_beside
from fastnet.data.tables import DATASETS, DatasetSpec, FileSpec
from fastnet.data.idx import IdxFormatError, _gunzip_pieces, read_idx

__all__ = [
    "DATASETS",
    "ChecksumError",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FileSpec",
    "dataset_files",
    "load_dataset",
]

#: System-wide folders searched last, each holding ``<name>/``.
SYSTEM_DATA_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets"),)


class Dataset(NamedTuple):
    """The four arrays of an image-classification data set (uint8)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class DatasetError(ValueError):
    """The files of a data set were read but do not fit together (counts, labels, shapes)."""


class ChecksumError(DatasetError):
    """A file of a known data set found on disk is not the data set's: its checksum differs.

    ``belongs_to`` is ``(data set, file name)`` of the table's file it is, if any (Fashion-MNIST's
    files in a folder of MNIST), else None.
    """

    def __init__(self, message, *, belongs_to=None):
        super().__init__(message)
        self.belongs_to = belongs_to


class DatasetNotFoundError(FileNotFoundError):
    """No folder holds the data set and it could not be downloaded.

    Besides its message, it says what happened as data: ``dataset``;
    ``data_dir``, the folder given explicitly (then nothing else was tried);
    ``searched``, a list of ``(folder, what was wrong with it)``;
    ``why_no_download``, why nothing was downloaded (None if it was tried);
    ``attempts``, one line per download that failed.
    """

    def __init__(self, message, *, dataset=None, data_dir=None, searched=(), why_no_download=None,
                 attempts=()):
        super().__init__(message)
        self.dataset = dataset
        self.data_dir = data_dir
        self.searched = list(searched)
        self.why_no_download = why_no_download
        self.attempts = list(attempts)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _env_off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")


def default_cache_dir() -> Path:
    """The per-user cache folder, ``~/.cache/fastnet`` on Linux (platformdirs)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fastnet"))


def _candidates(name: str) -> tuple[str, ...]:
    """File names accepted for distribution name ``name``, preferred first."""
    dotted = name.replace("-idx", ".idx", 1)
    return (name + ".gz", name, dotted + ".gz", dotted)


def _find_file(folder: Path, spec: FileSpec) -> Path | None:
    for candidate in _candidates(spec.name):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _find_all(folder: Path, dspec: DatasetSpec) -> tuple[list[Path | None], list[str]]:
    """The paths of the data set's files in ``folder`` (None where missing) and the missing names."""
    paths = [_find_file(folder, spec) for spec in dspec.files]
    missing = [spec.name for spec, path in zip(dspec.files, paths) if path is None]
    return paths, missing


def _mirror_list(dataset: str, mirrors: Sequence[str] | str | None, dspec: DatasetSpec) -> list[str]:
    """The base URLs to try, each ending in ``/``; ``{name}`` is replaced by the data set's name."""
    if mirrors is None:
        env = os.environ.get("FASTNET_MIRRORS", "").strip()
        mirrors = env if env else dspec.mirrors
    if isinstance(mirrors, str):
        mirrors = mirrors.replace(",", " ").split()
    out = []
    for url in mirrors:
        url = url.replace("{name}", dataset)
        out.append(url if url.endswith("/") else url + "/")
    return out


def _checksum_of(path: Path, spec: FileSpec) -> tuple[str, str, str] | None:
    """(kind, expected, found) for the strongest checksum the table knows for a download,
    or None if none.

    The MD5 of the ``.gz`` only identifies the publisher's own compressed file,
    so it is used for downloads, not for copies found on disk (see
    :func:`_verify_contents`), which may have been recompressed or decompressed.
    """
    if spec.sha256 is not None:
        data = path.read_bytes()
        digest = hashlib.sha256()
        if data[:2] == b"\x1f\x8b":
            for piece in _gunzip_pieces(data, str(path)):
                digest.update(piece)
        else:
            digest.update(data)
        return "SHA-256 of the decompressed file", spec.sha256, digest.hexdigest()
    if spec.gz_md5 is not None:
        found = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
        return "MD5 of the .gz file", spec.gz_md5, found
    return None


#: The most a download may hold: the largest known file (KMNIST's training images, gzip) is
#: about 18 MiB; a server sending more is refused rather than filling the disk.
MAX_DOWNLOAD_BYTES = 256 << 20
#: How long one file's download may take in all, whatever the server's pace: ``timeout``
#: bounds each silence, this bounds a server that trickles a byte at a time.
DOWNLOAD_SECONDS = 900.0


def _download(url: str, dest: Path, *, label: str, timeout: float, progress: bool) -> None:
    """Fetch ``url`` into the file ``dest`` (which the caller owns and cleans up): at most
    :data:`MAX_DOWNLOAD_BYTES`, within :data:`DOWNLOAD_SECONDS`, else OSError."""
    import time

    from tqdm.auto import tqdm

    deadline = time.monotonic() + DOWNLOAD_SECONDS
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = response.headers.get("Content-Length")
        if total and total.isdigit() and int(total) > MAX_DOWNLOAD_BYTES:
            raise OSError(f"the server offers {int(total)} bytes, more than the {MAX_DOWNLOAD_BYTES} allowed")
        with tqdm(total=int(total) if total and total.isdigit() else None, unit="B",
                  unit_scale=True, unit_divisor=1024, desc=label,
                  disable=not progress, leave=False) as bar:
            while True:
                block = response.read1(1 << 16)  # what has arrived: a trickle cannot hold it past the deadline
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
                if out.tell() > MAX_DOWNLOAD_BYTES:
                    raise OSError(f"more than {MAX_DOWNLOAD_BYTES} bytes; no data set file is that large")
                if time.monotonic() > deadline:
                    raise OSError(f"still downloading after {DOWNLOAD_SECONDS:g} s ({out.tell()} bytes so far)")
        if total and total.isdigit() and out.tell() != int(total):
            raise OSError(f"connection closed after {out.tell()} of {total} bytes")


def _fetch_verified(spec: FileSpec, urls: list[str], folder: Path, *, timeout: float,
                    progress: bool, allow_unverified: bool, attempts: list[str]) -> Path | None:
    """Download ``spec`` from the first mirror that serves a good copy; None if none does.

    Each try goes to a temporary file in ``folder`` that is renamed to
    ``spec.name + ".gz"`` only after its checksum matched; every failure is
    appended to ``attempts`` as ``"url: reason"``.
    """
    target = folder / (spec.name + ".gz")
    for base in urls:
        url = base + target.name
        with temporary_beside(target, ".part") as (fd, tmp):
            os.close(fd)
            try:
                _download(url, tmp, label=target.name, timeout=timeout, progress=progress)
            except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
                if isinstance(exc, urllib.error.HTTPError):
                    reason = f"HTTP {exc.code} {exc.reason}"
                else:
                    reason = getattr(exc, "reason", None) or exc
                attempts.append(f"{url}: download failed ({reason})")
                continue
            with open(tmp, "rb") as f:
                start = f.read(16)
            if start[:2] != b"\x1f\x8b":
                attempts.append(f"{url}: not a gzip file (it starts with {start!r})")
                continue
            try:
                check = _checksum_of(tmp, spec)
            except IdxFormatError as exc:
                attempts.append(f"{url}: not a valid gzip file ({exc})")
                continue
            if check is None:
                if not allow_unverified:
                    attempts.append(
                        f"{url}: downloaded, but fastnet knows no checksum for {spec.name}, "
                        "so it was not kept (pass allow_unverified=True to keep it anyway)"
                    )
                    continue
                warnings.warn(f"keeping {target} unverified: no checksum is known for it",
                              stacklevel=4)
            else:
                kind, expected, found = check
                if found != expected:
                    attempts.append(f"{url}: checksum mismatch ({kind}: expected {expected}, found {found})")
                    continue
            os.replace(tmp, target)
            return target
    return None


def _not_found_message(dataset: str, searched: list[tuple[Path, str]],
                       attempts: list[str], why_no_download: str | None) -> str:
    lines = [f"could not find the {dataset} data set."]
    if searched:
        lines.append("Looked in:")
        lines.extend(f"  {folder} ({state})" for folder, state in searched)
    if why_no_download:
        lines.append(f"Did not download: {why_no_download}.")
    if attempts:
        lines.append("Tried to download:")
        lines.extend(f"  {attempt}" for attempt in attempts)
    lines.append(
        "To use local copies, put the four IDX files (.gz or raw) in a folder and pass it "
        "as data_dir (fastnet-train --data DIR), or set FASTNET_DATA to a folder holding "
        f"{dataset}/. To download from elsewhere, set FASTNET_MIRRORS to base URLs."
    )
    return "\n".join(lines)


def _locate(dataset: str, dspec: DatasetSpec, data_dir, cache_dir: Path,
            searched: list) -> list[Path] | None:
    """Paths of the four files in the first folder that holds them all, or None.

    Appends each folder that fell short to ``searched``, with the reason.
    """
    if data_dir is not None:
        folder = Path(data_dir)
        paths, missing = _find_all(folder, dspec)
        if missing:
            hint = ""
            if folder.is_dir() and not _find_all(folder / dataset, dspec)[1]:
                hint = f" (they are in {folder / dataset}: pass that folder instead)"
            raise DatasetNotFoundError(
                f"data_dir {folder} does not hold the {dataset} files: missing "
                f"{', '.join(missing)} (.gz or raw){hint}",
                dataset=dataset, data_dir=folder, searched=[(folder, f"missing {', '.join(missing)}")],
            )
        return paths
    folders = []
    if os.environ.get("FASTNET_DATA"):
        folders.append(Path(os.environ["FASTNET_DATA"]) / dataset)
    folders.append(cache_dir)
    folders.extend(system / dataset for system in SYSTEM_DATA_DIRS)
    for folder in folders:
        paths, missing = _find_all(folder, dspec)
        if not missing:
            return paths
        state = "missing " + ", ".join(missing) if folder.is_dir() else "does not exist"
        searched.append((folder, state))
    return None


def _check_dataset(arrays: list[np.ndarray], paths: list[Path], dspec: DatasetSpec) -> Dataset:
    """Check that images and labels fit together, and that the training and the test set
    each hold a sample; raise :class:`DatasetError` naming the file if not."""
    for (images, labels), (ipath, lpath), part in zip(
        ((arrays[0], arrays[1]), (arrays[2], arrays[3])), ((paths[0], paths[1]), (paths[2], paths[3])),
        ("training", "test"),
    ):
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != dspec.image_shape:
            h, w = dspec.image_shape
            raise DatasetError(f"{ipath}: expected uint8 images of shape Nx{h}x{w}, "
                               f"found {images.dtype} of shape {'x'.join(map(str, images.shape))}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DatasetError(f"{lpath}: expected a vector of uint8 labels, "
                               f"found {labels.dtype} of shape {'x'.join(map(str, labels.shape))}")
        if len(images) != len(labels):
            raise DatasetError(f"{lpath}: holds {len(labels)} labels, but {ipath} holds "
                               f"{len(images)} images; expected one label per image")
        if len(images) == 0:
            raise DatasetError(f"{ipath}: holds 0 images; expected at least one {part} sample")
        if len(labels) and labels.max() >= dspec.n_classes:
            bad = int(np.argmax(labels >= dspec.n_classes))
            raise DatasetError(f"{lpath}: expected labels 0..{dspec.n_classes - 1}, "
                               f"found {labels[bad]} at index {bad}")
    return Dataset(*arrays)


def load_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None, *,
                 offline: bool = False, progress: bool | None = None,
                 mirrors: Sequence[str] | str | None = None,
                 cache_dir: str | os.PathLike | None = None, timeout: float = 30.0,
                 verify: bool | None = None, allow_unverified: bool = False) -> Dataset:
    """Load an MNIST-like data set as four uint8 arrays, downloading it if need be.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "kmnist"}
    data_dir : path, optional
        Folder that holds the four files. When given, only this folder is
        used: missing files are an error, not a reason to look elsewhere.
    offline : bool
        Forbid downloading (so does the environment variable ``FASTNET_OFFLINE=1``).
    progress : bool, optional
        Show a download progress bar; by default only when stderr is a terminal.
    mirrors : sequence of str or str, optional
        Base URLs to download from instead of the table's (also
        ``FASTNET_MIRRORS``, space- or comma-separated). ``{name}`` in a URL is
        replaced by the data set's name.
    cache_dir : path, optional
        Root of the download cache (files go to ``cache_dir/<name>``); default
        :func:`default_cache_dir`.
    timeout : float
        Seconds to wait on a silent connection before trying the next mirror.
    verify : bool, optional
        Which files found on disk to check against the SHA-256 of their
        decompressed bytes in :data:`DATASETS` (downloads are always checked).
        None (the default): each file that holds as many samples as the data
        set's own (60,000 training and 10,000 test samples for all three),
        that is a copy of the data set, not data of one's own in its format;
        ``FASTNET_VERIFY=0`` makes the default False. True: every file.
        False: none. A file is hashed once: the result is kept in
        ``verified.json`` in the cache root, under the file's resolved path,
        size, mtime, ctime and inode, and later loads read it from there. A
        cache root that cannot be written costs a hash on every load, never
        an error. KMNIST's table knows only the MD5s of the publisher's
        ``.gz`` files, which a recompressed copy does not match: its files on
        disk are not checked (its downloads are).
    allow_unverified : bool
        Keep a download for which :data:`DATASETS` holds no checksum at all.
        Off by default: such a download is deleted and reported as a failure.

    Returns
    -------
    Dataset
        ``(train_images, train_labels, test_images, test_labels)``: images
        uint8 of shape (N, 28, 28), labels uint8 in 0..9.

    Raises
    ------
    DatasetNotFoundError
        No folder holds the files and downloading is forbidden or failed; the
        message lists the folders searched, each URL tried and why it failed.
    IdxFormatError
        A file is not a well-formed IDX file.
    DatasetError
        The files do not fit together (image and label counts differ, a label
        is out of range, images are not 28x28 uint8, a set holds no sample);
        :class:`ChecksumError`, a subclass, names a file whose checksum
        differs from the table's, what was expected and what was found.
    """
    try:
        dspec = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}") from None
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache_root / name
    searched: list[tuple[Path, str]] = []  # (folder, what was wrong with it)
    paths = _locate(name, dspec, data_dir, cache, searched)
    if paths is None:
        paths = _download_missing(name, dspec, cache, searched, offline=offline, progress=progress,
                                  mirrors=mirrors, timeout=timeout, allow_unverified=allow_unverified)
    if verify is None and _env_off("FASTNET_VERIFY"):
        verify = False
    stats = [path.stat() for path in paths]  # before reading: a file replaced meanwhile is hashed again
    # each header is checked before its payload is decompressed: a small gzip file claiming
    # 60000x28x28000 images is refused before it is inflated
    arrays = [read_idx(path, expect=_header_check(path, dspec, images=i % 2 == 0))
              for i, path in enumerate(paths)]
    data = _check_dataset(arrays, paths, dspec)
    if verify is not False:
        _verify_contents(name, dspec, paths, stats, arrays, cache_root / STAMPS, every=verify is True)
    return data


#: The file in the cache root where :func:`load_dataset` keeps the checksums of the data
#: set files it has hashed, each under its path and a fingerprint of its metadata. It lives
#: in the cache, never beside the data: a data folder may be read-only (Debian's
#: /usr/share/datasets, a shared copy) or someone else's.
STAMPS = "verified.json"


def _verify_contents(name: str, dspec: DatasetSpec, paths: list[Path], stats: list[os.stat_result],
                     arrays: list[np.ndarray], stamps_path: Path, *, every: bool) -> None:
    """Check the files against the table's SHA-256 of their decompressed bytes: every file
    (``every``) or those holding the data set's own number of samples. A file whose
    fingerprint (size, mtime, ctime, inode) is in ``stamps_path`` is not hashed again.
    Raise :class:`ChecksumError` at the first mismatch."""
    stamps = _read_stamps(stamps_path)
    changed = False
    try:
        for i, (path, st, array, spec) in enumerate(zip(paths, stats, arrays, dspec.files)):
            if spec.sha256 is None or not (every or len(array) == dspec.counts[i // 2]):
                continue
            key = str(path.resolve())
            fingerprint = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            entry = stamps.get(key)
            if isinstance(entry, dict) and entry.get("stat") == fingerprint and isinstance(entry.get("sha256"), str):
                found = entry["sha256"]
            else:
                found = _idx_sha256(array)
                stamps[key] = {"stat": fingerprint, "sha256": found}
                changed = True
            if found != spec.sha256:
                other = next(((other, f.name) for other, d in DATASETS.items() for f in d.files
                              if f.sha256 == found), None)
                raise ChecksumError(
                    f"{path}: checksum mismatch: not {name}'s {spec.name} (SHA-256 of the decompressed "
                    f"file: expected {spec.sha256}, found {found})"
                    + (f"; it is {other[0]}'s {other[1]}" if other else ""), belongs_to=other)
    finally:
        if changed:
            _write_stamps(stamps_path, stamps)


def _idx_sha256(array: np.ndarray) -> str:
    """The SHA-256 of the uncompressed IDX file of the uint8 ``array`` (header: magic
    0x0000 08 rank, then each dimension big-endian; then the payload). :func:`read_idx`
    refuses a payload of any other length, so this is the SHA-256 of the decompressed
    file that was read, without decompressing it again."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    digest = hashlib.sha256(header)
    digest.update(np.ascontiguousarray(array).reshape(-1).data)
    return digest.hexdigest()


def _read_stamps(path: Path) -> dict:
    """The stamps file's entries; empty if it is missing, unreadable, too big or not a JSON object."""
    try:
        if path.stat().st_size > 1 << 20:
            return {}
        stamps = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamps(path: Path, stamps: dict) -> None:
    """Write the stamps (those of files that still exist), atomically; if that fails, the
    files are simply hashed again next time."""
    try:
        atomic_write_json(path, {key: value for key, value in stamps.items() if os.path.exists(key)})
    except OSError:
        pass


def _header_check(path: Path, dspec: DatasetSpec, *, images: bool):
    """A check of an images (or labels) file's IDX header, for ``read_idx(expect=...)``:
    the same refusals as :func:`_check_dataset`'s, made before the payload is read."""
    def check(header):
        if images and (header.dtype != np.uint8 or header.shape[1:] != dspec.image_shape):
            h, w = dspec.image_shape
            raise DatasetError(f"{path}: expected uint8 images of shape Nx{h}x{w}, "
                               f"found {header.dtype} of shape {'x'.join(map(str, header.shape))}")
        if not images and (header.dtype != np.uint8 or len(header.shape) != 1):
            raise DatasetError(f"{path}: expected a vector of uint8 labels, "
                               f"found {header.dtype} of shape {'x'.join(map(str, header.shape))}")
    return check


def dataset_files(name: str = "mnist", data_dir: str | os.PathLike | None = None, *,
                  cache_dir: str | os.PathLike | None = None) -> list[Path]:
    """The paths of the four files :func:`load_dataset` reads for these arguments, if
    they are on disk (an empty list where no folder holds them all); nothing is downloaded.
    ``fastnet-train`` uses it to refuse an output path that would overwrite its data."""
    dspec = DATASETS[name]
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        return _locate(name, dspec, data_dir, cache_root / name, []) or []
    except DatasetNotFoundError:
        return []


def _download_missing(name: str, dspec: DatasetSpec, cache: Path, searched: list, *, offline: bool,
                      progress: bool | None, mirrors, timeout: float,
                      allow_unverified: bool) -> list[Path]:
    """Download into ``cache`` the files it lacks; raise :class:`DatasetNotFoundError` on failure."""
    why_not = None
    if offline:
        why_not = "offline=True"
    elif _env_flag("FASTNET_OFFLINE"):
        why_not = f"FASTNET_OFFLINE={os.environ['FASTNET_OFFLINE']} is set"
    if why_not:
        raise DatasetNotFoundError(_not_found_message(name, searched, [], why_not), dataset=name,
                                   searched=searched, why_no_download=why_not)
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    urls = _mirror_list(name, mirrors, dspec)
    cache.mkdir(parents=True, exist_ok=True)
    attempts: list[str] = []
    paths = []
    for spec in dspec.files:
        path = _find_file(cache, spec) or _fetch_verified(
            spec, urls, cache, timeout=timeout, progress=progress,
            allow_unverified=allow_unverified, attempts=attempts)
        if path is None:
            raise DatasetNotFoundError(_not_found_message(name, searched, attempts, None), dataset=name,
                                       searched=searched, attempts=attempts)
        paths.append(path)
    return paths
