"""The network's math, written once, run on either engine.

The functions here chain kernels into whole passes: :func:`forward` through
every layer, and :func:`train_batches`, a run of mini-batch steps (gather,
forward, loss, backward, update). They call the kernels by their plain
names, so the same source serves twice:

- the ``numba`` engine compiles them with :func:`fastnet._jit.jit`, a
  training run then costs one call per chunk of batches, not one per kernel;
- the ``numpy`` engine runs the very same functions as Python, with each
  kernel name bound to its twin in :mod:`fastnet.reference`.

So the two engines differ in the kernels alone, which is what
``fastnet-train --engine`` compares. Each engine builds one variant of a
function per number of layers and update rule (see :data:`DEPTH`).
"""
import math
import types

import numba
import numpy as np

from . import reference
from ._jit import jit
from .config import ENGINES, OPTIMIZERS
from .kernels import (
    adam_update,
    classifier_backward,
    classifier_forward,
    gather_batch,
    linear_backward_input,
    momentum_update,
    relu_backward,
    relu_forward,
    sgd_update,
    sparse_linear_backward_params,
    sparse_linear_forward,
)


@jit
def count_correct(probs, labels):
    """How many rows of ``probs`` have their largest value at ``labels``."""
    # probs (B, K), labels (B,)
    B, K = probs.shape
    correct = 0
    for b in range(B):
        best = 0
        for k in range(1, K):
            if probs[b, k] > probs[b, best]:
                best = k
        if best == labels[b]:
            correct += 1
    return correct


def _count_correct_numpy(probs, labels):
    return int(np.count_nonzero(probs.argmax(axis=1) == labels))


#: What a variant of :func:`forward` and :func:`train_batches` is compiled
#: for, as constants: Numba drops the branches they rule out before typing,
#: so a run compiles only the layers and the update rule it uses (cold
#: compile time is mostly Numba's per-parallel-loop cost). ``DEPTH`` is the
#: number of layers, 3 meaning "3 or more"; ``OPTIMIZER`` an index into
#: :data:`OPTIMIZERS`. The values here are placeholders: see :func:`get`.
DEPTH = 2
OPTIMIZER = 2


def forward(probs, losses, acts, pre, rows, scratch, x, y, weights, biases, scale):
    """Run a batch ``x`` (its values times ``scale``: raw uint8 pixels and
    1/255, say) through every layer: ``probs`` receives the softmax of the
    last layer and ``losses`` each row's cross-entropy at ``y``.

    ``pre[i]`` receives hidden layer ``i``'s output before its ReLU and
    ``acts[i]`` after it (no kernel writes over its own input: such a loop
    does not vectorise, and an in-place ReLU ran 10-30 times slower).
    ``rows[i]`` is layer ``i``'s scratch for
    :func:`~fastnet.kernels.sparse_linear_forward`, ``scratch`` the output
    layer's for :func:`~fastnet.kernels.classifier_forward`.
    """
    # x (B, D), y (B,), weights[i] (D_i, H_i), biases[i] (H_i,), acts[i]/pre[i] (B, H_i) for hidden i
    # probs (B, K), losses (B,), rows[i] (S, D_i), scratch (S + 1, K, D_last + 1)
    n = len(weights)
    if DEPTH == 1:
        classifier_forward(probs, losses, scratch, x, weights[0], biases[0], y, scale)
    else:
        sparse_linear_forward(pre[0], rows[0], x, weights[0], biases[0], scale)
        relu_forward(acts[0], pre[0])
        if DEPTH > 2:
            for i in range(1, n - 1):
                sparse_linear_forward(pre[i], rows[i], acts[i - 1], weights[i], biases[i], 1.0)
                relu_forward(acts[i], pre[i])
        classifier_forward(probs, losses, scratch, acts[n - 2], weights[n - 1], biases[n - 1], y, 1.0)


def train_batches(x, y, acts, pre, dacts, rows, cols, scratch, probs, losses, weights, biases, dweights,
                  dbiases, params, grads, state1, state2, images, labels, order, start, count, scale,
                  lr, momentum, weight_decay, beta1, beta2, eps, step):
    """Take ``count`` mini-batch steps, batch ``i`` being samples
    ``order[start + i*B : start + (i+1)*B]``, with ``B = x.shape[0]``. The
    batch is copied into ``x`` as it is stored (uint8 pixels, say); the first
    layer multiplies it by ``scale`` as it reads it.

    ``params``, ``grads``, ``state1`` and ``state2`` are pairs of flat views
    (all weights, all biases) of the buffers that ``weights``, ``biases``,
    ``dweights`` and ``dbiases`` view layer by layer; ``state1``/``state2``
    hold the optimizer's velocity or Adam moments. Weight decay applies to
    the weights only. ``step`` is the number of updates taken before this
    call (Adam's bias correction).

    Returns ``(loss_sum, correct, bad)``: the summed per-sample loss and the
    count of correct predictions over these batches, before each update, and
    the index ``i`` of the first batch whose loss was not finite (-1 if
    none); the run stops at that batch, before its update. ``acts``,
    ``pre``, ``rows`` and ``scratch`` are as in :func:`forward`; ``dacts[i]``
    receives the gradient with respect to hidden layer ``i``'s output before
    its ReLU, and ``cols[i]`` is layer ``i``'s scratch for
    :func:`~fastnet.kernels.sparse_linear_backward_params`.
    """
    # x (B, D), y (B,), acts[i]/pre[i]/dacts[i] (B, H_i) for hidden i, probs (B, K), losses (B,)
    # images (N, D), labels (N,), order (N,); params[0] (P_weights,), params[1] (P_biases,)
    B = x.shape[0]
    n = len(weights)
    loss_sum = 0.0
    correct = 0
    for i in range(count):
        gather_batch(x, y, images, labels, order, start + i * B, 1.0)
        forward(probs, losses, acts, pre, rows, scratch, x, y, weights, biases, scale)
        batch_loss = float(losses.sum())
        if not math.isfinite(batch_loss):
            return loss_sum, correct, i
        loss_sum += batch_loss
        correct += count_correct(probs, y)

        if DEPTH == 1:
            no_input_gradient = probs[:0, :0]
            classifier_backward(no_input_gradient, dweights[0], dbiases[0], scratch, probs, x, weights[0], y, scale)
        else:
            # the gradient with respect to acts[j] goes over pre[j], no longer needed
            classifier_backward(pre[n - 2], dweights[n - 1], dbiases[n - 1], scratch, probs, acts[n - 2],
                                weights[n - 1], y, 1.0)
            relu_backward(dacts[n - 2], pre[n - 2], acts[n - 2])
            if DEPTH > 2:
                for j in range(n - 2, 0, -1):
                    sparse_linear_backward_params(dweights[j], dbiases[j], cols[j], dacts[j], acts[j - 1], 1.0)
                    linear_backward_input(pre[j - 1], dacts[j], weights[j])
                    relu_backward(dacts[j - 1], pre[j - 1], acts[j - 1])
            sparse_linear_backward_params(dweights[0], dbiases[0], cols[0], dacts[0], x, scale)

        step += 1
        for g in range(2):
            wd = weight_decay if g == 0 else 0.0
            if OPTIMIZER == 0:
                sgd_update(params[g], grads[g], lr, wd)
            elif OPTIMIZER == 3:
                adam_update(params[g], state1[g], state2[g], grads[g], lr, beta1, beta2, eps, wd, step)
            else:
                momentum_update(params[g], state1[g], grads[g], lr, momentum, wd, OPTIMIZER == 2)
    return loss_sum, correct, -1


def _rebind(fn, namespace, name=None):
    """A copy of the Python function ``fn`` whose global names resolve in
    ``namespace`` first, called ``name`` (Numba's cache files are named after
    it, so each variant keeps its own)."""
    scope = dict(fn.__globals__)
    scope.update(namespace)
    copy = types.FunctionType(fn.__code__, scope, name or fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = copy.__name__
    return copy


def _depth(weights):
    return min(len(weights), 3)


#: Where ``weights`` stands among :func:`train_batches`'s arguments.
_WEIGHTS_ARG = train_batches.__code__.co_varnames.index("weights")


class _Engine:
    """One engine: ``forward`` and ``train_batches`` pick (and build, once)
    the variant for the number of layers and the update rule; ``gather_batch``
    and ``count_correct`` are the engine's own."""

    def __init__(self, name, kernels, compile, prepare):
        self.name = name
        self._kernels = kernels
        self._compile = compile
        self._prepare = prepare
        self._variants = {}
        self.gather_batch = kernels["gather_batch"]
        self.count_correct = kernels["count_correct"]

    def variant(self, fn, depth, optimizer=OPTIMIZER):
        """:func:`forward` or :func:`train_batches` for ``depth`` layers (3: 3 or more)
        and update rule ``optimizer`` (an index into :data:`OPTIMIZERS`)."""
        key = (fn.__name__, depth, optimizer)
        if key not in self._variants:
            names = dict(self._kernels, DEPTH=depth, OPTIMIZER=optimizer)
            if fn is train_batches:
                names["forward"] = self.variant(forward, depth)
                name = f"train_batches_{depth}_{OPTIMIZERS[optimizer]}"
            else:
                name = f"forward_{depth}"
            self._variants[key] = self._compile(_rebind(fn, names, name))
        return self._variants[key]

    def entry(self, fn, weights, optimizer=OPTIMIZER):
        """What :meth:`forward` (``fn`` = :func:`forward`) or :meth:`train_batches`
        (:func:`train_batches`) would call for ``weights`` and ``optimizer``."""
        return self.variant(fn, _depth(weights), optimizer if fn is train_batches else OPTIMIZER)

    def prepare(self, fn, *args):
        """Compile ``fn`` (one of this engine's functions) for the types of ``args``
        without calling it; nothing on an engine that compiles nothing."""
        self._prepare(fn, args)

    def forward(self, probs, losses, acts, pre, rows, scratch, x, y, weights, biases, scale):
        return self.variant(forward, _depth(weights))(
            probs, losses, acts, pre, rows, scratch, x, y, weights, biases, scale)

    def train_batches(self, *args, optimizer):
        """:func:`train_batches` with update rule ``optimizer`` (an index into :data:`OPTIMIZERS`)."""
        weights = args[_WEIGHTS_ARG]
        return self.variant(train_batches, _depth(weights), optimizer)(*args)


def _numpy_engine():
    names = {name: getattr(reference, name) for name in reference.__dict__ if not name.startswith("_")}
    names["count_correct"] = _count_correct_numpy
    return _Engine("numpy", names, lambda fn: fn, lambda fn, args: None)


def _numba_engine():
    from . import kernels

    names = {name: getattr(kernels, name) for name in kernels.__all__}
    names["count_correct"] = count_correct
    return _Engine("numba", names, jit, _compile_for)


def _compile_for(dispatcher, args):
    """Compile (or load from the cache) ``dispatcher`` for the types a call with ``args`` would get."""
    dispatcher.compile(tuple(numba.typeof(a) for a in args))


_ENGINES = {}


def get(name):
    """The engine called ``name`` ("numba" or "numpy"), with ``forward``,
    ``train_batches``, ``gather_batch`` and ``count_correct``."""
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {name!r}")
    if name not in _ENGINES:
        _ENGINES[name] = _numba_engine() if name == "numba" else _numpy_engine()
    return _ENGINES[name]
