"""The fully connected layer: ``out = inp @ weight + bias``."""
from numba import prange

from .._jit import jit


@jit(parallel=True)
def linear_forward(out, inp, weight, bias):
    """Overwrite ``out`` with ``inp @ weight + bias``.

    Each row of ``out`` starts at the bias and gains ``inp[b, d] * weight[d]``
    for every non-zero input ``d``: a zero input costs one comparison (and
    so a zero input times an infinite weight adds nothing, not NaN).
    Parallel over the batch; every row is computed by one thread in one
    fixed order, so the result does not depend on the thread count.
    """
    # inp (B, D), weight (D, H), bias (H,), out (B, H)
    B, D = inp.shape
    H = weight.shape[1]
    for b in prange(B):
        for h in range(H):
            out[b, h] = bias[h]
        for d in range(D):
            x = inp[b, d]
            if x != 0:
                for h in range(H):
                    out[b, h] += x * weight[d, h]


@jit(parallel=True)
def linear_backward_params(dweight, dbias, dout, inp):
    """Overwrite ``dweight`` with ``inp.T @ dout`` and ``dbias`` with ``dout`` summed over the batch.

    No ``1/B`` factor here: the loss gradient already carries it. Parallel
    over the rows of ``dweight``; each sum runs over the batch in order, so
    the result does not depend on the thread count.
    """
    # dout (B, H), inp (B, D), dweight (D, H), dbias (H,)
    B, D = inp.shape
    H = dout.shape[1]
    for d in prange(D):
        for h in range(H):
            dweight[d, h] = 0
        for b in range(B):
            x = inp[b, d]
            if x != 0:
                for h in range(H):
                    dweight[d, h] += x * dout[b, h]
    for h in range(H):
        dbias[h] = 0
    for b in range(B):
        for h in range(H):
            dbias[h] += dout[b, h]


@jit(parallel=True)
def linear_backward(dinp, dweight, dbias, dout, inp, weight):
    """Overwrite ``dinp`` with ``dout @ weight.T``, and the parameter gradients
    as :func:`linear_backward_params` does.

    Use :func:`linear_backward_params` for a first layer, whose input needs
    no gradient.
    """
    # dout (B, H), inp (B, D), weight (D, H), dinp (B, D), dweight (D, H), dbias (H,)
    linear_backward_params(dweight, dbias, dout, inp)
    B, D = inp.shape
    H = dout.shape[1]
    for b in prange(B):
        for d in range(D):
            acc = dinp.dtype.type(0)
            for h in range(H):
                acc += dout[b, h] * weight[d, h]
            dinp[b, d] = acc
