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
import zipfile
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


def _check_sizes(sizes):
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes: expected at least an input and an output width, all >= 1, got {sizes}")
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
    def load(cls, path, *, with_state=False):
        """Read a model written by :meth:`save`. With ``with_state``, also return
        ``(arrays, meta)``: the training state saved beside it, if any."""
        path = Path(path)
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"PK\x03\x04":
            raise ModelFormatError(
                f"{path}: not a fastnet model: expected an .npz (zip) file, found "
                f"{'an empty file' if not magic else 'bytes ' + repr(magic)}"
            )
        try:
            with np.load(path, allow_pickle=False) as npz:
                # a model alone needs no training state: leave those arrays unread
                wanted = [n for n in npz.files if with_state or not n.startswith("state_")]
                files = {name: npz[name] for name in wanted}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFormatError(f"{path}: not a fastnet model (expected an .npz file): {exc}") from None
        if "schema" not in files or "params" not in files:
            raise ModelFormatError(
                f"{path}: not a fastnet model: expected arrays 'schema' and 'params', "
                f"found {sorted(files) or 'none'}"
            )
        try:
            schema = json.loads(str(files["schema"]))
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{path}: schema is not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise ModelFormatError(f"{path}: expected the schema to be a JSON object, found {type(schema).__name__}")
        if schema.get("format") != FORMAT:
            raise ModelFormatError(f"{path}: expected format {FORMAT!r}, found {schema.get('format')!r}")
        version = schema.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ModelFormatError(
                f"{path}: expected {FORMAT} version {FORMAT_VERSION} (or an older: "
                f"{', '.join(map(str, READABLE_VERSIONS[:-1]))}), "
                f"found version {version!r} (written by another fastnet release?)"
            )
        try:
            sizes = _check_sizes(schema["sizes"])
            dtype = np.dtype(schema["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: bad sizes or dtype in schema: {exc}") from None
        if str(dtype) not in DTYPES:
            raise ModelFormatError(f"{path}: expected dtype one of {DTYPES}, found {dtype}")
        params = files["params"]
        expected = sum(d * h + h for d, h in zip(sizes[:-1], sizes[1:]))
        if params.shape != (expected,) or params.dtype != dtype:
            raise ModelFormatError(
                f"{path}: sizes {list(sizes)} {dtype} need params of shape ({expected},) {dtype}, "
                f"found {params.shape} {params.dtype}"
            )
        extra = {}
        if version >= 2:
            extra = _read_v2_fields(path, schema, files, sizes)
        try:
            model = cls(sizes, dtype=dtype, params=params, **extra)
        except ValueError as exc:
            raise ModelFormatError(f"{path}: {exc}") from None
        if not with_state:
            return model
        arrays = {name[len("state_"):]: value for name, value in files.items() if name.startswith("state_")}
        return model, arrays, schema.get("training")


def _read_v2_fields(path, schema, files, sizes):
    """The classes and standardization of a version-2 file, checked."""
    classes = schema.get("classes")
    if not isinstance(classes, list) or not (
        all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
        or all(isinstance(c, str) for c in classes)
    ):
        raise ModelFormatError(f"{path}: expected 'classes' in the schema to be a list of integers or of strings, "
                               f"found {str(classes)[:80]}")
    standardize = schema.get("standardize")
    if not isinstance(standardize, bool):
        raise ModelFormatError(f"{path}: expected 'standardize' in the schema to be true or false, "
                               f"found {standardize!r}")
    extra = {"classes": np.array(classes) if classes else np.zeros(0, np.int64)}
    if standardize:
        D = sizes[0]
        for name in ("mean", "std"):
            a = files.get(name)
            if a is None or a.shape != (D,) or a.dtype != np.float64:
                found = "no such array" if a is None else f"{a.dtype} {a.shape}"
                raise ModelFormatError(f"{path}: a standardized model needs '{name}' float64 ({D},), found {found}")
            extra[name] = a
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
