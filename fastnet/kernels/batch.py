"""Assembling a mini-batch from a data set kept as uint8, and standardizing its features."""
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


@jit(parallel=True)
def standardize_batch(x, mean, inv_std):
    """Standardize each feature of a batch, in place:
    ``x[b, d] = (x[b, d] - mean[d]) * inv_std[d]``. Overwrites ``x``.

    ``mean`` and ``inv_std`` (one over the standard deviation, so the loop
    multiplies instead of dividing) share ``x``'s dtype. Each element is one
    subtraction and one multiplication, rounded as written, so the result is
    the same bits whatever the thread count. Parallel over the batch, as
    :func:`gather_batch`, which it follows: threads pay from a few hundred
    rows and cost a few microseconds below that.
    """
    # x (B, D), mean (D,), inv_std (D,)
    B, D = x.shape
    for b in prange(B):
        for d in range(D):
            x[b, d] = (x[b, d] - mean[d]) * inv_std[d]
