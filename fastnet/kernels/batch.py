"""Assembling a mini-batch from a data set kept as uint8."""
from numba import prange

from .._jit import jit


@jit(parallel=True)
def gather_batch(x, y, images, labels, order, start, scale):
    """Overwrite ``x`` and ``y`` with samples ``order[start:start+B]`` of the
    data set, pixels converted to ``x``'s dtype and multiplied by ``scale``.

    Keeping the data set as uint8 and converting one batch at a time keeps
    memory at a quarter of a float32 copy. Parallel over the batch: the rows
    come from random places in the data set, and two threads wait for memory
    at once.
    """
    # images (N, D) any numeric dtype, labels (N,), order (N,) int, x (B, D), y (B,)
    B, D = x.shape
    s = x.dtype.type(scale)
    for i in prange(B):
        j = order[start + i]
        y[i] = labels[j]
        for d in range(D):
            x[i, d] = images[j, d] * s
