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
``fastnet-train --engine`` compares.
"""
import math
import types

import numpy as np

from . import reference
from ._jit import jit
# train_batches takes an update rule as its index in OPTIMIZERS
from .config import ENGINES, OPTIMIZERS  # noqa: F401
from .kernels import (
    adam_update,
    gather_batch,
    linear_backward_input,
    momentum_update,
    relu_backward,
    relu_forward,
    sgd_update,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
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


@jit
def forward(acts, pre, rows, x, weights, biases, scale):
    """Run a batch ``x`` (its values times ``scale``: raw uint8 pixels and
    1/255, say) through every layer, filling ``acts``: hidden layers through
    ReLU, the last layer's logits as they are. ``pre[i]`` receives hidden
    layer ``i``'s output before the ReLU (the last ``pre`` is not used), and
    ``rows[i]`` is layer ``i``'s scratch for
    :func:`~fastnet.kernels.sparse_linear_forward`.

    No kernel here writes over its own input: a loop whose output may be
    its input does not vectorise, and an in-place ReLU ran 10-30 times slower.
    """
    # x (B, D), weights[i] (D_i, H_i), biases[i] (H_i,), acts[i]/pre[i] (B, H_i), rows[i] (S, D_i)
    n = len(weights)
    for i in range(n):
        out = pre[i] if i < n - 1 else acts[i]
        if i == 0:
            sparse_linear_forward(out, rows[0], x, weights[0], biases[0], scale)
        else:
            sparse_linear_forward(out, rows[i], acts[i - 1], weights[i], biases[i], 1.0)
        if i < n - 1:
            relu_forward(acts[i], pre[i])


@jit
def train_batches(x, y, acts, pre, dacts, rows, cols, probs, losses, weights, biases, dweights, dbiases,
                  params, grads, state1, state2, images, labels, order, start, count, scale,
                  optimizer, lr, momentum, weight_decay, beta1, beta2, eps, step):
    """Take ``count`` mini-batch steps, batch ``i`` being samples
    ``order[start + i*B : start + (i+1)*B]``, with ``B = x.shape[0]``. The
    batch is copied into ``x`` as it is stored (uint8 pixels, say); the first
    layer multiplies it by ``scale`` as it reads it.

    ``params``, ``grads``, ``state1`` and ``state2`` are pairs of flat views
    (all weights, all biases) of the buffers that ``weights``, ``biases``,
    ``dweights`` and ``dbiases`` view layer by layer; ``state1``/``state2``
    hold the optimizer's velocity or Adam moments. Weight decay applies to
    the weights only. ``optimizer`` indexes :data:`OPTIMIZERS`; ``step`` is
    the number of updates taken before this call (Adam's bias correction).

    Returns ``(loss_sum, correct, bad)``: the summed per-sample loss and the
    count of correct predictions over these batches, before each update, and
    the index ``i`` of the first batch whose loss was not finite (-1 if
    none); the run stops at that batch, before its update. ``pre`` is as in
    :func:`forward`; ``dacts[i]`` receives the gradient with respect to
    layer ``i``'s linear output. ``rows[i]`` and ``cols[i]`` are layer
    ``i``'s scratch for the sparse kernels.
    """
    # x (B, D), y (B,), acts[i]/pre[i]/dacts[i] (B, H_i), probs (B, K), losses (B,)
    # images (N, D), labels (N,), order (N,); params[0] (P_weights,), params[1] (P_biases,)
    B = x.shape[0]
    n = len(weights)
    loss_sum = 0.0
    correct = 0
    for i in range(count):
        gather_batch(x, y, images, labels, order, start + i * B, 1)
        forward(acts, pre, rows, x, weights, biases, scale)
        softmax_cross_entropy_forward(probs, losses, acts[n - 1], y)
        batch_loss = float(losses.sum())
        if not math.isfinite(batch_loss):
            return loss_sum, correct, i
        loss_sum += batch_loss
        correct += count_correct(probs, y)

        softmax_cross_entropy_backward(dacts[n - 1], probs, y)
        for j in range(n - 1, 0, -1):
            sparse_linear_backward_params(dweights[j], dbiases[j], cols[j], dacts[j], acts[j - 1], 1.0)
            # the gradient with respect to acts[j - 1] goes over pre[j - 1], no longer needed
            linear_backward_input(pre[j - 1], dacts[j], weights[j])
            relu_backward(dacts[j - 1], pre[j - 1], acts[j - 1])
        sparse_linear_backward_params(dweights[0], dbiases[0], cols[0], dacts[0], x, scale)

        step += 1
        for g in range(2):
            wd = weight_decay if g == 0 else 0.0
            if optimizer == 0:
                sgd_update(params[g], grads[g], lr, wd)
            elif optimizer == 3:
                adam_update(params[g], state1[g], state2[g], grads[g], lr, beta1, beta2, eps, wd, step)
            else:
                momentum_update(params[g], state1[g], grads[g], lr, momentum, wd, optimizer == 2)
    return loss_sum, correct, -1


def _rebind(fn, namespace):
    """A copy of the Python function ``fn`` whose global names resolve in ``namespace`` first."""
    scope = dict(fn.__globals__)
    scope.update(namespace)
    return types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)


def _numpy_engine():
    names = {name: getattr(reference, name) for name in reference.__dict__ if not name.startswith("_")}
    names["count_correct"] = _count_correct_numpy
    names["forward"] = _rebind(forward.py_func, names)
    return types.SimpleNamespace(
        name="numpy",
        gather_batch=reference.gather_batch,
        softmax_cross_entropy_forward=reference.softmax_cross_entropy_forward,
        count_correct=_count_correct_numpy,
        forward=names["forward"],
        train_batches=_rebind(train_batches.py_func, names),
    )


def _numba_engine():
    return types.SimpleNamespace(
        name="numba",
        gather_batch=gather_batch,
        softmax_cross_entropy_forward=softmax_cross_entropy_forward,
        count_correct=count_correct,
        forward=forward,
        train_batches=train_batches,
    )


_ENGINES = {}


def get(name):
    """The engine called ``name`` ("numba" or "numpy"): a namespace of
    ``forward``, ``train_batches``, ``gather_batch``, ``softmax_cross_entropy_forward``
    and ``count_correct``."""
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {name!r}")
    if name not in _ENGINES:
        _ENGINES[name] = _numba_engine() if name == "numba" else _numpy_engine()
    return _ENGINES[name]
