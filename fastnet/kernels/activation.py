"""The ReLU activation."""
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
