"""Read a user's own tables: ``.npz`` archives, ``.npy`` arrays and CSV files.

Every reader validates what it reads and raises :class:`DataError`, a
one-line message naming the file, the row or column, what was expected and
what was found. Nothing here writes a file.

- :func:`read_data` picks the reader by suffix and returns a
  :class:`TableData`, or None for a folder (the caller then reads it as IDX
  files, :func:`fastnet.data.load_dataset`).
- :func:`read_npz` reads the Keras ``mnist.npz`` layout: ``x_train``,
  ``y_train`` and optionally ``x_test``, ``y_test``.
- :func:`read_csv` reads one table, a row per sample, the label in one column;
  it needs pyarrow (``pip install "fastnet[csv]"``).
- :func:`read_npy` reads a features-only array, for prediction.
- :func:`stratified_split` holds out a test set with the class proportions of
  the whole.

Features come back as NumPy arrays of at least two dimensions (samples
first): uint8 stays uint8, float32 and float64 stay as they are, any other
integer or boolean type becomes float32, and CSV features are float32. Float
features must be finite. Labels come back 1-D: integers, or strings (class
names), as given.
"""
from __future__ import annotations

import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "DataError",
    "TableData",
    "first_non_finite",
    "read_csv",
    "read_data",
    "read_npy",
    "read_npz",
    "stratified_split",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Suffixes :func:`read_data` knows, with what it reads from each.
SUPPORTED = ".npz (x_train, y_train[, x_test, y_test]), .csv, or a folder of IDX files"
#: Elements checked for non-finite values per step, so that the check of a
#: large array does not allocate a boolean array as large.
_FINITE_CHUNK = 1 << 20
#: Column names shown in a "no column" message before it says "...".
_NAMES_SHOWN = 12
#: What np.load raises for a truncated or corrupt file (or one of another kind).
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class DataError(ValueError):
    """A data file cannot be used: its message names the file, the place, and what is wrong."""


@dataclass(frozen=True)
class TableData:
    """Samples read from one file: features ``x`` (samples first) and 1-D labels ``y``.

    ``x_test`` and ``y_test`` are None when the file holds no test set.
    ``source`` is the path the data were read from, as given.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str


# --------------------------------------------------------------------------- #
# dispatch
# --------------------------------------------------------------------------- #


def read_data(path: PathLike, label_column: str | int | None = None) -> TableData | None:
    """Read ``path`` by its suffix: ``.npz`` or ``.csv`` (any case).

    Returns None for a folder, which the caller reads as IDX files. Raises
    :class:`DataError` for a missing file, an unknown suffix, or a
    ``label_column`` given for an ``.npz`` (whose labels are its ``y_`` arrays).
    """
    name = os.fspath(path)
    path = Path(path)
    if path.is_dir():
        return None
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if label_column is not None:
            raise DataError(f"{name}: a label column applies to CSV files only; "
                            f"an .npz file's labels are its y_train and y_test arrays")
        return read_npz(path)
    if suffix == ".csv":
        return read_csv(path, label_column)
    found = f"'{suffix}'" if suffix else "no suffix"
    raise DataError(f"{name}: unsupported file type ({found}); expected {SUPPORTED}")


# --------------------------------------------------------------------------- #
# NumPy files
# --------------------------------------------------------------------------- #


def read_npz(path: PathLike) -> TableData:
    """Read an ``.npz`` archive holding ``x_train``, ``y_train`` and optionally ``x_test``, ``y_test``.

    This is the layout of Keras' ``mnist.npz``; other arrays in the archive
    are ignored. The archive is loaded with ``allow_pickle=False``, so object
    arrays are refused: save string labels as a fixed-width string array
    (``y.astype(str)``). Raises :class:`DataError` for a missing array, a
    pickled array, features of fewer than two dimensions or of a non-numeric
    type, non-finite float features, labels that are neither integers nor
    strings, an x/y length mismatch, train and test rows of different shapes,
    or an array of 0 rows.
    """
    name = os.fspath(path)
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not hasattr(archive, "files"):
                raise DataError(f"{name}: holds a single array (.npy), expected an .npz archive "
                                f"of x_train, y_train[, x_test, y_test]")
            keys = set(archive.files)
            for key in ("x_train", "y_train", "x_test", "y_test"):
                if key in keys:
                    arrays[key] = _load_member(archive, key, name)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except DataError:
        raise
    except _UNREADABLE as exc:
        raise DataError(f"{name}: not a readable .npz archive ({_one_line(exc)})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            listed = ", ".join(sorted(keys)) or "none"
            raise DataError(f"{name}: no array '{key}' (arrays: {listed}); "
                            f"expected x_train, y_train and optionally x_test, y_test")
    if ("x_test" in arrays) != ("y_test" in arrays):
        has, lacks = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataError(f"{name}: has {has} but no {lacks}; expected both or neither")

    x_train, y_train = _checked_pair(arrays, "train", name)
    x_test = y_test = None
    if "x_test" in arrays:
        x_test, y_test = _checked_pair(arrays, "test", name)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"{name}: x_test rows have shape {x_test.shape[1:]} "
                            f"but x_train rows have {x_train.shape[1:]}")
    return TableData(x_train, y_train, x_test, y_test, name)


def read_npy(path: PathLike) -> np.ndarray:
    """Read a ``.npy`` array of features only (for prediction), samples first.

    Same checks and dtype rules as the features of :func:`read_npz`.
    """
    name = os.fspath(path)
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{name}: no such file") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{name}: holds pickled data (an object array?), "
                            f"expected a numeric .npy array") from None
        raise DataError(f"{name}: not a readable .npy file ({_one_line(exc)})") from None
    except _UNREADABLE as exc:
        raise DataError(f"{name}: not a readable .npy file ({_one_line(exc)})") from None
    if not isinstance(x, np.ndarray):
        x.close()
        raise DataError(f"{name}: is an .npz archive, expected a single .npy array of features")
    return _checked_features(x, name, "the array")


def _load_member(archive, key, name):
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{name}: {key} is an object array (pickled), expected numbers"
                            + (" or fixed-width strings (save y.astype(str))" if key[0] == "y" else "")
                            ) from None
        raise


def _checked_pair(arrays, part, name):
    x = _checked_features(arrays[f"x_{part}"], name, f"x_{part}")
    y = _checked_labels(arrays[f"y_{part}"], name, f"y_{part}")
    if len(x) != len(y):
        raise DataError(f"{name}: x_{part} has {len(x)} rows but y_{part} has {len(y)}")
    return x, y


def _checked_features(x, name, what):
    """``x`` with at least two dimensions, of a kept or float32 dtype, finite, C-contiguous."""
    if x.ndim < 2:
        raise DataError(f"{name}: {what} has shape {x.shape}, expected (rows, features...)")
    if x.shape[0] == 0:
        raise DataError(f"{name}: {what} has 0 rows")
    kind = x.dtype.kind
    if x.dtype in (np.uint8, np.float32, np.float64):
        x = np.ascontiguousarray(x)
    elif kind in "biuf":
        x = np.ascontiguousarray(x, dtype=np.float32)
    else:
        raise DataError(f"{name}: {what} has dtype {x.dtype}, expected numbers")
    if x.dtype.kind == "f":
        where = first_non_finite(x)
        if where is not None:
            place = ", ".join(str(int(i)) for i in where)
            raise DataError(f"{name}: {what}[{place}]: {x[where]}; features must be finite")
    return x


def first_non_finite(x):
    """Index tuple of the first non-finite element of float array ``x``, or None; checked
    a million elements at a time, so a large array costs no boolean array as large."""
    flat = x.reshape(-1)
    for start in range(0, flat.size, _FINITE_CHUNK):
        bad = np.flatnonzero(~np.isfinite(flat[start:start + _FINITE_CHUNK]))
        if bad.size:
            return np.unravel_index(start + bad[0], x.shape)
    return None


def _checked_labels(y, name, what):
    """``y`` as a 1-D array of integers or strings; an (N, 1) column is flattened."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DataError(f"{name}: {what} has shape {y.shape}, expected (rows,)")
    if y.shape[0] == 0:
        raise DataError(f"{name}: {what} has 0 rows")
    kind = y.dtype.kind
    if kind in "iuUS":
        return y
    if kind == "b":
        return y.astype(np.int64)
    if kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            i = int(np.flatnonzero(~whole)[0])
            raise DataError(f"{name}: {what}[{i}]: {y[i]} is not a whole number; "
                            f"labels must be integers or strings")
        return y.astype(np.int64)
    raise DataError(f"{name}: {what} has dtype {y.dtype}, expected integers or strings")


# --------------------------------------------------------------------------- #
# CSV
# --------------------------------------------------------------------------- #


def read_csv(path: PathLike, label_column: str | int | None = None, *, labels: bool = True):
    """Read a CSV file, one sample per row, into a :class:`TableData` (no test set).

    Fields are separated by commas; blank lines are skipped; spaces around a
    field are ignored.

    **Header.** The first row is taken as a header if, in some column, its
    field is not a number while every other row's field in that column is.
    So ``x1,x2,label`` over numeric features is a header; a first row of
    numbers is data, and so is a first row whose only text is in a column of
    text (a string label). A header made only of numbers (``0,1,2``) cannot
    be told from data and is read as data. In a one-row file the rule holds
    vacuously: a row with any text field is a header (and then there are no
    rows).

    **Labels.** ``label_column`` is a column name (needs a header) or an
    integer index, 0-based, negative counting from the end; by default the
    last column. A label column whose fields are all integers gives int64
    labels; otherwise the fields, stripped, are class names (a str array).
    With ``labels=False`` every column is a feature and the function returns
    just the feature array (for prediction).

    Features must be numbers (as ``1``, ``-2.5``, ``1e-3``) and finite; they
    come back as a float32 array of shape (rows, columns).

    **Errors** raise :class:`DataError` naming the file and the place. Rows
    are numbered as in an editor: 1-based, counting the header line and
    blank lines. Columns are named by their header name, or in a file
    without a header numbered 1-based like the rows (``column 3``).
    Reading needs pyarrow: without it, :class:`DataError` says how to install it.
    """
    name = os.fspath(path)
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pcsv
    except ImportError:
        raise DataError('reading CSV needs pyarrow: pip install "fastnet[csv]"') from None
    if labels is False and label_column is not None:
        raise ValueError("label_column is meaningless with labels=False")
    if Path(path).is_dir():
        raise DataError(f"{name}: is a folder, expected a CSV file")
    if not Path(path).is_file():
        raise DataError(f"{name}: no such file")

    table, first_bad = _read_strings(path, name, pa, pcsv)
    if table is None or table.num_rows == 0:
        raise DataError(f"{name}: no rows")
    columns = [pc.utf8_trim_whitespace(table.column(j).combine_chunks())
               for j in range(table.num_columns)]

    # Header detection: parse each column below its first field, then the
    # first field alone (cheap), so that each field is parsed once.
    heads, rests = [], []   # per column: float64 NumPy array, or None where a field is not a number
    for col in columns:
        rest = _try_cast(col[1:], pa.float64(), pc, pa)
        head = _try_cast(col[:1], pa.float64(), pc, pa)
        rests.append(None if rest is None else rest.to_numpy())
        heads.append(None if head is None else head.to_numpy())
    header = any(head is None and rest is not None for head, rest in zip(heads, rests))
    if header:
        names = [col[0].as_py() for col in columns]
        columns = [col[1:] for col in columns]
        parsed = rests
    else:
        names = None
        parsed = [None if head is None or rest is None else np.concatenate([head, rest])
                  for head, rest in zip(heads, rests)]
    first_line = 2 if header else 1   # the record number of the first data row

    if first_bad is not None:
        record, found, expected = first_bad
        line = _editor_line(path, record)
        as_in = "as in the header" if header else f"as in row {_editor_line(path, 1)}"
        raise DataError(f"{name}: row {line} has {_fields(found)}, expected {expected} ({as_in})")
    n_rows = len(columns[0])
    if n_rows == 0:
        raise DataError(f"{name}: no rows below the header")

    label_at = None
    if labels:
        label_at = _label_index(label_column, names, len(columns), name, columns)
    feature_at = [j for j in range(len(columns)) if j != label_at]
    if not feature_at:
        raise DataError(f"{name}: only one column, the labels; expected features beside it")

    def where(j, i):
        return f"{name}: {_column_name(names, j)}, row {_editor_line(path, first_line + i)}"

    x = np.empty((n_rows, len(feature_at)), dtype=np.float32)
    for k, j in enumerate(feature_at):
        values = parsed[j]
        if values is None:
            i = _first_unparsable(columns[j], pa.float64(), pc, pa)
            text = columns[j][i].as_py()
            if not text:
                raise DataError(f"{where(j, i)}: empty field, expected a number")
            raise DataError(f"{where(j, i)}: '{text}' is not a number")
        with np.errstate(over="ignore"):  # overflow to inf is caught just below
            x[:, k] = values
        finite = np.isfinite(x[:, k])
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            text = columns[j][i].as_py()
            if np.isfinite(values[i]):
                raise DataError(f"{where(j, i)}: {text} is too large for float32 "
                                f"(at most {np.finfo(np.float32).max:.4g} in magnitude)")
            raise DataError(f"{where(j, i)}: {text}; features must be finite")
    if not labels:
        return x

    col = columns[label_at]
    empty = pc.equal(pc.utf8_length(col), 0)
    if pc.any(empty).as_py():
        i = int(pc.index(empty, True).as_py())
        raise DataError(f"{where(label_at, i)}: empty label")
    ints = _try_cast(col, pa.int64(), pc, pa)
    y = ints.to_numpy() if ints is not None else col.to_numpy(zero_copy_only=False).astype(str)
    return TableData(x, y, None, None, name)


def _read_strings(path, name, pa, pcsv):
    """The file as a table of string columns, first row included, and its first ragged row.

    Returns ``(table, first_bad)``: ``table`` is None for a file with no
    rows; ``first_bad`` is None, or ``(record, fields found, fields
    expected)`` for the first row whose field count differs from the first
    row's (records counted 1-based, blank lines not counted). Ragged rows are
    left out of ``table``, so that the header can still be detected.
    """
    ragged = []

    def skip(row):
        ragged.append(row)
        return "skip"

    read = pcsv.ReadOptions(autogenerate_column_names=True)
    parse = pcsv.ParseOptions(invalid_row_handler=skip)
    try:
        with pcsv.open_csv(path, read_options=read, parse_options=parse) as probe:
            n_columns = len(probe.schema)
        convert = pcsv.ConvertOptions(
            column_types={f"f{j}": pa.string() for j in range(n_columns)})
        table = pcsv.read_csv(path, read_options=read, parse_options=parse,
                              convert_options=convert)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return None, None
        raise DataError(f"{name}: {_one_line(exc)}") from None
    if not ragged:
        return table, None
    # Threads report rows without their numbers and out of order: read again
    # on one thread, stopping at the first ragged row.
    first = []

    def stop(row):
        first.append(row)
        return "error"

    try:
        pcsv.read_csv(path, read_options=pcsv.ReadOptions(autogenerate_column_names=True,
                                                          use_threads=False),
                      parse_options=pcsv.ParseOptions(invalid_row_handler=stop),
                      convert_options=convert)
    except pa.ArrowInvalid:
        pass
    row = first[0] if first else ragged[0]
    return table, (row.number, row.actual_columns, row.expected_columns)


def _try_cast(col, to, pc, pa):
    """``col`` cast to type ``to``, or None if some field does not parse."""
    try:
        return pc.cast(col, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _first_unparsable(col, to, pc, pa):
    """Index of the first field of ``col`` that does not cast to ``to`` (one is known to fail).

    A bisection over slices: each step casts half of what is left, so the
    search costs about two casts of the column, with Arrow's own parsing rules.
    """
    lo, hi = 0, len(col)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _try_cast(col[lo:mid], to, pc, pa) is None:
            hi = mid
        else:
            lo = mid
    return lo


def _label_index(label_column, names, n_columns, name, columns):
    """The 0-based index of the label column, from a name, an index, or None (the last)."""
    if label_column is None:
        return n_columns - 1
    if isinstance(label_column, (int, np.integer)) and not isinstance(label_column, bool):
        index = int(label_column)
        if not -n_columns <= index < n_columns:
            raise DataError(f"{name}: no column index {index}; the file has {n_columns} columns "
                            f"(indices 0..{n_columns - 1}, or -{n_columns}..-1)")
        return index % n_columns
    if not isinstance(label_column, str):
        raise TypeError(f"label_column must be a column name, an int index or None, "
                        f"not {type(label_column).__name__}")
    if names is None:
        first = ", ".join(col[0].as_py() for col in columns[:_NAMES_SHOWN])
        more = ", ..." if len(columns) > _NAMES_SHOWN else ""
        raise DataError(f"{name}: no column '{label_column}': the file has no header row "
                        f"(its first row is numbers: {first}{more}); give the label column's index")
    found = [j for j, n in enumerate(names) if n == label_column]
    if not found:
        shown = ", ".join(names[:_NAMES_SHOWN])
        more = f", ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else ""
        raise DataError(f"{name}: no column '{label_column}' (columns: {shown}{more})")
    if len(found) > 1:
        at = ", ".join(str(j) for j in found)
        raise DataError(f"{name}: {len(found)} columns are named '{label_column}' "
                        f"(indices {at}); give the label column's index")
    return found[0]


def _column_name(names, j):
    return f"column '{names[j]}'" if names is not None else f"column {j + 1}"


def _fields(n):
    return f"{n} field" + ("" if n == 1 else "s")


def _editor_line(path, record):
    """The 1-based line number, as an editor shows it, of the 1-based CSV ``record``.

    Records are the file's non-blank lines (fields never span lines, as the
    reader does not allow newlines in values); blank lines are skipped by the
    reader but counted by editors. Line ends may be LF, CRLF or CR. Only
    called on the way to an error, so it may read the file again.
    """
    seen = 0
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="latin-1", newline=None)
        for line_number, line in enumerate(text, start=1):
            if line.rstrip("\n"):
                seen += 1
                if seen == record:
                    return line_number
    return record  # not reached for a record the reader saw


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- #
# splitting
# --------------------------------------------------------------------------- #


def stratified_split(x, y, fraction: float, seed):
    """Hold out about ``fraction`` of the samples of each class as a test set.

    Returns ``(x_train, y_train, x_test, y_test)``. The test set holds
    ``round(fraction * len(y))`` samples, shared among the classes in
    proportion to their sizes (largest remainders first), but every class
    keeps at least one training sample; so a class of one sample is never
    held out. Which samples go is drawn from ``np.random.default_rng(seed)``:
    the same seed and data give the same split. Both parts keep the samples'
    original order. ``x`` is copied once, by indexing with the two index
    arrays.

    Raises ValueError if ``fraction`` is not strictly between 0 and 1, if x
    and y differ in length, or if the split would hold out no sample.
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    y = np.asarray(y)
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} rows but y has {n}")
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)

    # Test samples per class: floor of the ideal, then the remainder to the
    # largest fractional parts, then capped so that each class keeps one.
    ideal = fraction * counts
    n_test = np.floor(ideal).astype(np.int64)
    extra = round(fraction * n) - int(n_test.sum())
    if extra > 0:
        order = np.argsort(-(ideal - n_test), kind="stable")
        n_test[order[:extra]] += 1
    n_test = np.minimum(n_test, counts - 1)
    if n_test.sum() == 0:
        raise ValueError(f"holding out {fraction} of {n} samples in {len(classes)} classes "
                         f"leaves no test sample (each class keeps at least one training sample)")

    # Group the samples by class, in random order within each class; the
    # first n_test[c] of class c's group are held out.
    rng = np.random.default_rng(seed)
    grouped = np.lexsort((rng.random(n), inverse))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    cls = inverse[grouped]
    held = (np.arange(n) - starts[cls]) < n_test[cls]
    test_idx = np.sort(grouped[held])
    train_idx = np.sort(grouped[~held])
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]
