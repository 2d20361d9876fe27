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
def linear_backward_input(dinp, dout, weight):
    """Overwrite ``dinp`` with ``dout @ weight.T``: the gradient passed back to the layer's input.

    Each ``dinp[b, d]`` is the dot product of ``dout[b]`` and ``weight[d]``,
    four rows of the batch at a time: each weight row loaded serves four
    sums, not one.
    Parallel over groups of four rows; the result does not depend on the
    thread count.
    """
    # dout (B, H), weight (D, H), dinp (B, D)
    B, H = dout.shape
    D = weight.shape[0]
    t = dinp.dtype.type
    for q in prange((B + 3) // 4):
        b0 = 4 * q
        if b0 + 4 <= B:
            b1, b2, b3 = b0 + 1, b0 + 2, b0 + 3
            for d in range(D):
                a0 = a1 = a2 = a3 = t(0)
                for h in range(H):
                    w = weight[d, h]
                    a0 += dout[b0, h] * w
                    a1 += dout[b1, h] * w
                    a2 += dout[b2, h] * w
                    a3 += dout[b3, h] * w
                dinp[b0, d] = a0
                dinp[b1, d] = a1
                dinp[b2, d] = a2
                dinp[b3, d] = a3
        else:  # the last rows, fewer than four
            for b in range(b0, B):
                for d in range(D):
                    acc = t(0)
                    for h in range(H):
                        acc += dout[b, h] * weight[d, h]
                    dinp[b, d] = acc


@jit
def linear_backward(dinp, dweight, dbias, dout, inp, weight):
    """Overwrite ``dinp``, ``dweight`` and ``dbias``: :func:`linear_backward_input`
    and :func:`linear_backward_params` in one call.

    Use :func:`linear_backward_params` alone for a first layer, whose input
    needs no gradient.
    """
    # dout (B, H), inp (B, D), weight (D, H), dinp (B, D), dweight (D, H), dbias (H,)
    linear_backward_params(dweight, dbias, dout, inp)
    linear_backward_input(dinp, dout, weight)


@jit(reassoc=False, inline=True)
def _chain8(o, x0, x1, x2, x3, x4, x5, x6, x7, w0, w1, w2, w3, w4, w5, w6, w7):
    """``o + x0*w0 + ... + x7*w7``, one fused multiply-add at a time, in that
    order: the inner step of the sparse kernels, inlined into their loops."""
    o += x0 * w0
    o += x1 * w1
    o += x2 * w2
    o += x3 * w3
    o += x4 * w4
    o += x5 * w5
    o += x6 * w6
    return o + x7 * w7


#: Rows of the batch that :func:`sparse_linear_forward` may take together (its
#: grouped loop is written for four).
ROW_GROUP = 4
#: :func:`sparse_linear_forward` takes rows four at a time when the inputs
#: non-zero in any of four rows number at most this many times those of one
#: row (on average): dense inputs (1.0) and Fashion-MNIST (1.6 on average)
#: gain from it, MNIST (2.05) loses (docs/performance.md, "Tried and measured").
ROW_GROUP_OVERLAP = 1.7


@jit
def _group_rows(inp):
    """Whether :func:`sparse_linear_forward` should take ``inp``'s rows four at a
    time, judged from its first four rows: the inputs non-zero in any of them
    against the average count of one."""
    B, D = inp.shape
    if B < 2 * ROW_GROUP:
        return False
    union = 0
    total = 0
    for d in range(D):
        x0, x1, x2, x3 = inp[0, d] != 0, inp[1, d] != 0, inp[2, d] != 0, inp[3, d] != 0
        union += x0 | x1 | x2 | x3
        total += x0 + x1 + x2 + x3
    return ROW_GROUP * union <= ROW_GROUP_OVERLAP * total


@jit(parallel=True, reassoc=False)
def sparse_linear_forward(out, index, inp, weight, bias, scale):
    """Overwrite ``out`` with ``scale * inp @ weight + bias`` (as :func:`linear_forward`
    when ``scale`` is 1), doing work only for the non-zero inputs. ``index``
    is scratch (overwritten).

    ``inp`` may hold integers: raw uint8 pixels with ``scale = 1/255`` are read
    at a quarter of the memory traffic of a float32 copy, and each pixel is
    converted (and scaled) as it is used.

    Each row first lists its non-zero columns in a row of ``index`` without
    a branch, then adds eight weight rows per pass over ``out[b]``: eight
    times fewer loads and stores of ``out`` than one row at a time, and no
    mispredicted branch per input. The sparser ``inp``, the faster (81% of
    MNIST's pixels and about half of the ReLU outputs are zero).

    On denser inputs the rows go :data:`ROW_GROUP` (4) at a time: the columns
    non-zero in any of the four are listed once, and the eight weight rows
    of a pass, loaded from L2 for the first row, are still in L1 for the
    other three. A zero input then adds ``0 * weight``, which changes
    nothing while the weights are finite (an infinite weight would turn
    into NaN where a row skips it). :func:`_group_rows` decides from the
    first four rows (:data:`ROW_GROUP_OVERLAP`); either way gives the same
    bits. Four MNIST digits share few non-zero pixels, so grouping would
    not pay there: MNIST goes one row at a time.

    The batch is cut into ``S = index.shape[0]`` parts that run in parallel,
    part ``s`` using ``index[s]`` as its list; any ``S >= 1`` gives the same
    bits (use at least the thread count; 16 is plenty). Each output is
    summed by one thread, in the order of the inputs, one fused multiply-add
    at a time (compiled without 'reassoc'), so neither the thread count nor
    the input's dtype (uint8 pixels or their float32 copy) changes the result.
    """
    # inp (B, D) any numeric dtype, weight (D, H), bias (H,), out (B, H), index (S, >=D) int32
    B, D = inp.shape
    H = weight.shape[1]
    G = ROW_GROUP if _group_rows(inp) else 1
    groups = (B + G - 1) // G
    S = min(index.shape[0], groups)
    t = weight.dtype.type
    a = t(scale)
    for s in prange(S):
        if G == 1:
            for b in range(s * B // S, (s + 1) * B // S):
                n = 0
                for d in range(D):
                    index[s, n] = d
                    n += inp[b, d] != 0
                for h in range(H):
                    out[b, h] = bias[h]
                n8 = n - n % 8
                for j in range(0, n8, 8):
                    d0, d1, d2, d3 = index[s, j], index[s, j + 1], index[s, j + 2], index[s, j + 3]
                    d4, d5, d6, d7 = index[s, j + 4], index[s, j + 5], index[s, j + 6], index[s, j + 7]
                    x0, x1, x2, x3 = t(inp[b, d0]) * a, t(inp[b, d1]) * a, t(inp[b, d2]) * a, t(inp[b, d3]) * a
                    x4, x5, x6, x7 = t(inp[b, d4]) * a, t(inp[b, d5]) * a, t(inp[b, d6]) * a, t(inp[b, d7]) * a
                    # The grouped loop below is kept apart: one loop serving both
                    # cases slowed this one-row case on MNIST.
                    for h in range(H):  # a chain of eight multiply-adds (fused: no 'reassoc' here)
                        out[b, h] = _chain8(out[b, h], x0, x1, x2, x3, x4, x5, x6, x7,
                                            weight[d0, h], weight[d1, h], weight[d2, h], weight[d3, h],
                                            weight[d4, h], weight[d5, h], weight[d6, h], weight[d7, h])
                for j in range(n8, n):
                    d = index[s, j]
                    x = t(inp[b, d]) * a
                    for h in range(H):
                        out[b, h] += x * weight[d, h]
        else:
            for q in range(s * groups // S, (s + 1) * groups // S):
                b0 = q * G
                b1 = min(b0 + G, B)
                # the last group may be short: its last row stands in for the missing ones
                r1, r2, r3 = min(b0 + 1, b1 - 1), min(b0 + 2, b1 - 1), min(b0 + 3, b1 - 1)
                n = 0
                for d in range(D):
                    index[s, n] = d
                    n += (inp[b0, d] != 0) | (inp[r1, d] != 0) | (inp[r2, d] != 0) | (inp[r3, d] != 0)
                for b in range(b0, b1):
                    for h in range(H):
                        out[b, h] = bias[h]
                n8 = n - n % 8
                for j in range(0, n8, 8):
                    d0, d1, d2, d3 = index[s, j], index[s, j + 1], index[s, j + 2], index[s, j + 3]
                    d4, d5, d6, d7 = index[s, j + 4], index[s, j + 5], index[s, j + 6], index[s, j + 7]
                    for b in range(b0, b1):
                        x0, x1, x2, x3 = t(inp[b, d0]) * a, t(inp[b, d1]) * a, t(inp[b, d2]) * a, t(inp[b, d3]) * a
                        x4, x5, x6, x7 = t(inp[b, d4]) * a, t(inp[b, d5]) * a, t(inp[b, d6]) * a, t(inp[b, d7]) * a
                        for h in range(H):
                            out[b, h] = _chain8(out[b, h], x0, x1, x2, x3, x4, x5, x6, x7,
                                                weight[d0, h], weight[d1, h], weight[d2, h], weight[d3, h],
                                                weight[d4, h], weight[d5, h], weight[d6, h], weight[d7, h])
                for j in range(n8, n):
                    d = index[s, j]
                    for b in range(b0, b1):
                        x = t(inp[b, d]) * a
                        for h in range(H):
                            out[b, h] += x * weight[d, h]


#: Samples per pass of :func:`sparse_linear_backward_params`: the part of the
#: input and of ``dout`` it reads per pass then stays in cache however large
#: the batch (a full-batch step reads 60000 rows).
SAMPLE_CHUNK = 256


#: Rows of ``dweight`` that :func:`sparse_linear_backward_params` fills together
#: (:func:`_add_four_column_products` is written for four).
COLUMN_GROUP = 4


@jit(reassoc=False)
def _add_four_column_products(dweight, index, d, c0, c1, dout, inp, a):
    """``dweight[d + g] += a * inp[c0:c1, d + g] @ dout[c0:c1]`` for ``g`` in
    0..3, over the samples whose input is non-zero in any of the four
    columns, listed in ``index`` (one row of the kernel's scratch).

    Each ``dout`` row loaded serves four rows of ``dweight``, not one: a
    third of the loads per multiply-add, and a quarter of the traffic from
    L2. Neighbouring inputs (pixels) tend to be zero or non-zero together,
    so the shared list is not much longer than each column's own. A zero
    input adds ``0 * dout[b, h]``, which leaves the sum's bits as they were
    while ``dout`` is finite: each sum is still one fused multiply-add per
    non-zero input, in sample order."""
    H = dout.shape[1]
    t = dweight.dtype.type
    e, f, g = d + 1, d + 2, d + 3
    n = 0
    for b in range(c0, c1):
        index[n] = b
        n += (inp[b, d] != 0) | (inp[b, e] != 0) | (inp[b, f] != 0) | (inp[b, g] != 0)
    n8 = n - n % 8
    for j in range(0, n8, 8):
        b0, b1, b2, b3 = index[j], index[j + 1], index[j + 2], index[j + 3]
        b4, b5, b6, b7 = index[j + 4], index[j + 5], index[j + 6], index[j + 7]
        u0, u1, u2, u3 = t(inp[b0, d]) * a, t(inp[b1, d]) * a, t(inp[b2, d]) * a, t(inp[b3, d]) * a
        u4, u5, u6, u7 = t(inp[b4, d]) * a, t(inp[b5, d]) * a, t(inp[b6, d]) * a, t(inp[b7, d]) * a
        v0, v1, v2, v3 = t(inp[b0, e]) * a, t(inp[b1, e]) * a, t(inp[b2, e]) * a, t(inp[b3, e]) * a
        v4, v5, v6, v7 = t(inp[b4, e]) * a, t(inp[b5, e]) * a, t(inp[b6, e]) * a, t(inp[b7, e]) * a
        w0, w1, w2, w3 = t(inp[b0, f]) * a, t(inp[b1, f]) * a, t(inp[b2, f]) * a, t(inp[b3, f]) * a
        w4, w5, w6, w7 = t(inp[b4, f]) * a, t(inp[b5, f]) * a, t(inp[b6, f]) * a, t(inp[b7, f]) * a
        x0, x1, x2, x3 = t(inp[b0, g]) * a, t(inp[b1, g]) * a, t(inp[b2, g]) * a, t(inp[b3, g]) * a
        x4, x5, x6, x7 = t(inp[b4, g]) * a, t(inp[b5, g]) * a, t(inp[b6, g]) * a, t(inp[b7, g]) * a
        for h in range(H):  # four chains of eight multiply-adds (fused: no 'reassoc' here)
            q0, q1, q2, q3 = dout[b0, h], dout[b1, h], dout[b2, h], dout[b3, h]
            q4, q5, q6, q7 = dout[b4, h], dout[b5, h], dout[b6, h], dout[b7, h]
            dweight[d, h] = _chain8(dweight[d, h], u0, u1, u2, u3, u4, u5, u6, u7, q0, q1, q2, q3, q4, q5, q6, q7)
            dweight[e, h] = _chain8(dweight[e, h], v0, v1, v2, v3, v4, v5, v6, v7, q0, q1, q2, q3, q4, q5, q6, q7)
            dweight[f, h] = _chain8(dweight[f, h], w0, w1, w2, w3, w4, w5, w6, w7, q0, q1, q2, q3, q4, q5, q6, q7)
            dweight[g, h] = _chain8(dweight[g, h], x0, x1, x2, x3, x4, x5, x6, x7, q0, q1, q2, q3, q4, q5, q6, q7)
    for j in range(n8, n):
        b = index[j]
        u, v, w, x = t(inp[b, d]) * a, t(inp[b, e]) * a, t(inp[b, f]) * a, t(inp[b, g]) * a
        for h in range(H):
            q = dout[b, h]
            dweight[d, h] += u * q
            dweight[e, h] += v * q
            dweight[f, h] += w * q
            dweight[g, h] += x * q


@jit(reassoc=False)
def _add_column_products(dweight, d, c0, c1, dout, inp, a):
    """``dweight[d] += a * inp[c0:c1, d] @ dout[c0:c1]`` over the non-zero inputs,
    one sample at a time: for the last ``D % 4`` rows only."""
    H = dout.shape[1]
    t = dweight.dtype.type
    for b in range(c0, c1):
        if inp[b, d] != 0:
            x = t(inp[b, d]) * a
            for h in range(H):
                dweight[d, h] += x * dout[b, h]


@jit(parallel=True)
def sparse_linear_backward_params(dweight, dbias, index, dout, inp, scale):
    """Overwrite ``dweight`` with ``scale * inp.T @ dout`` and ``dbias`` with
    ``dout`` summed over the batch (as :func:`linear_backward_params` when
    ``scale`` is 1), doing work only for the non-zero inputs. ``index`` is
    scratch (overwritten); ``inp`` may hold integers, as in
    :func:`sparse_linear_forward`.

    The rows of ``dweight`` are filled :data:`COLUMN_GROUP` (4) at a time:
    the samples whose input is non-zero in any of the four columns are
    listed, then eight of their ``dout`` rows are added per pass to all four
    rows of ``dweight``, each ``dout`` row loaded once for the four. Images
    gain because neighbouring pixels are zero or non-zero together; on
    inputs whose zeros have no spatial pattern the shared list is much
    longer than each column's own, and one row at a time would be faster.

    A batch larger than :data:`SAMPLE_CHUNK` is taken that many samples at
    a time, so the part of ``inp`` and ``dout`` in use stays in cache (a
    full-batch step reads 60000 rows). The groups of rows are cut into
    ``S = index.shape[0]`` parts that run in parallel, part ``s`` listing
    into ``index[s]``, which needs ``min(B, SAMPLE_CHUNK)`` columns or more;
    any ``S >= 1`` gives the same bits. Each sum runs over the batch in
    order, one fused multiply-add per non-zero input, so neither the thread
    count nor the grouping changes the result.
    """
    # dout (B, H), inp (B, D) any numeric dtype, dweight (D, H), dbias (H,), index (S, >=min(B, 256)) int32
    B, D = inp.shape
    H = dout.shape[1]
    groups = D // COLUMN_GROUP
    S = min(index.shape[0], max(groups, 1))
    a = dweight.dtype.type(scale)
    for s in prange(S):
        d_lo = COLUMN_GROUP * (s * groups // S)
        d_hi = COLUMN_GROUP * ((s + 1) * groups // S)
        if s == S - 1:
            d_hi = D  # the last part takes the rows left over (D % 4), one at a time
        for d in range(d_lo, d_hi):
            for h in range(H):
                dweight[d, h] = 0
        for c0 in range(0, B, SAMPLE_CHUNK):
            c1 = min(B, c0 + SAMPLE_CHUNK)
            d = d_lo
            while d + COLUMN_GROUP <= d_hi:
                _add_four_column_products(dweight, index[s], d, c0, c1, dout, inp, a)
                d += COLUMN_GROUP
            while d < d_hi:
                _add_column_products(dweight, d, c0, c1, dout, inp, a)
                d += 1
    for h in range(H):
        dbias[h] = 0
    for b in range(B):
        for h in range(H):
            dbias[h] += dout[b, h]
