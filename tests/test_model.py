"""The MLP: parameter layout, initialisation, and its files.

Loading is checked against files built by hand, one defect at a time, each
of which must be refused with a message that names the file and what was
expected or found. (Prediction is :func:`fastnet.engine.predict_proba`,
tested in tests/test_engine.py.)
"""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from fastnet.model import FORMAT, FORMAT_VERSION, MLP, ModelFormatError

DTYPES = ["float32", "float64"]


def random_model(sizes, dtype, rng):
    """A model with non-zero biases too, so a forward pass that drops them shows."""
    model = MLP(sizes, dtype=dtype, seed=int(rng.integers(1 << 30)))
    for b in model.biases:
        b[...] = rng.normal(0, 0.1, b.shape)
    return model


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --- sizes and layout -----------------------------------------------------------


@pytest.mark.parametrize("sizes", [(), (784,), (784, 0, 10), (784, 128, -1), (0, 10)])
def test_sizes_are_validated(sizes):
    with pytest.raises(ValueError, match="sizes"):
        MLP(sizes)


def test_dtype_is_validated():
    with pytest.raises(ValueError, match="dtype"):
        MLP((4, 3), dtype="float16")


def test_params_argument_is_validated():
    with pytest.raises(ValueError, match=r"params: expected shape \(15,\) float32"):
        MLP((4, 3), params=np.zeros(14, np.float32))
    with pytest.raises(ValueError, match="params"):
        MLP((4, 3), params=np.zeros(15, np.float64))


@pytest.mark.parametrize("sizes", [(784, 10), (784, 128, 10), (5, 7, 3, 2)])
def test_flat_layout_weights_first_then_biases(sizes):
    model = MLP(sizes, dtype="float64")
    shapes = list(zip(sizes[:-1], sizes[1:]))
    n_weights = sum(d * h for d, h in shapes)
    assert model.n_layers == len(sizes) - 1
    assert model.n_weights == n_weights
    assert model.n_params == n_weights + sum(sizes[1:])
    assert model.params.shape == (model.n_params,)
    assert model.params.flags.c_contiguous

    named = model.named_parameters()
    n = model.n_layers
    assert set(named) == {f"W{i}" for i in range(1, n + 1)} | {f"b{i}" for i in range(1, n + 1)}

    # Write each element's flat index into the buffer, then read the views back:
    # W1 row-major, W2, ..., then b1, b2, ...
    model.params[:] = np.arange(model.n_params)
    offset = 0
    for i, (d, h) in enumerate(shapes, start=1):
        w = named[f"W{i}"]
        assert w.shape == (d, h), f"W{i}"
        np.testing.assert_array_equal(w, np.arange(offset, offset + d * h).reshape(d, h), err_msg=f"W{i}")
        offset += d * h
    for i, h in enumerate(sizes[1:], start=1):
        b = named[f"b{i}"]
        assert b.shape == (h,), f"b{i}"
        np.testing.assert_array_equal(b, np.arange(offset, offset + h), err_msg=f"b{i}")
        offset += h
    assert offset == model.n_params


def test_views_share_memory_with_params():
    model = MLP((6, 5, 4), dtype="float32")
    for name, view in model.named_parameters().items():
        assert np.shares_memory(view, model.params), name
        assert view.base is not None, name
    # A write through a view shows in the buffer, and the other way round.
    model.named_parameters()["W2"][1, 2] = 42.0
    assert model.params[6 * 5 + 1 * 4 + 2] == 42.0
    model.params[-1] = -7.0
    assert model.named_parameters()["b2"][-1] == -7.0
    assert model.weights[0] is not None and len(model.weights) == len(model.biases) == 2


def test_params_given_are_used_not_reinitialised():
    params = np.arange(15, dtype=np.float32)
    model = MLP((4, 3), params=params)
    np.testing.assert_array_equal(model.params, params)
    np.testing.assert_array_equal(model.named_parameters()["b1"], [12, 13, 14])


# --- initialisation -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_he_init_statistics(dtype):
    model = MLP((784, 256, 64, 10), dtype=dtype, seed=3)
    assert model.params.dtype == np.dtype(dtype)
    for i, (w, b) in enumerate(zip(model.weights, model.biases), start=1):
        fan_in = w.shape[0]
        expected = np.sqrt(2.0 / fan_in)
        # The sample std of n normal draws has a relative error of about 1/sqrt(2n):
        # 0.16% for W1's 200704, 1.4% for W3's 640; allow 5 of those, at least 1%.
        tol = max(0.01, 5 / np.sqrt(2 * w.size))
        np.testing.assert_allclose(w.std(), expected, rtol=tol, err_msg=f"std of W{i}")
        assert abs(float(w.mean())) < 5 * expected / np.sqrt(w.size), f"mean of W{i}"
        np.testing.assert_array_equal(b, 0, err_msg=f"b{i} must start at zero")


def test_same_seed_same_params_different_seed_different():
    a = MLP((20, 8, 3), seed=11)
    b = MLP((20, 8, 3), seed=11)
    c = MLP((20, 8, 3), seed=12)
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params[: a.n_weights], c.params[: c.n_weights])


def test_float32_and_float64_draw_the_same_init():
    a = MLP((20, 8, 3), dtype="float32", seed=5)
    b = MLP((20, 8, 3), dtype="float64", seed=5)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-6)


# --- files: round trip ----------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_save_load_round_trip(tmp_path, rng, dtype):
    model = random_model((784, 31, 7, 10), dtype, rng)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.sizes == (784, 31, 7, 10)
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.params.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded.params.view(np.uint8), model.params.view(np.uint8))
    # The loaded views still view the loaded buffer.
    for name, view in loaded.named_parameters().items():
        assert np.shares_memory(view, loaded.params), name
    # And the file is a plain npz: schema as JSON text.
    with np.load(path, allow_pickle=False) as npz:
        schema = json.loads(str(npz["schema"]))
    assert schema["format"] == FORMAT and schema["version"] == FORMAT_VERSION
    assert schema["sizes"] == [784, 31, 7, 10] and schema["dtype"] == dtype


def test_save_load_with_state(tmp_path, rng):
    model = random_model((6, 4, 3), "float64", rng)
    path = tmp_path / "ckpt.npz"
    state = {"velocity": rng.normal(size=model.n_params), "order": np.arange(10)}
    model.save(path, arrays=state, meta={"epoch": 3, "note": "x"})
    loaded, arrays, meta = MLP.load(path, with_state=True)
    np.testing.assert_array_equal(loaded.params, model.params)
    assert sorted(arrays) == ["order", "velocity"]
    np.testing.assert_array_equal(arrays["velocity"], state["velocity"])
    np.testing.assert_array_equal(arrays["order"], state["order"])
    assert meta == {"epoch": 3, "note": "x"}
    # A plain model has no state.
    model.save(path)
    _, arrays, meta = MLP.load(path, with_state=True)
    assert arrays == {} and meta is None


def test_save_creates_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "model.npz"
    MLP((4, 3)).save(path)
    assert MLP.load(path).sizes == (4, 3)


def test_load_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "nope.npz")


# --- files: refusals ------------------------------------------------------------


def write_npz(path, schema=None, params=None, **extra):
    """An npz with ``schema`` (a dict, dumped as JSON, or a str taken as is) and ``params``."""
    arrays = dict(extra)
    if schema is not None:
        arrays["schema"] = np.array(schema if isinstance(schema, str) else json.dumps(schema))
    if params is not None:
        arrays["params"] = params
    np.savez(path, **arrays)
    return path


def good_schema(**changes):
    schema = MLP((4, 3)).schema()
    schema.update(changes)
    return schema


GOOD_PARAMS = np.zeros(15, np.float32)  # sizes (4, 3): 4*3 weights + 3 biases


def refusal(path):
    with pytest.raises(ModelFormatError) as info:
        MLP.load(path)
    message = str(info.value)
    assert str(path) in message, f"the message should name the file: {message}"
    return message


def test_load_refuses_random_bytes(tmp_path, rng):
    path = tmp_path / "noise.npz"
    path.write_bytes(rng.integers(0, 256, 1000).astype(np.uint8).tobytes())
    assert "expected an .npz" in refusal(path)


def test_load_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    refusal(path)


def test_load_refuses_an_npz_without_schema(tmp_path):
    path = write_npz(tmp_path / "m.npz", params=GOOD_PARAMS, other=np.zeros(3))
    message = refusal(path)
    assert "'schema'" in message and "'params'" in message, message
    assert "found ['other', 'params']" in message, message


def test_load_refuses_an_npz_without_params(tmp_path):
    path = write_npz(tmp_path / "m.npz", schema=good_schema())
    assert "found ['schema']" in refusal(path)


def test_load_refuses_a_wrong_format(tmp_path):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(format="keras-h5"), params=GOOD_PARAMS)
    message = refusal(path)
    assert f"expected format {FORMAT!r}" in message and "'keras-h5'" in message, message


def test_load_refuses_a_wrong_version(tmp_path):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(version=FORMAT_VERSION + 1), params=GOOD_PARAMS)
    message = refusal(path)
    assert f"version {FORMAT_VERSION}" in message and f"found version {FORMAT_VERSION + 1}" in message, message


@pytest.mark.parametrize("params", [np.zeros(14, np.float32), np.zeros(16, np.float32),
                                    np.zeros((15, 1), np.float32)], ids=["short", "long", "2d"])
def test_load_refuses_wrong_params_shape(tmp_path, params):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(), params=params)
    message = refusal(path)
    assert "(15,) float32" in message and f"found {params.shape}" in message, message


def test_load_refuses_params_of_another_dtype_than_the_schema(tmp_path):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(), params=np.zeros(15, np.float64))
    message = refusal(path)
    assert "(15,) float32" in message and "found (15,) float64" in message, message


@pytest.mark.parametrize("dtype", ["int32", "float16"])
def test_load_refuses_an_unsupported_dtype(tmp_path, dtype):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(dtype=dtype), params=np.zeros(15, dtype))
    message = refusal(path)
    assert "expected dtype one of" in message and dtype in message, message


@pytest.mark.parametrize("schema", [good_schema(sizes=[4]), good_schema(sizes="abc"),
                                    good_schema(dtype="no-such-type"),
                                    {k: v for k, v in good_schema().items() if k != "sizes"}],
                         ids=["one-size", "sizes-str", "dtype-name", "no-sizes"])
def test_load_refuses_bad_sizes_or_dtype(tmp_path, schema):
    path = write_npz(tmp_path / "m.npz", schema=schema, params=GOOD_PARAMS)
    assert re.search("bad sizes or dtype|missing 'sizes'", refusal(path))


@pytest.mark.parametrize("text", ["{not json", "", '{"format": '])
def test_load_refuses_bad_json(tmp_path, text):
    path = write_npz(tmp_path / "m.npz", schema=text, params=GOOD_PARAMS)
    assert "not valid JSON" in refusal(path)


@pytest.mark.parametrize("text", ["[1, 2]", '"fastnet-mlp"', "null"])
def test_load_refuses_json_that_is_not_an_object(tmp_path, text):
    path = write_npz(tmp_path / "m.npz", schema=text, params=GOOD_PARAMS)
    assert "expected the schema to be a JSON object" in refusal(path)


class _Payload:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("where", ["params", "schema", "state_extra"])
def test_load_never_unpickles(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = np.array([_Payload(marker)], dtype=object)
    arrays = {"schema": np.array(json.dumps(good_schema())), "params": GOOD_PARAMS, where: evil}
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)
    # Sanity: the file really would run code if pickles were allowed.
    with np.load(path, allow_pickle=True) as npz:
        npz[where]
    assert marker.exists()
    marker.unlink()

    with pytest.raises(ModelFormatError) as info:
        MLP.load(path, with_state=True)
    assert str(path) in str(info.value)
    assert not marker.exists(), "loading a model ran code from the file"


# --- files: atomic save ---------------------------------------------------------


def test_save_leaves_no_temporary_files(tmp_path, rng):
    model = random_model((8, 5, 3), "float32", rng)
    model.save(tmp_path / "model.npz")
    model.save(tmp_path / "model.npz")  # over an existing file too
    assert listing(tmp_path) == ["model.npz"]


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["oserror", "interrupt"])
def test_failed_save_keeps_the_previous_file(tmp_path, rng, monkeypatch, error):
    path = tmp_path / "model.npz"
    old = random_model((8, 5, 3), "float32", rng)
    old.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # a partial write, then the failure
        raise error

    monkeypatch.setattr(np, "savez", broken_savez)
    new = random_model((8, 5, 3), "float32", rng)
    with pytest.raises(type(error)):
        new.save(path)
    monkeypatch.undo()

    assert listing(tmp_path) == ["model.npz"], "a temporary file was left behind"
    assert path.read_bytes() == before
    np.testing.assert_array_equal(MLP.load(path).params, old.params)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def broken_savez(file, **arrays):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        MLP((4, 3)).save(tmp_path / "model.npz")
    monkeypatch.undo()
    assert listing(tmp_path) == []


def test_saved_file_has_ordinary_permissions(tmp_path):
    # mkstemp creates 0600 files; a saved model is a normal file to share.
    path = tmp_path / "model.npz"
    old_umask = os.umask(0o022)
    try:
        MLP((4, 3)).save(path)
    finally:
        os.umask(old_umask)
    assert path.stat().st_mode & 0o777 == 0o644


# --- classes and standardization (format 2), and format-1 files ---------------------------

FIXTURES = Path(__file__).parent / "data"


def test_a_format_1_file_still_loads():
    """tests/data/model-v1.npz was written by the format-1 writer: MLP((6, 5, 3), seed=7).save(...)."""
    schema = json.loads(str(np.load(FIXTURES / "model-v1.npz")["schema"]))
    assert schema["version"] == 1 and "classes" not in schema
    model = MLP.load(FIXTURES / "model-v1.npz")
    assert model.sizes == (6, 5, 3) and model.dtype == np.float32
    assert model.classes.tolist() == [0, 1, 2] and not model.standardized
    np.testing.assert_array_equal(model.params, MLP((6, 5, 3), seed=7).params)


@pytest.mark.parametrize("classes", [[3, 7, 42], ["cat", "dog", "emu"], [-1, 0, 2**40]])
def test_classes_and_standardization_round_trip(tmp_path, rng, classes):
    mean, std = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    model = MLP((4, 3), classes=classes, mean=mean, std=std)
    model.save(tmp_path / "m.npz")
    schema = json.loads(str(np.load(tmp_path / "m.npz")["schema"]))
    assert schema["version"] == FORMAT_VERSION == 2 and schema["classes"] == classes and schema["standardize"]
    again = MLP.load(tmp_path / "m.npz")
    assert again.classes.tolist() == classes
    np.testing.assert_array_equal(again.mean, mean)
    np.testing.assert_array_equal(again.std, std)
    assert again.decode([2, 0]).tolist() == [classes[2], classes[0]]
    np.testing.assert_array_equal(again.encode(np.array(classes)[[1, 1, 0]]), [1, 1, 0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(classes=[0, 1]), "expected 3 labels"),
    (dict(classes=[2, 1, 0]), "sorted"),
    (dict(classes=[1, 1, 2]), "distinct"),
    (dict(classes=[[0, 1, 2]]), "1-D"),
    (dict(classes=[0.5, 1, 2]), "integer or string"),
    (dict(mean=np.zeros(4)), "both or neither"),
    (dict(mean=np.zeros(3), std=np.ones(3)), r"shape \(4,\)"),
    (dict(mean=np.zeros(4), std=np.full(4, np.nan)), "finite"),
])
def test_classes_and_standardization_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP((4, 3), **kwargs)


V2_BAD = [
    ({"classes": "012"}, {}, "list of integers or of strings"),
    ({"classes": [0, "a", 2]}, {}, "list of integers or of strings"),
    ({"classes": [0, 1]}, {}, "expected 3 labels"),
    ({"classes": [True, False, True]}, {}, "list of integers or of strings"),
    ({"standardize": "yes"}, {}, "true or false"),
    ({"standardize": True}, {}, "needs 'mean' float64 \\(4,\\), found no such array"),
    ({"standardize": True}, {"mean": np.zeros(4, np.float32), "std": np.ones(4)}, "float32"),
]


@pytest.mark.parametrize("changes, arrays, message", V2_BAD)
def test_load_refuses_bad_classes_or_standardization(tmp_path, changes, arrays, message):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(**changes), params=GOOD_PARAMS, **arrays)
    assert re.search(message, refusal(path))


# --- hostile files (issue 15, items 8 and 9) ------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_load_refuses_non_finite_params(tmp_path, value):
    params = GOOD_PARAMS.copy()
    params[4] = value
    path = write_npz(tmp_path / "m.npz", schema=good_schema(), params=params)
    assert "params[4] is" in refusal(path)


@pytest.mark.parametrize("sizes", [[4.5, 3], [4.0, 3], ["4", 3], [True, 3], {"a": 4}])
def test_load_refuses_sizes_that_are_not_whole_numbers(tmp_path, sizes):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(sizes=sizes), params=GOOD_PARAMS)
    assert "bad sizes or dtype" in refusal(path)


def test_load_refuses_unknown_schema_keys_and_arrays(tmp_path):
    path = write_npz(tmp_path / "m.npz", schema=good_schema(extra=1), params=GOOD_PARAMS)
    assert "unexpected 'extra'" in refusal(path)
    path = write_npz(tmp_path / "n.npz", schema=good_schema(), params=GOOD_PARAMS, weights=np.zeros(3))
    assert "unexpected arrays 'weights'" in refusal(path)


def test_a_header_claiming_1e12_elements_is_refused_before_it_is_read(tmp_path):
    import io
    import zipfile

    path = write_npz(tmp_path / "m.npz", schema=good_schema(), params=GOOD_PARAMS)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("params.npy", head.getvalue() + bytes(64))  # a second params member
    assert "twice" in refusal(path)
    path = write_npz(tmp_path / "n.npz", schema=good_schema())
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("params.npy", head.getvalue() + bytes(64))
    assert "need params of shape (15,) float32, found (1000000000000,) float32" in refusal(path)


def test_a_model_2000_layers_deep_predicts(tmp_path):
    """Issue 15 found a 2000-layer model giving a Numba traceback; the engine now loops over layers."""
    from fastnet.engine import predict_proba

    MLP([6] + [2] * 2000 + [3], seed=1).save(tmp_path / "deep.npz")
    probs = predict_proba(MLP.load(tmp_path / "deep.npz"), np.zeros((2, 6), np.uint8))
    assert probs.shape == (2, 3) and np.isfinite(probs).all()
