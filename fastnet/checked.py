"""The kernels of :mod:`fastnet.kernels`, checked before they run: for Python callers.

A raw kernel trusts its caller: hand it a float64 array among float32 ones, a
transposed view, or a weight of the wrong width, and Numba answers with pages
of typing output, or the kernel reads past the end of an array. Each function
here has the same name and signature as the kernel it wraps, checks its
arguments, then calls the kernel::

    from fastnet import checked as K

    K.linear_forward(out, inp, weight, bias)

Checks, in this order, each naming the argument at fault:

- every array argument is a NumPy array (``TypeError``);
- its number of dimensions (``ValueError``);
- dtypes: the floating-point arrays of a call share one dtype, float32 or
  float64 (a blocked kernel's scratch ``pack`` too); labels, ``order`` and
  scratch ``index`` are integer arrays (``TypeError``);
- C-contiguity, and that outputs are writeable (``ValueError``);
- shapes against each other, in the letters of the legend in
  :mod:`fastnet.kernels` (``ValueError``), e.g. ``linear_forward: weight has
  shape (784, 100), expected (D, H) = (784, 128) from inp (B, D) = (32, 784)
  and out (B, H) = (32, 128)``; scratch at least as long as its kernel
  needs (the blocked kernels' ``pack``: ``kernels.pack_size`` of the
  shapes);
- values a kernel would use as indices without a bounds check: labels in
  ``0..K-1``, ``order[start:start+B]`` in ``0..N-1``, an image ``width``
  that divides ``D`` (``ValueError``);
- outputs that overlap another argument, except where the kernel allows
  the very same array (``relu_forward(a, a)``) (``ValueError``).

Scalars are converted once (``float(lr)``, ``int(step)``, ``bool(nesterov)``)
so a Python int and a float do not compile two versions of a kernel.

The checks cost a few microseconds per call and read no more than the labels
and the batch's ``order``. Inside your own ``@njit`` code, call
:mod:`fastnet.kernels` directly: these wrappers are Python functions.

Every kernel's arguments are described once, in :data:`SPECS`.
"""
import inspect
import numbers
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import kernels

FLOAT = "float"      # float32 or float64, one dtype for all of a call's float arrays
INT = "int"          # any integer dtype
NUMBER = "number"    # any integer or float dtype (gather_batch's and augment_batch's images)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Array:
    """One array argument: its dtype kind, its dims in legend letters, its role.

    A dim is a letter (``"B"``), which must agree across the call's
    arguments; ``">=B"``, at least that letter's size; ``"0|B"``, that size
    or 0; ``"D+1"``, one more than ``D``; ``"S>=1"``, a size of the
    caller's choosing, at least 1; or ``"P>=pack_size(B,D,H)"``, a length of
    the caller's choosing, at least what a helper of :mod:`fastnet.kernels`
    (:data:`SIZE_HELPERS`) gives for those letters' sizes. ``role`` is
    ``"in"``, ``"out"`` (overwritten), ``"inout"`` (read and updated) or
    ``"scratch"``.
    """

    kind: str
    dims: tuple
    role: str = "in"

    @property
    def written(self):
        return self.role != "in"


@dataclass(frozen=True)
class Scalar:
    """One scalar argument, converted with ``convert`` (``float``, ``int`` or ``bool``);
    ``minimum`` is its least allowed value, if any."""

    convert: type
    minimum: float = None


def In(kind, *dims):
    return Array(kind, dims, "in")


def Out(kind, *dims):
    return Array(kind, dims, "out")


def InOut(kind, *dims):
    return Array(kind, dims, "inout")


def Scratch(kind, *dims):
    return Array(kind, dims, "scratch")


REAL = Scalar(float)

#: The helpers a dim may call (``"P>=pack_size(B,D,H)"``): the least length of a scratch buffer.
SIZE_HELPERS = {"pack_size": kernels.pack_size}

#: Every public kernel's arguments, in its own order; ``alias`` lists the
#: (output, input) pairs that may be the very same array; ``labels`` maps an
#: integer argument to the letter its values must stay below; ``divides`` an
#: integer scalar to the letter whose size it must divide.
SPECS = {
    "linear_forward": dict(
        args=dict(out=Out(FLOAT, "B", "H"), inp=In(FLOAT, "B", "D"), weight=In(FLOAT, "D", "H"),
                  bias=In(FLOAT, "H"))),
    "linear_backward": dict(
        args=dict(dinp=Out(FLOAT, "B", "D"), dweight=Out(FLOAT, "D", "H"), dbias=Out(FLOAT, "H"),
                  dout=In(FLOAT, "B", "H"), inp=In(FLOAT, "B", "D"), weight=In(FLOAT, "D", "H"))),
    "linear_backward_params": dict(
        args=dict(dweight=Out(FLOAT, "D", "H"), dbias=Out(FLOAT, "H"), dout=In(FLOAT, "B", "H"),
                  inp=In(FLOAT, "B", "D"))),
    "linear_backward_input": dict(
        args=dict(dinp=Out(FLOAT, "B", "D"), dout=In(FLOAT, "B", "H"), weight=In(FLOAT, "D", "H"))),
    "sparse_linear_forward": dict(
        args=dict(out=Out(FLOAT, "B", "H"), index=Scratch(INT, "S>=1", ">=D"), inp=In(NUMBER, "B", "D"),
                  weight=In(FLOAT, "D", "H"), bias=In(FLOAT, "H"), scale=REAL)),
    "sparse_linear_backward_params": dict(
        args=dict(dweight=Out(FLOAT, "D", "H"), dbias=Out(FLOAT, "H"), index=Scratch(INT, "S>=1", ">=B"),
                  dout=In(FLOAT, "B", "H"), inp=In(NUMBER, "B", "D"), scale=REAL)),
    "blocked_linear_forward": dict(
        args=dict(out=Out(FLOAT, "B", "H"), pack=Scratch(FLOAT, "P>=pack_size(B,D,H)"), inp=In(NUMBER, "B", "D"),
                  weight=In(FLOAT, "D", "H"), bias=In(FLOAT, "H"), scale=REAL)),
    "blocked_linear_relu_forward": dict(
        args=dict(act=Out(FLOAT, "B", "H"), pack=Scratch(FLOAT, "P>=pack_size(B,D,H)"), inp=In(NUMBER, "B", "D"),
                  weight=In(FLOAT, "D", "H"), bias=In(FLOAT, "H"), scale=REAL)),
    "blocked_linear_backward_input": dict(
        args=dict(dinp=Out(FLOAT, "B", "D"), pack=Scratch(FLOAT, "P>=pack_size(B,H,D)"), dout=In(FLOAT, "B", "H"),
                  weight=In(FLOAT, "D", "H"))),
    "blocked_linear_backward_input_relu": dict(
        args=dict(dpre=Out(FLOAT, "B", "D"), pack=Scratch(FLOAT, "P>=pack_size(B,H,D)"), dout=In(FLOAT, "B", "H"),
                  weight=In(FLOAT, "D", "H"), inp=In(FLOAT, "B", "D"))),
    "blocked_linear_backward_params": dict(
        args=dict(dweight=Out(FLOAT, "D", "H"), dbias=Out(FLOAT, "H"), pack=Scratch(FLOAT, "P>=pack_size(D,B,H)"),
                  dout=In(FLOAT, "B", "H"), inp=In(NUMBER, "B", "D"), scale=REAL)),
    "relu_forward": dict(
        args=dict(out=Out(FLOAT, "B", "H"), inp=In(FLOAT, "B", "H")),
        alias=[("out", "inp")]),
    "relu_backward": dict(
        args=dict(dinp=Out(FLOAT, "B", "H"), dout=In(FLOAT, "B", "H"), out=In(FLOAT, "B", "H")),
        alias=[("dinp", "dout")]),
    "dropout_forward": dict(
        args=dict(act=InOut(FLOAT, "B", "H"), key=Scalar(int), p=Scalar(float, 0))),
    "dropout_backward": dict(
        args=dict(dinp=Out(FLOAT, "B", "H"), dout=In(FLOAT, "B", "H"), out=In(FLOAT, "B", "H"),
                  p=Scalar(float, 0)),
        alias=[("dinp", "dout")]),
    "softmax_cross_entropy_forward": dict(
        args=dict(probs=Out(FLOAT, "B", "K"), losses=Out(FLOAT, "B"), logits=In(FLOAT, "B", "K"),
                  labels=In(INT, "B")),
        labels={"labels": "K"}),
    "softmax_cross_entropy_backward": dict(
        args=dict(dlogits=Out(FLOAT, "B", "K"), probs=In(FLOAT, "B", "K"), labels=In(INT, "B")),
        alias=[("dlogits", "probs")],
        labels={"labels": "K"}),
    "classifier_forward": dict(
        args=dict(probs=Out(FLOAT, "B", "K"), losses=Out(FLOAT, "B"), scratch=Scratch(FLOAT, "S>=2", "K", "D+1"),
                  inp=In(NUMBER, "B", "D"), weight=In(FLOAT, "D", "K"), bias=In(FLOAT, "K"), labels=In(INT, "B"),
                  scale=REAL),
        labels={"labels": "K"}),
    "classifier_backward": dict(
        args=dict(dinp=Out(FLOAT, "0|B", "D"), dweight=Out(FLOAT, "D", "K"), dbias=Out(FLOAT, "K"),
                  scratch=Scratch(FLOAT, "S>=2", "K", "D+1"), probs=In(FLOAT, "B", "K"), inp=In(NUMBER, "B", "D"),
                  weight=In(FLOAT, "D", "K"), labels=In(INT, "B"), scale=REAL),
        labels={"labels": "K"}),
    "sgd_update": dict(
        args=dict(param=InOut(FLOAT, "P"), grad=In(FLOAT, "P"), lr=REAL, weight_decay=REAL)),
    "momentum_update": dict(
        args=dict(param=InOut(FLOAT, "P"), velocity=InOut(FLOAT, "P"), grad=In(FLOAT, "P"), lr=REAL,
                  momentum=REAL, weight_decay=REAL, nesterov=Scalar(bool))),
    "adam_update": dict(
        args=dict(param=InOut(FLOAT, "P"), m=InOut(FLOAT, "P"), v=InOut(FLOAT, "P"), grad=In(FLOAT, "P"),
                  lr=REAL, beta1=REAL, beta2=REAL, eps=REAL, weight_decay=REAL, step=Scalar(int, 1))),
    "gather_batch": dict(
        args=dict(x=Out(NUMBER, "B", "D"), y=Out(INT, "B"), images=In(NUMBER, "N", "D"), labels=In(INT, "N"),
                  order=In(INT, ">=start+B"), start=Scalar(int, 0), scale=REAL)),
    "standardize_batch": dict(
        args=dict(x=InOut(FLOAT, "B", "D"), mean=In(FLOAT, "D"), inv_std=In(FLOAT, "D"))),
    "augment_batch": dict(
        args=dict(x=Out(NUMBER, "B", "D"), y=Out(INT, "B"), images=In(NUMBER, "N", "D"), labels=In(INT, "N"),
                  order=In(INT, ">=start+B"), start=Scalar(int, 0), width=Scalar(int, 1), shift=Scalar(int, 0),
                  flip=Scalar(bool), key=Scalar(int)),
        divides={"width": "D"}),
}


def _helper(expr):
    """``("pack_size", ["B", "D", "H"])`` for ``"pack_size(B,D,H)"``; None for any other expression."""
    name, paren, rest = expr.partition("(")
    if not paren or name not in SIZE_HELPERS or not rest.endswith(")"):
        return None
    return name, rest[:-1].split(",")


def _fmt(shape):
    """``(784, 128)``, ``(128,)``, ``(B, D)``, ``(H,)``; a dim ``S>=1`` shows as ``S``,
    ``P>=pack_size(B,D,H)`` as ``>=pack_size(B, D, H)``."""
    items = []
    for s in map(str, shape):
        letter, _, least = s.partition(">=")
        if letter and not _helper(least):
            items.append(letter)
        else:
            items.append(s[len(letter):].replace(",", ", "))
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _total(expr, sizes):
    """The size ``expr`` stands for: ``"D+1"`` is one more than ``D``'s size,
    ``"pack_size(B,D,H)"`` what that helper gives for the sizes of B, D and H."""
    helper = _helper(expr)
    if helper:
        name, letters = helper
        return SIZE_HELPERS[name](*(sizes[t] for t in letters))
    return sum(int(t) if t.isdigit() else sizes[t] for t in expr.split("+"))


def _letters(dim):
    """The letters a dim refers to: ``"B"``, ``">=B"``, ``"0|B"``, ``"D+1"`` give B or D,
    ``"P>=pack_size(B,D,H)"`` B, D and H; ``"S>=1"`` none (its S names a size of the
    caller's choosing)."""
    expr = dim.split(">=")[1] if ">=" in dim else dim.split("|")[-1]
    helper = _helper(expr)
    return helper[1] if helper else [t for t in expr.split("+") if t.isalpha()]


def _join(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


class _Call:
    """The checks of one call of kernel ``name``; raises on the first problem found."""

    def __init__(self, name, spec, bound):
        self.name = name
        self.spec = spec
        self.values = bound
        self.arrays = {a: s for a, s in spec["args"].items() if isinstance(s, Array)}

    def fail(self, exc, message):
        raise exc(f"{self.name}: {message}")

    def check(self):
        self.check_arrays()
        self.check_dtypes()
        self.check_shapes()
        scalars = self.check_scalars()
        self.check_indices(scalars)
        self.check_overlap()
        return scalars

    def check_arrays(self):
        for arg, spec in self.arrays.items():
            a = self.values[arg]
            if not isinstance(a, np.ndarray):
                self.fail(TypeError, f"{arg} is a {type(a).__name__}, expected a NumPy array {_fmt(spec.dims)}")
            if a.ndim != len(spec.dims):
                self.fail(ValueError, f"{arg} has {a.ndim} dimension{'s' * (a.ndim != 1)} (shape {_fmt(a.shape)}), "
                                      f"expected {len(spec.dims)}: {_fmt(spec.dims)}")

    def check_dtypes(self):
        floats = [arg for arg, s in self.arrays.items() if s.kind == FLOAT]
        # The call's float dtype: the most common one, ties going to an input.
        ranked = sorted(floats, key=lambda arg: self.arrays[arg].role in ("out", "scratch"))
        counts = Counter(self.values[arg].dtype for arg in floats)
        first = {}
        for arg in ranked:
            first.setdefault(self.values[arg].dtype, arg)
        dtype, like = max(((d, first[d]) for d in counts), key=lambda p: (counts[p[0]], -ranked.index(p[1])),
                          default=(None, None))
        for arg in ranked:
            a = self.values[arg]
            if a.dtype not in FLOAT_DTYPES:
                self.fail(TypeError, f"{arg} has dtype {a.dtype}, expected float32 or float64"
                                     + (f" like {like}" if dtype in FLOAT_DTYPES else ""))
            if a.dtype != dtype:
                self.fail(TypeError, f"{arg} has dtype {a.dtype}, expected {dtype} like {like}")
        for arg, spec in self.arrays.items():
            a = self.values[arg]
            if spec.kind == INT and a.dtype.kind not in "iu":
                self.fail(TypeError, f"{arg} has dtype {a.dtype}, expected an integer dtype")
            if spec.kind == NUMBER and a.dtype.kind not in "iuf":
                self.fail(TypeError, f"{arg} has dtype {a.dtype}, expected an integer or float dtype")
        for arg, spec in self.arrays.items():
            a = self.values[arg]
            if not a.flags.c_contiguous:
                self.fail(ValueError, f"{arg} is not C-contiguous (use np.ascontiguousarray)")
            if spec.written and not a.flags.writeable:
                self.fail(ValueError, f"{arg} is read-only, and the kernel writes to it")

    def sizes(self):
        """Each letter's size: the value most arguments agree on, ties going to the first argument."""
        votes = {}
        for arg, spec in self.arrays.items():
            for dim, size in zip(spec.dims, self.values[arg].shape):
                if dim.isalpha():
                    votes.setdefault(dim, []).append((size, arg))
        sizes, sources = {}, {}
        for letter, pairs in votes.items():
            count = Counter(size for size, _ in pairs)
            sizes[letter] = max(count, key=lambda s: (count[s], -[p[0] for p in pairs].index(s)))
            sources[letter] = [arg for size, arg in pairs if size == sizes[letter]]
        return sizes, sources

    def check_shapes(self):
        sizes, sources = self.sizes()
        sizes["start"] = self.values.get("start", 0)
        for arg, spec in self.arrays.items():
            shape = self.values[arg].shape
            expected, ok = [], True
            for dim, size in zip(spec.dims, shape):
                if dim.isalpha():
                    expected.append(str(sizes[dim]))
                    ok &= size == sizes[dim]
                elif ">=" in dim:
                    least = _total(dim.split(">=")[1], sizes)
                    expected.append(f">={least}")
                    ok &= size >= least
                elif dim.startswith("0|"):
                    expected.append(f"0|{sizes[dim[2:]]}")
                    ok &= size in (0, sizes[dim[2:]])
                else:
                    expected.append(str(_total(dim, sizes)))
                    ok &= size == _total(dim, sizes)
            if ok:
                continue
            letters = [t for d in spec.dims for t in _letters(d)]
            cited = []
            for letter in letters:
                # Cite the most telling source: a 2-D array before a 1-D one, an input before an output.
                for other in sorted(sources.get(letter, []),
                                    key=lambda o: (-len(self.arrays[o].dims), self.arrays[o].written)):
                    if other != arg:
                        if other not in cited:
                            cited.append(other)
                        break
            cited.sort(key=lambda o: (self.arrays[o].written, list(self.arrays).index(o)))
            origin = [f"{o} {_fmt(self.arrays[o].dims)} = {_fmt(self.values[o].shape)}" for o in cited]
            if "start" in letters:
                origin.append(f"start = {sizes['start']}")
            self.fail(ValueError, f"{arg} has shape {_fmt(shape)}, expected {_fmt(spec.dims)} = {_fmt(expected)}"
                                  + (f" from {_join(origin)}" if origin else ""))

    def check_scalars(self):
        out = {}
        for arg, spec in self.spec["args"].items():
            if isinstance(spec, Array):
                continue
            value = self.values[arg]
            if spec.convert is bool:
                ok = isinstance(value, (bool, np.bool_))
            elif spec.convert is int:
                ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
            else:
                ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
            if not ok:
                want = {bool: "a bool", int: "an int", float: "a real number"}[spec.convert]
                self.fail(TypeError, f"{arg} is {value!r} ({type(value).__name__}), expected {want}")
            out[arg] = spec.convert(value)
            if spec.minimum is not None and out[arg] < spec.minimum:
                self.fail(ValueError, f"{arg} is {value!r}, expected at least {spec.minimum}")
        return out

    def check_indices(self, scalars):
        """Values the kernel would index with, unchecked: labels and the batch's ``order``."""
        sizes, _ = self.sizes()
        for arg, spec in self.arrays.items():
            a = self.values[arg]
            if spec.role == "scratch" and spec.kind == INT and a.shape[-1] - 1 > np.iinfo(a.dtype).max:
                self.fail(TypeError, f"{arg} has dtype {a.dtype}, which cannot hold {a.shape[-1] - 1}; use np.int32")
        for arg, letter in self.spec.get("labels", {}).items():
            labels = self.values[arg]
            bad = np.flatnonzero((labels < 0) | (labels >= sizes[letter]))
            if bad.size:
                i = bad[0]
                self.fail(ValueError, f"{arg}[{i}] is {labels[i]}, expected 0..{letter}-1 = 0..{sizes[letter] - 1}")
        for arg, letter in self.spec.get("divides", {}).items():
            if sizes[letter] % scalars[arg]:
                self.fail(ValueError, f"{arg} is {scalars[arg]}, expected a divisor of {letter} = {sizes[letter]} "
                                      f"(the rows of an image of {letter} values)")
        if "order" in self.values:
            start, B, N = scalars["start"], sizes["B"], sizes["N"]
            rows = self.values["order"][start:start + B]
            bad = np.flatnonzero((rows < 0) | (rows >= N))
            if bad.size:
                i = start + bad[0]
                self.fail(ValueError, f"order[{i}] is {self.values['order'][i]}, expected a sample 0..N-1 = 0..{N - 1}")

    def check_overlap(self):
        allowed = {frozenset(pair) for pair in self.spec.get("alias", [])}
        names = list(self.arrays)
        for i, arg in enumerate(names):
            for other in names[i + 1:]:
                if not (self.arrays[arg].written or self.arrays[other].written):
                    continue
                a, b = self.values[arg], self.values[other]
                if not np.may_share_memory(a, b):
                    continue
                same = (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                        and a.shape == b.shape and a.dtype == b.dtype)
                if same and frozenset((arg, other)) in allowed:
                    continue
                hint = f" (only {arg} is {other} itself is allowed)" if frozenset((arg, other)) in allowed else ""
                self.fail(ValueError, f"{arg} and {other} overlap in memory{hint}; pass separate arrays")


def _wrap(name, spec):
    kernel = getattr(kernels, name)
    signature = inspect.signature(kernel.py_func)
    if list(signature.parameters) != list(spec["args"]):
        raise RuntimeError(f"fastnet.checked: the spec of {name} lists {list(spec['args'])}, "
                           f"the kernel takes {list(signature.parameters)}")

    def checked(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        scalars = _Call(name, spec, bound).check()
        kernel(*(scalars.get(arg, bound[arg]) for arg in spec["args"]))

    checked.__name__ = checked.__qualname__ = name
    checked.__module__ = __name__
    checked.__signature__ = signature
    checked.__doc__ = (kernel.__doc__ or "").rstrip() + (
        f"\n\n    Checked: arguments are validated against ``fastnet.checked.SPECS[{name!r}]``"
        f" before calling :func:`fastnet.kernels.{name}`.\n")
    checked.raw = kernel
    return checked


__all__ = list(SPECS)
globals().update({name: _wrap(name, spec) for name, spec in SPECS.items()})
