"""The output layer: linear, softmax and cross-entropy as one layer.

A network's last layer is narrow (10 classes): a loop along its rows of 10
weights does not vectorise. These two kernels work from the weights
transposed into scratch, ``(K, D)``, so that every inner loop runs along
the ``D`` inputs: the logits are ``K`` dot products, the input gradient
``K`` scaled rows added, and the weight gradient ``K`` rows added to a
per-part sum, all in memory order.

``scratch (S + 1, K, D + 1)`` (the weights' dtype) holds the transposed
weights in ``scratch[0, :, :D]``; :func:`classifier_backward` keeps part
``s``'s sums of the weight and bias gradients in ``scratch[1 + s]``. Both
kernels overwrite it; its contents mean nothing between calls.
"""
from numba import prange

from .._jit import jit
from .loss import softmax_cross_entropy_rows


#: The least rows of the batch each part of :func:`classifier_backward` takes.
PART_ROWS = 16


@jit
def _transpose_weights(scratch, weight):
    """``scratch[0, k, d] = weight[d, k]``."""
    D, K = weight.shape
    for d in range(D):
        for k in range(K):
            scratch[0, k, d] = weight[d, k]


@jit(parallel=True)
def classifier_forward(probs, losses, scratch, inp, weight, bias, labels, scale):
    """Overwrite ``probs`` with ``softmax(scale * inp @ weight + bias)`` row by
    row and ``losses`` with each row's cross-entropy ``-log probs[b, labels[b]]``:
    :func:`~fastnet.kernels.sparse_linear_forward` then
    :func:`~fastnet.kernels.softmax_cross_entropy_forward`, in one pass over
    the batch. ``scratch`` is overwritten (see the module's docstring).

    ``inp`` may hold integers (raw uint8 pixels with ``scale = 1/255``, for a
    network without hidden layers). The loss is taken as in
    :func:`~fastnet.kernels.softmax_cross_entropy_forward`, finite even when
    a probability underflows. Parallel over the batch, cut into ``S`` parts;
    every row is computed by one thread in one fixed order, so neither ``S``
    nor the thread count changes the result.
    """
    # inp (B, D) any numeric dtype, weight (D, K), bias (K,), labels (B,), probs (B, K), losses (B,)
    # scratch (S + 1, K, D + 1)
    B, D = inp.shape
    K = weight.shape[1]
    S = min(scratch.shape[0] - 1, B)
    t = weight.dtype.type
    a = t(scale)
    _transpose_weights(scratch, weight)
    for s in prange(S):
        b0, b1 = s * B // S, (s + 1) * B // S
        for b in range(b0, b1):
            for k in range(K):
                acc = t(0)
                for d in range(D):
                    acc += t(inp[b, d]) * scratch[0, k, d]
                probs[b, k] = acc * a + bias[k]
        softmax_cross_entropy_rows(probs, losses, probs, labels, b0, b1)


@jit
def _dlogit(probs, label, b, k, g):
    """``dlogits[b, k]`` of the mean loss over a batch of ``1/g`` rows, row ``b`` labelled ``label``."""
    c = probs[b, k] * g
    if k == label:
        c -= g
    return c


@jit(reassoc=False)
def _input_gradient_row(dinp, b, scratch, probs, label, g):
    """``dinp[b] = dlogits[b] @ weight.T``, from the transposed weights in
    ``scratch[0]``: a chain of multiply-adds along the classes, four classes
    per pass over ``dinp[b]``."""
    D = dinp.shape[1]
    K = probs.shape[1]
    wt = scratch[0]
    for d in range(D):
        dinp[b, d] = 0
    k = 0
    while k + 4 <= K:
        c0 = _dlogit(probs, label, b, k, g)
        c1 = _dlogit(probs, label, b, k + 1, g)
        c2 = _dlogit(probs, label, b, k + 2, g)
        c3 = _dlogit(probs, label, b, k + 3, g)
        for d in range(D):
            o = dinp[b, d] + c0 * wt[k, d]
            o += c1 * wt[k + 1, d]
            o += c2 * wt[k + 2, d]
            dinp[b, d] = o + c3 * wt[k + 3, d]
        k += 4
    while k < K:
        c = _dlogit(probs, label, b, k, g)
        for d in range(D):
            dinp[b, d] += c * wt[k, d]
        k += 1


@jit(parallel=True, reassoc=False)
def classifier_backward(dinp, dweight, dbias, scratch, probs, inp, weight, labels, scale):
    """Overwrite ``dweight``, ``dbias`` and ``dinp`` with the gradients of the
    batch's *mean* loss, given ``probs`` from :func:`classifier_forward`.

    With ``dlogits = (probs - onehot(labels)) / B`` (never stored):
    ``dweight = scale * inp.T @ dlogits``, ``dbias`` its sum over the batch,
    ``dinp = dlogits @ weight.T``. A ``dinp`` with no rows is skipped (a
    first layer's input needs no gradient). ``scratch`` is overwritten.

    Parallel over the batch, cut into ``S`` parts of :data:`PART_ROWS` rows
    or more (``S`` at most the scratch's, 16 in fastnet): part ``s`` sums its
    rows' gradients into ``scratch[1 + s]`` in order, then the parts are
    added in order ``0..S-1`` (into ``scratch[1]``). The result depends on
    the scratch's size and on ``B`` (the order of the sums), not on the
    thread count.
    """
    # probs (B, K), inp (B, D) any numeric dtype, weight (D, K), labels (B,)
    # dinp (B, D) or (0, D), dweight (D, K), dbias (K,), scratch (S + 1, K, D + 1)
    B, D = inp.shape
    K = weight.shape[1]
    # at least PART_ROWS rows a part: each part costs a pass over its sums to zero and to add
    S = max(1, min(scratch.shape[0] - 1, B // PART_ROWS))
    t = weight.dtype.type
    a = t(scale)
    g = t(1.0 / B)
    _transpose_weights(scratch, weight)
    for s in prange(S):
        b_lo = s * B // S
        b_hi = (s + 1) * B // S
        if dinp.shape[0] != 0:
            for b in range(b_lo, b_hi):
                _input_gradient_row(dinp, b, scratch, probs, labels[b], g)
        part = scratch[1 + s]
        for k in range(K):
            for d in range(D + 1):
                part[k, d] = 0
        # four rows per pass over part[k], a chain of multiply-adds in row order
        b = b_lo
        while b + 4 <= b_hi:
            l0, l1, l2, l3 = labels[b], labels[b + 1], labels[b + 2], labels[b + 3]
            for k in range(K):
                c0, c1 = _dlogit(probs, l0, b, k, g), _dlogit(probs, l1, b + 1, k, g)
                c2, c3 = _dlogit(probs, l2, b + 2, k, g), _dlogit(probs, l3, b + 3, k, g)
                part[k, D] = part[k, D] + c0 + c1 + c2 + c3
                c0, c1, c2, c3 = c0 * a, c1 * a, c2 * a, c3 * a
                for d in range(D):
                    o = part[k, d] + c0 * t(inp[b, d])
                    o += c1 * t(inp[b + 1, d])
                    o += c2 * t(inp[b + 2, d])
                    part[k, d] = o + c3 * t(inp[b + 3, d])
            b += 4
        while b < b_hi:
            for k in range(K):
                c = _dlogit(probs, labels[b], b, k, g)
                part[k, D] += c
                c *= a
                for d in range(D):
                    part[k, d] += c * t(inp[b, d])
            b += 1
    # add the parts into the first, along its rows, then transpose it out
    total = scratch[1]
    for s in range(1, S):
        for k in range(K):
            for d in range(D + 1):
                total[k, d] += scratch[1 + s, k, d]
    for k in range(K):
        dbias[k] = total[k, D]
    for d in range(D):
        for k in range(K):
            dweight[d, k] = total[k, d]
