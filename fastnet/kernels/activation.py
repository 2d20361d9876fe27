"""The ReLU activation, and inverted dropout after it."""
import numpy as np
from numba import prange

from .._jit import jit


@jit
def relu_forward(out, inp):
    """Overwrite ``out`` with ``max(inp, 0)``; ``out`` may be ``inp`` itself.

    A NaN input stays NaN, so a guard downstream can see it. In place, the
    loop cannot vectorise, so a separate ``out`` is the fast call.
    """
    # inp (B, H), out (B, H)
    B, H = inp.shape
    zero = out.dtype.type(0)
    for b in range(B):
        for h in range(H):
            x = inp[b, h]
            out[b, h] = x if not x <= zero else zero


@jit
def relu_backward(dinp, dout, out):
    """Overwrite ``dinp`` with ``dout`` where ``out > 0`` and 0 elsewhere; ``dinp`` may be ``dout`` itself.

    ``out`` is the ReLU's output: ``out > 0`` exactly where its input was. A
    unit that is off passes no gradient back, not even a NaN. In place, the
    loop cannot vectorise (LLVM sees ``dinp`` overlap ``dout``), so a
    separate ``dinp`` is the fast call.
    """
    # dout (B, H), out (B, H), dinp (B, H)
    B, H = out.shape
    zero = dinp.dtype.type(0)
    for b in range(B):
        for h in range(H):
            g = dout[b, h]  # read unconditionally, so the choice compiles to a select, not a branch
            dinp[b, h] = g if out[b, h] > zero else zero


# --- inverted dropout -------------------------------------------------------------
#
# Counter-based: unit (b, h) of a (B, H) activation is kept or dropped by a
# hash of (key, b*H + h) alone, so the mask holds no state and is the same
# whatever the thread count, chunking or order of the loop. The hash is
# splitmix64 (Steele, Lea and Flood, 2014) read as a counter-based generator:
# the n-th output of a splitmix64 stream seeded with ``key``. All of it runs
# in uint64, every operand cast explicitly (Numba types int64 mixed with
# uint64 as float64), with multiplies and adds that wrap modulo 2**64.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)    # 2**64 / golden ratio: splitmix64's increment
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO53 = 9007199254740992.0                 # 2**53: uniforms are 53-bit fractions


@jit(inline=True)
def _mix64(z):
    """splitmix64's finalizer: a bijection of uint64 in which every input bit flips about half the output bits."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@jit
def dropout_key(seed, step, layer):
    """The dropout key of one layer at one training step, as an int64 (the
    two's-complement reading of 64 hash bits); returns it, writes nothing.

    ``seed``, ``step`` and ``layer`` are integers: Python ints in int64's
    range, or any NumPy integer (a np.uint64 too). Each is folded in by xor and then splitmix64's finalizer:
    ``mix(mix(mix(seed + G) ^ (step + G)) ^ (layer + G))``, ``G`` the golden
    ratio constant. Since the finalizer is a bijection, two layers of one
    step (or two steps of one seed, at one layer) never share a key, and
    keys of neighbouring steps or layers have unrelated bits. Callable from
    Python (a Python int comes back) and from ``@njit`` code (an int64).
    """
    z = _mix64(np.uint64(seed) + _GOLDEN)
    z = _mix64(z ^ (np.uint64(step) + _GOLDEN))
    z = _mix64(z ^ (np.uint64(layer) + _GOLDEN))
    return np.int64(z)


@jit(parallel=True)
def dropout_forward(act, key, p):
    """Inverted dropout, in place: each unit of ``act`` is set to 0 with
    probability ``p``, the others multiplied by ``1/(1-p)``. Overwrites ``act``.

    Unit ``(b, h)`` is dropped when ``z = mix(key + (b*H + h + 1) * G)``,
    read as a uniform ``(z >> 11) / 2**53`` in [0, 1), is below ``p``: ``z``
    is the ``(b*H + h + 1)``-th output of a splitmix64 stream seeded with
    ``key`` (an int64 from :func:`dropout_key`, or any 64-bit integer). The
    kernel compares integers, ``z >> 11 < ceil(p * 2**53)``, which is the
    same test exactly. So the mask depends on ``key``, ``b``, ``h`` and
    ``H`` alone, never on the thread count. A call on a row slice
    ``act[lo:hi]`` numbers the slice's rows from 0, so it draws another
    (equally valid) mask than the whole batch's call would for those rows.
    ``1/(1-p)`` is computed in float64, then rounded to ``act``'s dtype.
    ``p`` lies in [0, 1); ``p == 0`` returns at once, leaving ``act``
    untouched. Parallel over the batch: the hash costs several ReLUs per
    unit, enough for threads to pay from about a hundred rows.
    """
    # act (B, H)
    if p == 0:
        return
    B, H = act.shape
    scale = act.dtype.type(1.0 / (1.0 - np.float64(p)))
    zero = act.dtype.type(0)
    k = np.uint64(key)
    threshold = np.uint64(np.ceil(np.float64(p) * _TWO53))
    for b in prange(B):
        row = k + np.uint64(b * H + 1) * _GOLDEN
        for h in range(H):
            z = _mix64(row + np.uint64(h) * _GOLDEN)
            x = act[b, h]
            act[b, h] = zero if (z >> _S11) < threshold else x * scale


@jit
def dropout_backward(dinp, dout, out, p):
    """Overwrite ``dinp`` with ``dout * (1/(1-p))`` where ``out > 0`` and 0 elsewhere;
    ``dinp`` may be ``dout`` itself.

    ``out`` is :func:`dropout_forward`'s output over a ReLU layer's output,
    so ``out > 0`` exactly where the unit was kept *and* its ReLU was on
    (the scale ``1/(1-p) >= 1`` turns no positive value into 0). This one
    pass is the gradient through dropout and the ReLU before it: call it
    instead of :func:`relu_backward` when dropout is on. With ``p == 0`` it
    gives :func:`relu_backward`'s bits. ``1/(1-p)`` is computed in float64,
    then rounded to ``dinp``'s dtype, as in the forward pass.
    """
    # dout (B, H), out (B, H), dinp (B, H)
    B, H = out.shape
    scale = dinp.dtype.type(1.0 / (1.0 - np.float64(p)))
    zero = dinp.dtype.type(0)
    for b in range(B):
        for h in range(H):
            g = dout[b, h]  # read unconditionally, so the choice compiles to a select, not a branch
            dinp[b, h] = g * scale if out[b, h] > zero else zero
