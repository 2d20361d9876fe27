"""fastnet.data.readers: .npz, .npy and CSV tables, every kind of bad file, and stratified_split."""
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnet.data.readers import (
    DataError,
    TableData,
    read_csv,
    read_data,
    read_npy,
    read_npz,
    stratified_split,
)

pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Files are written to tmp_path and named relative to it, as a user would name them."""
    monkeypatch.chdir(tmp_path)


def write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return Path(name)


def message(excinfo):
    text = str(excinfo.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------------------- #
# .npz
# --------------------------------------------------------------------------- #


@pytest.fixture
def arrays(rng):
    return {
        "x_train": rng.integers(0, 256, size=(12, 4, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 3, size=12).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 3, size=5).astype(np.uint8),
    }


def save_npz(tmp_path, name="data.npz", **arrays):
    np.savez(tmp_path / name, **arrays)
    return Path(name)


def test_npz_with_test_keeps_uint8(tmp_path, arrays):
    path = save_npz(tmp_path, **arrays)
    data = read_npz(path)
    assert isinstance(data, TableData)
    assert data.source == str(path)
    for key, value in arrays.items():
        got = getattr(data, key)
        assert got.dtype == value.dtype, key
        np.testing.assert_array_equal(got, value, err_msg=key)
    assert read_data(path).x_train.dtype == np.uint8


def test_npz_without_test(tmp_path, arrays):
    data = read_npz(save_npz(tmp_path, x_train=arrays["x_train"], y_train=arrays["y_train"]))
    assert data.x_test is None and data.y_test is None
    assert data.x_train.shape == (12, 4, 3)


@pytest.mark.parametrize("dtype, expected", [
    (np.float32, np.float32), (np.float64, np.float64), (np.int16, np.float32),
    (np.int64, np.float32), (np.uint16, np.float32), (np.bool_, np.float32),
    (np.float16, np.float32),
])
def test_npz_feature_dtypes(tmp_path, dtype, expected):
    x = np.arange(6).reshape(3, 2).astype(dtype)
    data = read_npz(save_npz(tmp_path, x_train=x, y_train=np.array([0, 1, 0])))
    assert data.x_train.dtype == expected
    np.testing.assert_array_equal(data.x_train, x.astype(expected))


def test_npz_string_labels_and_column_labels(tmp_path):
    x = np.zeros((3, 2), np.float32)
    data = read_npz(save_npz(tmp_path, x_train=x, y_train=np.array(["cat", "dog", "cat"])))
    assert data.y_train.dtype.kind == "U"
    assert list(data.y_train) == ["cat", "dog", "cat"]
    data = read_npz(save_npz(tmp_path, x_train=x, y_train=np.array([[1.0], [2.0], [0.0]])))
    assert data.y_train.dtype == np.int64 and data.y_train.tolist() == [1, 2, 0]


@pytest.mark.parametrize("drop, expected", [
    ("y_train", ("data.npz: no array 'y_train' (arrays: x_test, x_train, y_test); "
                 "expected x_train, y_train and optionally x_test, y_test")),
    ("y_test", "data.npz: has x_test but no y_test; expected both or neither"),
])
def test_npz_missing_key(tmp_path, arrays, drop, expected):
    del arrays[drop]
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, **arrays))
    assert message(excinfo) == expected


def test_npz_object_array(tmp_path, arrays):
    arrays["y_train"] = np.array(["a", 1] * 6, dtype=object)
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, **arrays))
    assert message(excinfo).startswith("data.npz: y_train is an object array (pickled)")


def test_npz_length_mismatch(tmp_path):
    path = save_npz(tmp_path, x_train=np.zeros((100, 3)), y_train=np.zeros(99, np.int64))
    with pytest.raises(DataError) as excinfo:
        read_npz(path)
    assert message(excinfo) == "data.npz: x_train has 100 rows but y_train has 99"


def test_npz_test_length_mismatch(tmp_path, arrays):
    arrays["y_test"] = arrays["y_test"][:4]
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, **arrays))
    assert message(excinfo) == "data.npz: x_test has 5 rows but y_test has 4"


@pytest.mark.parametrize("value, shown", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_npz_non_finite(tmp_path, value, shown):
    x = np.ones((4, 2, 3), np.float32)
    x[2, 1, 0] = value
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, x_train=x, y_train=np.zeros(4, np.int64)))
    assert message(excinfo) == f"data.npz: x_train[2, 1, 0]: {shown}; features must be finite"


def test_npz_zero_rows(tmp_path):
    path = save_npz(tmp_path, x_train=np.zeros((0, 3)), y_train=np.zeros(0, np.int64))
    with pytest.raises(DataError) as excinfo:
        read_npz(path)
    assert message(excinfo) == "data.npz: x_train has 0 rows"


@pytest.mark.parametrize("x, y, expected", [
    (np.zeros(3), np.zeros(3), "data.npz: x_train has shape (3,), expected (rows, features...)"),
    (np.array([["a"], ["b"]]), np.zeros(2),
     "data.npz: x_train has dtype <U1, expected numbers"),
    (np.zeros((3, 2)), np.zeros((3, 2)), "data.npz: y_train has shape (3, 2), expected (rows,)"),
    (np.zeros((3, 2)), np.array([0.0, 0.5, 1.0]),
     "data.npz: y_train[1]: 0.5 is not a whole number; labels must be integers or strings"),
])
def test_npz_bad_shapes_and_types(tmp_path, x, y, expected):
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, x_train=x, y_train=y))
    assert message(excinfo) == expected


def test_npz_test_rows_shape(tmp_path, arrays):
    arrays["x_test"] = arrays["x_test"].reshape(5, 12)
    with pytest.raises(DataError) as excinfo:
        read_npz(save_npz(tmp_path, **arrays))
    assert message(excinfo) == "data.npz: x_test rows have shape (12,) but x_train rows have (4, 3)"


def test_npz_not_an_archive(tmp_path):
    path = write(tmp_path, "data.npz", "x,y\n1,2\n")
    with pytest.raises(DataError) as excinfo:
        read_npz(path)
    assert message(excinfo).startswith("data.npz: not a readable .npz archive (")


def test_npy(tmp_path):
    x = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.save(tmp_path / "x.npy", x)
    got = read_npy(tmp_path / "x.npy")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x)
    np.save(tmp_path / "u.npy", x.astype(np.uint8))
    assert read_npy(tmp_path / "u.npy").dtype == np.uint8


def test_npy_bad(tmp_path):
    np.save(tmp_path / "o.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as excinfo:
        read_npy("o.npy")
    assert message(excinfo).startswith("o.npy: holds pickled data")
    x = np.zeros((3, 2))
    x[1, 1] = np.nan
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(DataError) as excinfo:
        read_npy("n.npy")
    assert message(excinfo) == "n.npy: the array[1, 1]: nan; features must be finite"


# --------------------------------------------------------------------------- #
# CSV: happy paths
# --------------------------------------------------------------------------- #


def test_csv_with_header(tmp_path):
    path = write(tmp_path, "data.csv", "x1,x2,label\n1,2.5,3\n-4,5e-1,0\n")
    data = read_csv(path)
    assert data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train, [[1, 2.5], [-4, 0.5]])
    assert data.y_train.dtype == np.int64 and data.y_train.tolist() == [3, 0]
    assert data.x_test is None and data.y_test is None and data.source == str(path)


def test_csv_without_header(tmp_path):
    path = write(tmp_path, "data.csv", "1,2,3\n4,5,6\n")
    data = read_csv(path)
    np.testing.assert_array_equal(data.x_train, [[1, 2], [4, 5]])
    assert data.y_train.tolist() == [3, 6]


@pytest.mark.parametrize("label_column", ["label", 0, -3])
def test_csv_label_by_name_and_index(tmp_path, label_column):
    path = write(tmp_path, "data.csv", "label,a,b\n7,1,2\n8,3,4\n")
    data = read_csv(path, label_column)
    np.testing.assert_array_equal(data.x_train, [[1, 2], [3, 4]])
    assert data.y_train.tolist() == [7, 8]


def test_csv_label_by_index_without_header(tmp_path):
    path = write(tmp_path, "data.csv", "1,9,2\n3,8,4\n")
    data = read_csv(path, 1)
    np.testing.assert_array_equal(data.x_train, [[1, 2], [3, 4]])
    assert data.y_train.tolist() == [9, 8]


def test_csv_string_labels_spaces_crlf_and_blank_lines(tmp_path):
    # The text of the label column does not make a header; the features' does.
    path = write(tmp_path, "data.csv", "1, 2 ,cat\r\n\r\n3,4, dog\r\n")
    data = read_csv(path)
    assert data.y_train.dtype.kind == "U" and data.y_train.tolist() == ["cat", "dog"]
    np.testing.assert_array_equal(data.x_train, [[1, 2], [3, 4]])
    data = read_csv(write(tmp_path, "h.csv", "a,b,kind\n1,2,cat\n3,4,dog\n"), "kind")
    assert data.y_train.tolist() == ["cat", "dog"]


def test_csv_features_only(tmp_path):
    path = write(tmp_path, "data.csv", "a,b,c\n1,2,3\n4,5,6\n")
    x = read_csv(path, labels=False)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError):
        read_csv(path, "a", labels=False)


def test_read_data_dispatch(tmp_path, arrays):
    assert read_data(tmp_path) is None
    csv = write(tmp_path, "DATA.CSV", "1,2,0\n3,4,1\n")
    assert read_data(csv).y_train.tolist() == [0, 1]
    assert read_data(csv, 0).y_train.tolist() == [1, 3]
    npz = save_npz(tmp_path, **arrays)
    assert read_data(npz).x_test.shape == (5, 4, 3)
    with pytest.raises(DataError) as excinfo:
        read_data(npz, "label")
    assert message(excinfo).startswith("data.npz: a label column applies to CSV files only")


def test_read_data_unknown_suffix(tmp_path):
    with pytest.raises(DataError) as excinfo:
        read_data(write(tmp_path, "data.txt", "1,2\n"))
    assert message(excinfo) == (
        "data.txt: unsupported file type ('.txt'); expected .npz (x_train, y_train[, x_test, "
        "y_test]), .csv, or a folder of IDX files")


def test_missing_file(tmp_path):
    for reader in (read_csv, read_npz, read_npy):
        with pytest.raises(DataError, match=r"nothere\.\w+: no such file$"):
            reader(tmp_path / "nothere.csv")


# --------------------------------------------------------------------------- #
# CSV: bad files
# --------------------------------------------------------------------------- #

HEADER = "x1,x2,x3,x4,label\n"
ROW = "1,2,3,4,0\n"


def csv_error(tmp_path, text, name="data.csv", *args, **kwargs):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError) as excinfo:
        read_csv(path, *args, **kwargs)
    return message(excinfo)


def test_csv_ragged_row(tmp_path):
    text = HEADER + ROW * 5 + "1,2,3,0\n" + ROW
    assert csv_error(tmp_path, text) == "data.csv: row 7 has 4 fields, expected 5 (as in the header)"


def test_csv_ragged_row_counts_blank_lines_without_header(tmp_path):
    text = ROW + "\n" + ROW + "1,2,3,4,5,6\n"
    assert csv_error(tmp_path, text) == "data.csv: row 4 has 6 fields, expected 5 (as in row 1)"


def test_csv_not_a_number(tmp_path):
    text = HEADER + ROW * 10 + "1,2,abc,4,0\n"
    assert csv_error(tmp_path, text) == "data.csv: column 'x3', row 12: 'abc' is not a number"


def test_csv_not_a_number_without_header(tmp_path):
    text = ROW * 3 + "1,2,3,x,0\n"
    assert csv_error(tmp_path, text) == "data.csv: column 4, row 4: 'x' is not a number"


def test_csv_empty_field(tmp_path):
    text = HEADER + ROW + "1,,3,4,0\n"
    assert csv_error(tmp_path, text) == "data.csv: column 'x2', row 3: empty field, expected a number"


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf"])
def test_csv_non_finite(tmp_path, value):
    text = HEADER + ROW * 3 + f"1,{value},3,4,0\n"
    assert csv_error(tmp_path, text) == (
        f"data.csv: column 'x2', row 5: {value}; features must be finite")


def test_csv_float32_overflow(tmp_path):
    text = HEADER + "1,2,1e39,4,0\n"
    assert csv_error(tmp_path, text).startswith(
        "data.csv: column 'x3', row 2: 1e39 is too large for float32")


def test_csv_empty_label(tmp_path):
    assert csv_error(tmp_path, HEADER + ROW + "1,2,3,4,\n") == (
        "data.csv: column 'label', row 3: empty label")


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_csv_empty_file(tmp_path, text):
    assert csv_error(tmp_path, text, "empty.csv") == "empty.csv: no rows"


def test_csv_header_only(tmp_path):
    assert csv_error(tmp_path, HEADER) == "data.csv: no rows below the header"


def test_csv_missing_label_column(tmp_path):
    text = "a,b,c\n1,2,3\n"
    assert csv_error(tmp_path, text, "data.csv", "label") == (
        "data.csv: no column 'label' (columns: a, b, c)")
    assert csv_error(tmp_path, text, "data.csv", 3) == (
        "data.csv: no column index 3; the file has 3 columns (indices 0..2, or -3..-1)")
    assert csv_error(tmp_path, text, "data.csv", -4).startswith("data.csv: no column index -4;")


def test_csv_label_name_without_header(tmp_path):
    assert csv_error(tmp_path, "1,2,3\n4,5,6\n", "data.csv", "label") == (
        "data.csv: no column 'label': the file has no header row "
        "(its first row is numbers: 1, 2, 3); give the label column's index")


def test_csv_duplicate_label_name(tmp_path):
    assert csv_error(tmp_path, "y,a,y\n1,2,3\n", "data.csv", "y") == (
        "data.csv: 2 columns are named 'y' (indices 0, 2); give the label column's index")


def test_csv_only_labels(tmp_path):
    assert csv_error(tmp_path, "1\n2\n") == (
        "data.csv: only one column, the labels; expected features beside it")


def test_csv_string_features_with_labels_false(tmp_path):
    # Without labels every column is a feature, so a text label column is an error.
    text = "1,2,cat\n3,4,dog\n"
    assert csv_error(tmp_path, text, labels=False) == (
        "data.csv: column 3, row 1: 'cat' is not a number")


def test_csv_without_pyarrow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataError) as excinfo:
        read_csv(write(tmp_path, "data.csv", ROW))
    assert message(excinfo) == 'reading CSV needs pyarrow: pip install "fastnet[csv]"'


def test_readers_write_nothing(tmp_path, arrays):
    save_npz(tmp_path, **arrays)
    write(tmp_path, "data.csv", HEADER + ROW * 3)
    before = sorted(p.name for p in tmp_path.iterdir())
    read_npz(tmp_path / "data.npz")
    read_csv(tmp_path / "data.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- #
# stratified_split
# --------------------------------------------------------------------------- #


@pytest.fixture
def labelled(rng):
    y = np.repeat(np.array(["a", "b", "c", "d"]), [500, 300, 150, 50])
    y = y[rng.permutation(len(y))]
    x = np.arange(len(y) * 3, dtype=np.float32).reshape(-1, 3)
    return x, y


def test_split_keeps_class_proportions(labelled):
    x, y = labelled
    x_train, y_train, x_test, y_test = stratified_split(x, y, 0.2, seed=1)
    assert len(y_test) == 200 and len(y_train) == 800
    for label, count in zip("abcd", [500, 300, 150, 50]):
        assert (y_test == label).sum() == count // 5, label
    # Every sample is in exactly one part, with its own label, in original order.
    rows = np.concatenate([x_train[:, 0], x_test[:, 0]]) // 3
    assert sorted(rows.tolist()) == list(range(len(y)))
    np.testing.assert_array_equal(y[(x_test[:, 0] // 3).astype(int)], y_test)
    assert np.all(np.diff(x_train[:, 0]) > 0) and np.all(np.diff(x_test[:, 0]) > 0)


def test_split_is_deterministic(labelled):
    x, y = labelled
    first = stratified_split(x, y, 0.3, seed=7)
    again = stratified_split(x, y, 0.3, seed=7)
    other = stratified_split(x, y, 0.3, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


def test_split_loses_no_class():
    y = np.array([0] * 20 + [1, 2, 2, 3, 3, 3])
    x = np.zeros((len(y), 2))
    for seed in range(5):
        _, y_train, _, y_test = stratified_split(x, y, 0.9, seed)
        assert set(y_train.tolist()) == {0, 1, 2, 3}
        assert 1 not in y_test.tolist()


def test_split_rejects_bad_arguments():
    x, y = np.zeros((4, 2)), np.array([0, 0, 1, 1])
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            stratified_split(x, y, fraction, 0)
    with pytest.raises(ValueError, match="x has 4 rows but y has 3"):
        stratified_split(x, y[:3], 0.5, 0)
    with pytest.raises(ValueError, match="no test sample"):
        stratified_split(x[:2], np.array([0, 1]), 0.5, 0)
