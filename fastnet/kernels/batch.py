"""Assembling a mini-batch from a data set kept as uint8 (moved at random, for
augmentation, if asked), and standardizing its features."""
import numpy as np
from numba import prange

from .._jit import jit
from .activation import _GOLDEN, _mix64

_S32 = np.uint64(32)


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


# --- augmentation -----------------------------------------------------------------
#
# Counter-based, as dropout's mask (see activation.py): the move of the sample at
# position p of an epoch's order is a function of (key, p) alone, so it is the same
# whatever the thread count, the chunking of the epoch or a resume from a checkpoint.


@jit(parallel=True)
def augment_batch(x, y, images, labels, order, start, width, shift, flip, key):
    """Overwrite ``x`` and ``y`` with samples ``order[start:start+B]`` of the
    data set, each image moved by its own random whole-pixel offset and,
    with ``flip``, mirrored left to right half of the time. Values are copied
    as stored (``x`` has ``images``' dtype); pixels moved in from outside the
    image are 0.

    A sample is an image of ``D // width`` rows of ``width`` pixels, row-major.
    Row ``i`` of the batch, at position ``p = start + i`` of the epoch, draws
    ``z = mix(key + (p + 1) * G)``, the ``(p + 1)``-th output of a splitmix64
    stream seeded with ``key`` (an int64: ``dropout_key(seed, epoch, layer)``
    of a ``layer`` no dropout mask uses). Its low 32 bits pick the column
    offset ``dx`` and its high 32 bits the row offset ``dy``, each uniform
    over ``-shift..shift`` (``(bits * (2*shift + 1)) >> 32 - shift``); with
    ``flip``, bit 0 of ``mix(z)`` says whether to mirror. Then::

        x[i, r, c] = img[r - dy, c' - dx]  where in the image, else 0,
        c' = width - 1 - c if mirrored else c

    (the mirror of the moved image). ``shift`` 0 and ``flip`` false copy the
    samples as they are. Parallel over the batch, as :func:`gather_batch`.
    """
    # images (N, D) any numeric dtype, labels (N,), order (N,) int, x (B, D), y (B,); D = rows * width
    B, D = x.shape
    W = width
    R = D // W
    n = np.uint64(2 * shift + 1)
    low = np.uint64(0xFFFFFFFF)
    k = np.uint64(key)
    zero = x.dtype.type(0)
    for i in prange(B):
        j = order[start + i]
        y[i] = labels[j]
        z = _mix64(k + np.uint64(start + i + 1) * _GOLDEN)
        dx = np.int64(((z & low) * n) >> _S32) - shift
        dy = np.int64(((z >> _S32) * n) >> _S32) - shift
        mirrored = flip and (_mix64(z) & np.uint64(1)) == np.uint64(1)
        for r in range(R):
            sr = r - dy
            if sr < 0 or sr >= R:
                for c in range(W):
                    x[i, r * W + c] = zero
                continue
            for c in range(W):
                sc = (W - 1 - c if mirrored else c) - dx
                x[i, r * W + c] = images[j, sr * W + sc] if 0 <= sc < W else zero
