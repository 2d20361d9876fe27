"""The multilayer perceptron: its parameters and its file format.

All parameters live in one flat buffer, weights first and biases after, with
named views into it (``W1, W2, ..., b1, b2, ...``). An update rule then runs
over two contiguous slices -- every weight, every bias -- and the weight
decay can spare the biases. Each weight is stored ``(D, H)``, inputs by
outputs (see :mod:`fastnet.kernels`).

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
FORMAT_VERSION = 1


class ModelFormatError(ValueError):
    """A model or checkpoint file that fastnet cannot load."""


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
    """

    def __init__(self, sizes, *, dtype="float32", seed=0, params=None):
        self.sizes = _check_sizes(sizes)
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
        }

    def save(self, path, *, arrays=None, meta=None):
        """Write the model to ``path`` (``.npz``) atomically: a temporary file in
        the same folder, then a rename, so an interruption never leaves a
        broken file behind. ``arrays`` and ``meta`` add training state."""
        schema = self.schema()
        if meta:
            schema["training"] = meta
        payload = {"params": self.params, "schema": np.array(json.dumps(schema))}
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
                files = {name: npz[name] for name in npz.files}
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
        if schema.get("version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{path}: expected {FORMAT} version {FORMAT_VERSION}, found version {schema.get('version')!r}"
                " (written by another fastnet release?)"
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
        model = cls(sizes, dtype=dtype, params=params)
        if not with_state:
            return model
        arrays = {name[len("state_"):]: value for name, value in files.items() if name.startswith("state_")}
        return model, arrays, schema.get("training")


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
