"""The multilayer perceptron: its parameters, its classes, its preprocessing, and its file format.

All parameters live in one flat buffer, weights first and biases after, with
named views into it (``W1, W2, ..., b1, b2, ...``). An update rule then runs
over two contiguous slices -- every weight, every bias -- and the weight
decay can spare the biases. Each weight is stored ``(D, H)``, inputs by
outputs (see :mod:`fastnet.kernels`).

A model also knows what it was trained on: ``classes``, the label of each
output unit (integers or strings, sorted), and, when trained with
standardization, each input feature's ``mean`` and ``std`` on the training
set. Every prediction path applies them (see :func:`fastnet.engine.predict_proba`).

Saved models are ``.npz`` files holding plain arrays and a JSON schema, read
with ``allow_pickle=False``: a file cannot run code when it is loaded, and a
file with the wrong format, version, shapes or dtype is refused with a
:class:`ModelFormatError` that says what was expected and what was found.
"""
import json
import math
import operator
import re
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ._files import atomic_savez
from .config import DTYPES

FORMAT = "fastnet-mlp"
#: Version 2 added the class labels and the standardization; version 1 files
#: still load (classes ``0..K-1``, no standardization).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class ModelFormatError(ValueError):
    """A model or checkpoint file that fastnet cannot load."""


def check_classes(classes, what="classes"):
    """``classes`` as a sorted 1-D array of distinct integers (int64) or strings;
    ValueError naming ``what`` otherwise."""
    classes = label_array(classes, what)
    if classes.dtype.kind in "iu":
        classes = classes.astype(np.int64)
    if classes.size > 1 and not np.all(classes[1:] > classes[:-1]):
        raise ValueError(f"{what}: expected distinct labels in sorted order, got {_shown(classes)}")
    return classes


def _shown(values, limit=10):
    values = [v.item() if hasattr(v, "item") else v for v in values]
    return repr(values) if len(values) <= limit else repr(values[:limit])[:-1] + ", ...]"


def _check_sizes(sizes, strict=False):
    """``sizes`` as a tuple of whole widths >= 1, at least two; ``strict``: a list
    of JSON integers (as a file's schema holds them), nothing else."""
    if strict and not isinstance(sizes, list):
        raise ValueError(f"expected a list of widths, got {type(sizes).__name__}")
    try:
        sizes = tuple(sizes)
        if any(isinstance(s, bool) for s in sizes):
            raise TypeError("true/false is not a width")
        sizes = tuple(operator.index(s) for s in sizes)
    except TypeError as exc:
        raise ValueError(f"sizes: expected whole widths, got {str(sizes)[:80]} ({exc})") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes: expected at least an input and an output width, all >= 1, got {str(sizes)[:80]}")
    return sizes


class MLP:
    """A ReLU multilayer perceptron with a softmax output.

    ``sizes`` lists the widths from input to output, e.g. ``(784, 128, 10)``
    or ``(784, 512, 256, 10)``. Weights start from He initialisation
    (normal, standard deviation ``sqrt(2 / fan_in)``) drawn from
    ``np.random.default_rng(seed)``; biases start at zero.

    ``classes`` labels the output units (default ``0..K-1``). ``mean`` and
    ``std``, each ``(D,)``, standardize every input as
    ``(x - mean) / std`` before the first layer (default: inputs used as
    they are). A zero ``std`` (a constant feature) is replaced by 1.
    """

    def __init__(self, sizes, *, dtype="float32", seed=0, params=None, classes=None, mean=None, std=None):
        self.sizes = _check_sizes(sizes)
        K = self.sizes[-1]
        self.classes = np.arange(K, dtype=np.int64) if classes is None else check_classes(classes)
        if self.classes.shape != (K,):
            raise ValueError(f"classes: expected {K} labels, one per output unit, got {self.classes.shape[0]}")
        if (mean is None) != (std is None):
            raise ValueError("mean, std: expected both or neither")
        self.mean = self.std = None
        if mean is not None:
            D = self.sizes[0]
            mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
            if mean.shape != (D,) or std.shape != (D,):
                raise ValueError(f"mean, std: expected shape ({D},) each, got {mean.shape} and {std.shape}")
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
                raise ValueError("mean, std: expected finite values, and std >= 0")
            self.mean, self.std = mean, np.where(std > 0, std, 1.0)
        if str(np.dtype(dtype)) not in DTYPES:
            raise ValueError(f"dtype: expected one of {DTYPES}, got {np.dtype(dtype)}")
        self.dtype = np.dtype(dtype)
        shapes = list(zip(self.sizes[:-1], self.sizes[1:]))
        self.n_weights = sum(d * h for d, h in shapes)
        self.n_params = self.n_weights + sum(self.sizes[1:])
        if params is None:
            self.params = np.zeros(self.n_params, self.dtype)
        else:
            params = np.asarray(params)
            if params.shape != (self.n_params,) or params.dtype != self.dtype:
                raise ValueError(
                    f"params: expected shape ({self.n_params},) {self.dtype}, "
                    f"got {params.shape} {params.dtype}"
                )
            self.params = np.ascontiguousarray(params)
        self.weights, self.biases = split_params(self.params, self.sizes)
        if params is None:
            rng = np.random.default_rng(seed)
            for w in self.weights:
                w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / w.shape[0])

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    def named_parameters(self):
        """``{"W1": ..., "b1": ..., ...}``: views into the flat buffer."""
        named = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases), start=1):
            named[f"W{i}"] = w
            named[f"b{i}"] = b
        return named

    @property
    def standardized(self):
        return self.mean is not None

    def decode(self, indices):
        """The class labels of output-unit ``indices``."""
        return self.classes[np.asarray(indices)]

    def encode(self, labels, what="labels"):
        """``labels`` as output-unit indices (int32); ValueError naming the first
        label that is not one of :attr:`classes`."""
        return encode_labels(labels, self.classes, what)

    def __repr__(self):
        return f"MLP(sizes={self.sizes}, dtype={self.dtype}, params={self.n_params})"

    # --- files -----------------------------------------------------------------

    def schema(self):
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "sizes": list(self.sizes),
            "dtype": str(self.dtype),
            "layout": "flat: W1..Wn (inputs, outputs) row-major, then b1..bn",
            "classes": self.classes.tolist(),
            "standardize": self.standardized,
        }

    def save(self, path, *, arrays=None, meta=None):
        """Write the model to ``path`` (``.npz``) atomically: a temporary file in
        the same folder, then a rename, so an interruption never leaves a
        broken file behind. ``arrays`` and ``meta`` add training state."""
        schema = self.schema()
        if meta:
            schema["training"] = meta
        payload = {"params": self.params, "schema": np.array(json.dumps(schema))}
        if self.standardized:
            payload["mean"], payload["std"] = self.mean, self.std
        for name, value in (arrays or {}).items():
            payload[f"state_{name}"] = value
        atomic_savez(path, payload)

    @classmethod
    def load(cls, path, *, with_state=False, with_meta=False):
        """Read a model written by :meth:`save`.

        With ``with_meta``, return ``(model, meta)``: the ``meta`` saved beside
        it (None if none), and no training-state array is read. With
        ``with_state``, return ``(model, arrays, meta)``, ``arrays`` holding
        every training-state array (see :func:`read_state` to read a known
        set, each checked against its expected shape and dtype).

        Every array's npy header is checked against what the schema says it
        must hold before its data is read, so a small file cannot make this
        allocate more than the model itself needs."""
        with _Archive(path) as archive:
            model, meta = archive.model()
            if with_state:
                arrays = {name[len("state_"):]: archive.read_any(name)
                          for name in archive.names if name.startswith("state_")}
                return model, arrays, meta
        return (model, meta) if with_meta else model


#: The schema's keys, by format version ("training" is optional in each).
_SCHEMA_KEYS = {1: {"format", "version", "sizes", "dtype", "layout"},
                2: {"format", "version", "sizes", "dtype", "layout", "classes", "standardize"}}
_LAYOUT = "flat: W1..Wn (inputs, outputs) row-major, then b1..bn"
#: The longest schema (JSON text, in characters) a file may hold: room for a
#: hundred thousand class labels, a deep network and a long training history.
MAX_SCHEMA_CHARS = 1 << 24
#: What a file's member may be called: ``NAME.npy``.
_MEMBER = re.compile(r"([A-Za-z0-9_]+)\.npy")
#: What reading a damaged or hostile zip file can raise.
#: (NumPy parses an npy header with Python's tokenizer: a damaged one can raise its TokenError.)
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
                RuntimeError, OverflowError, KeyError, TypeError, SyntaxError, tokenize.TokenError)


class _Archive:
    """An ``.npz`` file opened for checked reading: its members are listed
    once, and each array's npy header (version, dtype, shape) is decoded and
    compared with what the caller expects before a byte of its data is read."""

    def __init__(self, path):
        self.path = Path(path)
        with open(self.path, "rb") as f:  # FileNotFoundError, IsADirectoryError: the caller's to word
            magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise ModelFormatError(
                f"{self.path}: not a fastnet model: expected an .npz (zip) file, found "
                f"{'an empty file' if not magic else 'bytes ' + repr(magic)}"
            )
        try:
            self.zip = zipfile.ZipFile(self.path)
            infos = self.zip.infolist()
        except _READ_ERRORS as exc:
            raise self.error(f"not a fastnet model (expected an .npz file): {exc}") from None
        self.members = {}
        for info in infos:
            match = _MEMBER.fullmatch(info.filename)
            if match is None or match[1] in self.members:
                self.zip.close()
                what = "twice" if match else "(expected NAME.npy members only)"
                raise self.error(f"not a fastnet model: holds {info.filename[:80]!r} {what}")
            self.members[match[1]] = info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    @property
    def names(self):
        return list(self.members)

    def error(self, message):
        return ModelFormatError(f"{self.path}: {message}")

    def header(self, name):
        """``(shape, dtype)`` of array ``name``, from its npy header alone."""
        try:
            with self.zip.open(self.members[name]) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"npy format version {version} (expected 1.0 or 2.0)")
        except _READ_ERRORS as exc:
            raise self.error(f"array {name!r} is damaged: {str(exc)[:200]}") from None
        if fortran and len(shape) > 1:
            raise self.error(f"array {name!r}: expected C order, found Fortran order")
        return shape, dtype

    def read(self, name, shape, dtype, what=None):
        """Array ``name``, refused unless its header says ``shape`` and ``dtype``; the
        refusal begins with ``what`` (default: "expected 'name'")."""
        found = self.header(name)
        if found != (tuple(shape), np.dtype(dtype)):
            raise self.error(f"{what or f'expected {name!r}'} of shape {tuple(shape)} {np.dtype(dtype)}, "
                             f"found {found[0]} {found[1]}")
        return self._data(name, found)

    def read_any(self, name):
        """A 1-D numeric array ``name`` of any length the memory can hold (training state)."""
        shape, dtype = self.header(name)
        if len(shape) != 1 or dtype.kind not in "biuf" or dtype.hasobject:
            raise self.error(f"array {name!r}: expected a 1-D numeric array, found {dtype} {shape}")
        return self._data(name, (shape, dtype))

    def _data(self, name, header):
        shape, dtype = header
        try:
            check_memory(math.prod(shape) * dtype.itemsize, f"array {name!r}")
        except MemoryError as exc:
            raise self.error(str(exc)) from None
        try:
            with self.zip.open(self.members[name]) as f:
                array = np.lib.format.read_array(f, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise self.error(f"array {name!r} is damaged (truncated?): {str(exc)[:200]}") from None
        if array.shape != shape or array.dtype != dtype:  # a header that changed under us
            raise self.error(f"array {name!r}: expected {dtype} {shape}, found {array.dtype} {array.shape}")
        return array

    def schema(self):
        for name in ("schema", "params"):
            if name not in self.members:
                raise self.error(f"not a fastnet model: expected arrays 'schema' and 'params', "
                                 f"found {sorted(self.members) or 'none'}")
        shape, dtype = self.header("schema")
        if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * MAX_SCHEMA_CHARS:
            raise self.error(f"expected the schema as JSON text of at most {MAX_SCHEMA_CHARS} characters, "
                             f"found {dtype} {shape}")
        try:
            schema = json.loads(str(self._data("schema", (shape, dtype))))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, and integers too long to convert
            raise self.error(f"schema is not valid JSON: {str(exc)[:200]}") from None
        if not isinstance(schema, dict):
            raise self.error(f"expected the schema to be a JSON object, found {type(schema).__name__}")
        return schema

    def model(self):
        """``(MLP, meta)``: the model checked against its schema, and the schema's "training"."""
        schema = self.schema()
        if schema.get("format") != FORMAT:
            raise self.error(f"expected format {FORMAT!r}, found {_short(schema.get('format'))}")
        version = schema.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise self.error(
                f"expected {FORMAT} version {FORMAT_VERSION} (or an older: "
                f"{', '.join(map(str, READABLE_VERSIONS[:-1]))}), "
                f"found version {_short(version)} (written by another fastnet release?)"
            )
        keys = _SCHEMA_KEYS[version]
        missing, extra = sorted(keys - set(schema)), sorted(set(schema) - keys - {"training"})
        if missing or extra:
            raise self.error(f"schema of version {version}: "
                             + "; ".join(f"{what} {', '.join(map(repr, names))[:200]}"
                                         for what, names in (("missing", missing), ("unexpected", extra)) if names))
        if schema["layout"] != _LAYOUT:
            raise self.error(f"expected the layout {_LAYOUT!r}, found {_short(schema['layout'])}")
        meta = schema.get("training")
        if meta is not None and not isinstance(meta, dict):
            raise self.error(f"expected 'training' in the schema to be a JSON object, found {type(meta).__name__}")
        try:
            sizes = _check_sizes(schema["sizes"], strict=True)
        except (TypeError, ValueError) as exc:
            raise self.error(f"bad sizes or dtype in schema: {exc}") from None
        dtype = schema["dtype"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise self.error(f"bad sizes or dtype in schema: expected dtype one of {DTYPES}, found {_short(dtype)}")
        dtype = np.dtype(dtype)
        expected = sum(d * h + h for d, h in zip(sizes[:-1], sizes[1:]))
        params = self.read("params", (expected,), dtype,
                           what=f"sizes {_short(list(sizes))} {dtype} need params")
        bad = first_non_finite_index(params)
        if bad is not None:
            raise self.error(f"params[{bad}] is {params[bad]}: expected finite weights and biases "
                             "(saved from a run that diverged?)")
        extra = _read_v2_fields(self, schema, sizes) if version >= 2 else {}
        allowed = {"schema", "params"} | ({"mean", "std"} if extra.get("mean") is not None else set())
        unexpected = sorted(n for n in self.members if n not in allowed and not n.startswith("state_"))
        if unexpected:
            raise self.error(f"unexpected arrays {', '.join(map(repr, unexpected))[:200]} "
                             f"(expected {', '.join(sorted(allowed))} and training state_*)")
        try:
            model = MLP(sizes, dtype=dtype, params=params, **extra)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        return model, meta


def read_state(path, expected):
    """The training-state arrays of the file ``path``: ``expected`` maps each
    name (without its ``state_`` prefix) to ``(shape, dtype)``. An array of
    another name, shape or dtype is refused before it is read; an expected
    one that is absent is left out of the returned dict."""
    with _Archive(path) as archive:
        unknown = sorted(n for n in archive.names if n.startswith("state_") and n[len("state_"):] not in expected)
        if unknown:
            raise archive.error(f"unexpected training state {', '.join(unknown)[:200]} "
                                f"(expected {', '.join('state_' + n for n in expected)})")
        return {name: archive.read(f"state_{name}", shape, dtype, what=f"expected state_{name}")
                for name, (shape, dtype) in expected.items() if f"state_{name}" in archive.members}


def first_non_finite_index(values, chunk=1 << 16):
    """The index of the first NaN or infinity in the 1-D float array ``values``, or None
    (checked a chunk at a time, so no temporary the size of ``values`` is made)."""
    for start in range(0, values.shape[0], chunk):
        ok = np.isfinite(values[start:start + chunk])
        if not ok.all():
            return start + int(np.argmin(ok))
    return None


def available_memory():
    """Bytes this process may still allocate, as far as can be told: the
    smaller of the memory the system reports available and what the address
    space limit (``RLIMIT_AS``) leaves; None if neither is known."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            used = 0
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        used = int(line.split()[1]) * 1024
            limits.append(max(soft - used, 0))
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return min(limits) if limits else None


def check_memory(nbytes, what):
    """MemoryError naming ``what`` and the figures if ``nbytes`` more bytes would not fit."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs {_bytes(nbytes)}, more than the {_bytes(available)} of memory available")


def _short(value, limit=80):
    """``repr(value)``, cut to ``limit`` characters: a hostile file's values go into one line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bytes(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def _read_v2_fields(archive, schema, sizes):
    """The classes and standardization of a version-2 file, checked."""
    classes = schema.get("classes")
    if not isinstance(classes, list) or not (
        all(isinstance(c, int) and not isinstance(c, bool) and -2**63 <= c < 2**63 for c in classes)
        or all(isinstance(c, str) for c in classes)
    ):
        raise archive.error(f"expected 'classes' in the schema to be a list of integers or of strings "
                            f"(integers within int64), found {_short(classes)}")
    standardize = schema.get("standardize")
    if not isinstance(standardize, bool):
        raise archive.error(f"expected 'standardize' in the schema to be true or false, "
                            f"found {_short(standardize)}")
    extra = {"classes": np.array(classes) if classes else np.zeros(0, np.int64)}
    if standardize:
        D = sizes[0]
        for name in ("mean", "std"):
            if name not in archive.members:
                raise archive.error(f"a standardized model needs '{name}' float64 ({D},), found no such array")
            extra[name] = archive.read(name, (D,), np.float64,
                                       what=f"a standardized model needs '{name}'")
    return extra


def label_array(labels, what="labels"):
    """``labels`` as a 1-D array of integers or of strings (bytes and Python
    strings become NumPy strings); ValueError naming ``what`` otherwise."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "S" or (labels.dtype.kind == "O" and all(isinstance(v, str) for v in labels.flat)):
        labels = labels.astype(str)
    if labels.ndim != 1 or labels.dtype.kind not in "iuU":
        raise ValueError(f"{what}: expected a 1-D array of integer or string labels, "
                         f"got {labels.dtype} {labels.shape}")
    return labels


def encode_labels(labels, classes, what="labels"):
    """``labels`` (1-D) as indices into the sorted ``classes`` (int32); ValueError
    naming the first label that is not one of them."""
    labels = label_array(labels, what)
    if labels.size == 0:
        return np.zeros(0, np.int32)
    if (labels.dtype.kind in "iu") != (classes.dtype.kind in "iu") or labels.dtype.kind not in "iuU":
        raise ValueError(f"{what}: expected labels like the classes {_shown(classes)}, got {labels.dtype} values "
                         f"such as {_shown(labels[:3])}")
    at = np.searchsorted(classes, labels)
    at_clipped = np.minimum(at, len(classes) - 1)
    unseen = classes[at_clipped] != labels
    if unseen.any():
        i = int(np.argmax(unseen))
        raise ValueError(f"{what}: label {labels[i].item()!r} (sample {i}) is not one of the model's classes "
                         f"{_shown(classes)}")
    return at.astype(np.int32)


def split_params(flat, sizes):
    """Views ``(weights, biases)`` into a flat buffer laid out as :class:`MLP` lays it out."""
    weights, biases = [], []
    offset = 0
    for d, h in zip(sizes[:-1], sizes[1:]):
        weights.append(flat[offset:offset + d * h].reshape(d, h))
        offset += d * h
    for h in sizes[1:]:
        biases.append(flat[offset:offset + h])
        offset += h
    return tuple(weights), tuple(biases)
