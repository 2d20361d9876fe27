"""The multilayer perceptron: parameters, workspace, prediction, files.

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
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import engine as _engine
from ._files import atomic_write
from .config import DTYPES

FORMAT = "fastnet-mlp"
FORMAT_VERSION = 1
#: How many parts the sparse kernels split their work into (their scratch rows).
SCRATCH_PARTS = 16


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

    # --- prediction ------------------------------------------------------------

    def predict_proba(self, images, *, batch_size=2048, engine="numba", scale=1 / 255):
        """Class probabilities ``(N, K)`` for ``images``: ``(N, D)`` or ``(N, 28, 28)``,
        uint8 pixels (multiplied by ``scale``) or floats (with ``scale=1``)."""
        images = self._as_rows(images)
        ops = _engine.get(engine)
        n = images.shape[0]
        out = np.empty((n, self.sizes[-1]), self.dtype)
        ws = Workspace(self.sizes, min(batch_size, max(n, 1)), self.dtype, input_dtype=images.dtype)
        order = np.arange(n, dtype=np.int64)
        no_labels = np.zeros(n, np.uint8)  # gather_batch fills y too; prediction ignores it
        for start in range(0, n, ws.batch_size):
            view = ws.rows(min(ws.batch_size, n - start))
            ops.gather_batch(view.x, view.y, images, no_labels, order, start, 1.0)
            ops.forward(view.probs, view.losses, view.acts, view.pre, view.row_index, view.scratch, view.x, view.y,
                        self.weights, self.biases, scale)
            out[start:start + view.batch_size] = view.probs
        return out

    def predict(self, images, **kwargs):
        """The most probable class of each image, as int64 ``(N,)``."""
        return self.predict_proba(images, **kwargs).argmax(axis=1)

    def _as_rows(self, images):
        images = np.asarray(images)
        if images.ndim >= 2:
            images = images.reshape(images.shape[0], math.prod(images.shape[1:]))
        if images.ndim != 2 or images.shape[1] != self.sizes[0]:
            raise ValueError(
                f"images: expected (N, {self.sizes[0]}) or (N, ...) with {self.sizes[0]} values "
                f"per sample, got shape {np.shape(images)}"
            )
        return np.ascontiguousarray(images)

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


def atomic_savez(path, payload):
    """``np.savez`` to ``path`` atomically (see :func:`fastnet._files.atomic_write`)."""
    with atomic_write(path) as f:
        np.savez(f, **payload)


@dataclass
class _Rows:
    batch_size: int
    x: np.ndarray
    y: np.ndarray
    acts: tuple
    pre: tuple
    dacts: tuple
    row_index: tuple
    col_index: tuple
    scratch: np.ndarray
    probs: np.ndarray
    losses: np.ndarray


class Workspace:
    """Every buffer one forward and backward pass needs, allocated once.

    ``x (B, D)`` the batch as stored (``input_dtype``: uint8 pixels, which the
    first layer scales as it reads them), ``y (B,)`` its labels; for each
    hidden layer ``i``, ``pre[i] (B, H_i)`` its output before the ReLU (the
    backward pass reuses it for the gradient with respect to ``acts[i]``),
    ``acts[i]`` after it, and ``dacts[i]`` the gradient with respect to
    ``pre[i]`` (each tuple ends with an empty entry for the output layer);
    ``probs (B, K)`` and ``losses (B,)`` the output layer's softmax and
    cross-entropy. ``row_index``, ``col_index`` and ``scratch`` are the
    kernels' scratch. :meth:`rows` gives the same buffers cut to fewer rows,
    for the last, shorter batch of an epoch.
    """

    def __init__(self, sizes, batch_size, dtype, input_dtype=np.uint8):
        self.sizes = _check_sizes(sizes)
        self.batch_size = int(batch_size)
        B = self.batch_size
        self.x = np.zeros((B, sizes[0]), input_dtype)
        self.y = np.zeros(B, np.int32)
        # one entry per layer, so that the tuples' type does not depend on the
        # depth; the output layer's are empty (the classifier kernels need none)
        widths = sizes[1:-1] + (0,)
        self.acts = tuple(np.zeros((B, h), dtype) for h in widths)
        # separate from acts: a kernel whose output is its input does not vectorise
        self.pre = tuple(np.zeros((B, h), dtype) for h in widths)
        self.dacts = tuple(np.zeros((B, h), dtype) for h in widths)
        self.row_index = tuple(np.zeros((SCRATCH_PARTS, d), np.int32) for d in sizes[:-1])
        self.scratch = np.zeros((SCRATCH_PARTS + 1, sizes[-1], sizes[-2] + 1), dtype)
        self.col_index = tuple(np.zeros((SCRATCH_PARTS, B), np.int32) for _ in sizes[:-1])
        self.probs = np.zeros((B, sizes[-1]), dtype)
        self.losses = np.zeros(B, dtype)

    def rows(self, n):
        """The buffers cut to their first ``n`` rows (C-contiguous views)."""
        return _Rows(
            n,
            self.x[:n],
            self.y[:n],
            tuple(a[:n] for a in self.acts),
            tuple(a[:n] for a in self.pre),
            tuple(a[:n] for a in self.dacts),
            self.row_index,
            self.col_index,  # the kernels use only the first n columns
            self.scratch,
            self.probs[:n],
            self.losses[:n],
        )
