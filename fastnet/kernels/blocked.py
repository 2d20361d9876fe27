"""Register-blocked dense products for the hidden layers, the way BLIS builds a matmul.

Each kernel here is one product ``C (M, N) = A (M, K) @ B (K, N)``
(:func:`_product`; in the forward pass each sum starts from the bias),
run in three steps:

- **A is packed** once per call into groups of :data:`MR` (6) rows,
  interleaved by ``k``: the six values one step of the micro-kernel needs
  lie side by side, whatever the layout of ``A`` (a batch, or a batch read
  transposed for the weight gradient). Integer inputs are converted (and
  scaled) here, once.
- **B is packed** a panel at a time: ``NR`` columns (two 256-bit vectors:
  16 float32 or 8 float64) by up to :data:`KC` rows, contiguous. ``B``'s
  rows are copied a panel's width at a time, written out so that each copy
  is two vector loads and stores; a transposed ``B`` (``weight.T``) is read
  down eight of its columns at a time, which are rows in memory (half a
  float32 panel's row, a whole float64 one, per pass).
- **The micro-kernel** (:func:`_tile_6x16`, :func:`_tile_6x8`) keeps a
  6 x NR tile of sums (12 vectors) in registers for a whole run of terms:
  per ``k``, two vector loads of ``B`` and six broadcasts of ``A`` feed
  twelve fused multiply-adds, where the plain kernels of :mod:`.linear` load and store
  ``C`` around every one. At the end of the run its sums are added to ``C``,
  or, on the first run, written to it, plus the bias where there is one (so
  ``C`` is never cleared first: the weight gradient of a small batch is one
  run, and writing ``C`` once is much of its time). A tile past an edge of
  ``C`` (``M % 6``, ``N % NR``) goes through a small buffer; the packs are
  padded with zeros.
- **The epilogue**: as the last run is written, the block just written (in
  L1) takes the ReLU (:func:`blocked_linear_relu_forward`) or the ReLU's
  gradient gate (:func:`blocked_linear_backward_input_relu`). The training
  loop then never stores a hidden layer's sums before its ReLU, nor reads
  an activation back in a pass of its own, and the bits are those of the
  two passes (docs/performance.md has the figures). The ReLU stays outside
  the sums' registers: choosing between the sums' values in the
  micro-kernel itself made Numba's compile take minutes.

``K`` is cut into runs of even length of at most ``KC`` (784 terms: four
runs of 196, not three of 256 and one of 16).

Why six rows: two fused multiply-adds a cycle at a latency of four cycles
need eight independent chains of sums. Four rows (8 vectors) left the
micro-kernel no slack; six (12 vectors, as BLIS's Haswell and Zen kernels)
ran the products 1.02-1.25x faster at batches of 32-512 (docs/performance.md).

It is written as scalar code (six rows of named sums); LLVM's SLP
vectorizer turns each row into two vectors. Numba leaves that pass off by
default, so fastnet compiles its own functions with it on
(:func:`fastnet._jit.jit`). The loop over a part's row groups and panels,
with the micro-kernel inlined in it, is a function called once per run of
terms (:func:`_tiles_6x16`): it compiles once per dtype and layout of ``C``,
shared by every kernel and caller. Inlined into each kernel, each of the
kernels' dozen signatures compiled it again and the test suite's compiles
took minutes more; called once per tile, it cost 15% of the speed. For the
same reason the parallel driver, :func:`_product`, is one function that
the kernels call, not inline in each: a kernel and its fused twin pass it
the same types and differ in the epilogue's number alone, so they share
one compiled driver.

The column panels are cut into :data:`PARTS` parts that run in parallel,
each packing its own panels. Every element of ``C`` is summed by one part,
in ``k`` order, one fused multiply-add per term (and a run of terms at a
time into ``C``): the same bits for any thread count. Unlike the sparse
kernels, a zero input costs as much as any other (and a zero times an
infinite weight is NaN, as in ``A @ B``): at half of the inputs zero, the
dense pair still takes 0.75x the sparse pair's time (docs/performance.md,
"Which kernels each layer takes").

The scratch ``pack (P,)`` of the parameters' dtype holds the packed ``A``,
a run of ``KC`` rows of every panel of ``B``, and a tile per panel;
:func:`pack_size` says how long it must be.
"""
import numpy as np
from numba import prange

from .._jit import jit

#: Rows of ``A`` (and of a micro-kernel's tile) packed together.
MR = 6
#: Rows of a ``B`` panel: a run of terms the micro-kernel sums in registers.
KC = 256
#: Rows of ``A`` taken past a part's panels at a time, rounded down to whole row groups (126 rows:
#: 21 groups of 6): about ``MC x KC`` of ``A`` (126 KiB in float32) and the part's ``KC`` rows of ``B``
#: (a quarter of 1,024 columns: 256 KiB) stay in a core's 512 KiB L2 together.
MC = 128
#: The widest panel (float32's 16 columns); float64's is 8.
NR_MAX = 16
#: Parts a product's panels are cut into, run in parallel: each reads rows of ``B`` a quarter as long as ``C``'s.
PARTS = 4
#: What a product does to each block of sums as the last run of terms writes it: nothing,
#: the ReLU, or the ReLU's gradient gate (keep a sum where the unit was on).
NONE, RELU, GATE = 0, 1, 2
# (The kernels pass it as ``np.int64(...)``: a bare constant would be typed as a literal, and each
# value would compile a driver of its own.)


def pack_size(M, K, N):
    """The length of the ``pack`` scratch for ``C (M, N) = A (M, K) @ B (K, N)``: the
    packed ``A``, a block of ``KC`` rows of ``B``, a tile per panel, and the row the sums start from."""
    groups = (M + MR - 1) // MR
    return groups * MR * K + (KC + MR + 1) * (N + NR_MAX)


@jit(inline=True)
def _relu(s, z):
    """The ReLU of one sum, as :func:`~fastnet.kernels.relu_forward` takes it (NaN stays NaN)."""
    return s if not s <= z else z


@jit(inline=True)
def _gated(s, gate, z):
    """One sum where its unit's ReLU was on (``gate > 0``), else 0, as
    :func:`~fastnet.kernels.relu_backward` takes it."""
    return s if gate > z else z


@jit(reassoc=False, inline=True)
def _tile_6x16(c, i0, j0, pa, pb, kc, tile, first, last, epilogue, start, gate):
    """Add to ``c[i0:i0 + 6, j0:j0 + 16]`` the product of a row group ``pa`` and a panel ``pb``
    (float32: two 256-bit vectors a row) over a run of ``kc`` terms, or with ``first`` write
    it there, plus ``start[j0:]`` (the bias) in every row unless ``start`` is empty. The
    96 sums (12 vectors) stay in registers for the whole run, one fused multiply-add each,
    in ``k`` order. With ``last``, the :data:`RELU` epilogue then takes the ReLU of the
    block (NaN stays NaN), and :data:`GATE` zeroes it where ``gate`` is not positive: on
    the block just written, in L1. A block past the edge of ``c`` goes through ``tile``
    (see the module docstring)."""
    # pa (>= kc * 6,), pb (>= kc * 16,), tile (6 * 16,), start (>= j0 + 16,) or (0,), c (M, N), gate (M, N) or unused
    M, N = c.shape
    inside = i0 + 6 <= M and j0 + 16 <= N
    z = tile.dtype.type(0)
    s00, s01, s02, s03, s04, s05, s06, s07 = z, z, z, z, z, z, z, z
    s08, s09, s0a, s0b, s0c, s0d, s0e, s0f = z, z, z, z, z, z, z, z
    s10, s11, s12, s13, s14, s15, s16, s17 = z, z, z, z, z, z, z, z
    s18, s19, s1a, s1b, s1c, s1d, s1e, s1f = z, z, z, z, z, z, z, z
    s20, s21, s22, s23, s24, s25, s26, s27 = z, z, z, z, z, z, z, z
    s28, s29, s2a, s2b, s2c, s2d, s2e, s2f = z, z, z, z, z, z, z, z
    s30, s31, s32, s33, s34, s35, s36, s37 = z, z, z, z, z, z, z, z
    s38, s39, s3a, s3b, s3c, s3d, s3e, s3f = z, z, z, z, z, z, z, z
    s40, s41, s42, s43, s44, s45, s46, s47 = z, z, z, z, z, z, z, z
    s48, s49, s4a, s4b, s4c, s4d, s4e, s4f = z, z, z, z, z, z, z, z
    s50, s51, s52, s53, s54, s55, s56, s57 = z, z, z, z, z, z, z, z
    s58, s59, s5a, s5b, s5c, s5d, s5e, s5f = z, z, z, z, z, z, z, z
    for k in range(kc):
        a0, a1, a2, a3, a4, a5 = pa[6 * k + 0], pa[6 * k + 1], pa[6 * k + 2], pa[6 * k + 3], pa[6 * k + 4], pa[6 * k + 5]
        b0, b1, b2, b3 = pb[16 * k + 0], pb[16 * k + 1], pb[16 * k + 2], pb[16 * k + 3]
        b4, b5, b6, b7 = pb[16 * k + 4], pb[16 * k + 5], pb[16 * k + 6], pb[16 * k + 7]
        b8, b9, ba, bb = pb[16 * k + 8], pb[16 * k + 9], pb[16 * k + 10], pb[16 * k + 11]
        bc, bd, be, bf = pb[16 * k + 12], pb[16 * k + 13], pb[16 * k + 14], pb[16 * k + 15]
        s00, s01, s02, s03 = s00 + a0 * b0, s01 + a0 * b1, s02 + a0 * b2, s03 + a0 * b3
        s04, s05, s06, s07 = s04 + a0 * b4, s05 + a0 * b5, s06 + a0 * b6, s07 + a0 * b7
        s08, s09, s0a, s0b = s08 + a0 * b8, s09 + a0 * b9, s0a + a0 * ba, s0b + a0 * bb
        s0c, s0d, s0e, s0f = s0c + a0 * bc, s0d + a0 * bd, s0e + a0 * be, s0f + a0 * bf
        s10, s11, s12, s13 = s10 + a1 * b0, s11 + a1 * b1, s12 + a1 * b2, s13 + a1 * b3
        s14, s15, s16, s17 = s14 + a1 * b4, s15 + a1 * b5, s16 + a1 * b6, s17 + a1 * b7
        s18, s19, s1a, s1b = s18 + a1 * b8, s19 + a1 * b9, s1a + a1 * ba, s1b + a1 * bb
        s1c, s1d, s1e, s1f = s1c + a1 * bc, s1d + a1 * bd, s1e + a1 * be, s1f + a1 * bf
        s20, s21, s22, s23 = s20 + a2 * b0, s21 + a2 * b1, s22 + a2 * b2, s23 + a2 * b3
        s24, s25, s26, s27 = s24 + a2 * b4, s25 + a2 * b5, s26 + a2 * b6, s27 + a2 * b7
        s28, s29, s2a, s2b = s28 + a2 * b8, s29 + a2 * b9, s2a + a2 * ba, s2b + a2 * bb
        s2c, s2d, s2e, s2f = s2c + a2 * bc, s2d + a2 * bd, s2e + a2 * be, s2f + a2 * bf
        s30, s31, s32, s33 = s30 + a3 * b0, s31 + a3 * b1, s32 + a3 * b2, s33 + a3 * b3
        s34, s35, s36, s37 = s34 + a3 * b4, s35 + a3 * b5, s36 + a3 * b6, s37 + a3 * b7
        s38, s39, s3a, s3b = s38 + a3 * b8, s39 + a3 * b9, s3a + a3 * ba, s3b + a3 * bb
        s3c, s3d, s3e, s3f = s3c + a3 * bc, s3d + a3 * bd, s3e + a3 * be, s3f + a3 * bf
        s40, s41, s42, s43 = s40 + a4 * b0, s41 + a4 * b1, s42 + a4 * b2, s43 + a4 * b3
        s44, s45, s46, s47 = s44 + a4 * b4, s45 + a4 * b5, s46 + a4 * b6, s47 + a4 * b7
        s48, s49, s4a, s4b = s48 + a4 * b8, s49 + a4 * b9, s4a + a4 * ba, s4b + a4 * bb
        s4c, s4d, s4e, s4f = s4c + a4 * bc, s4d + a4 * bd, s4e + a4 * be, s4f + a4 * bf
        s50, s51, s52, s53 = s50 + a5 * b0, s51 + a5 * b1, s52 + a5 * b2, s53 + a5 * b3
        s54, s55, s56, s57 = s54 + a5 * b4, s55 + a5 * b5, s56 + a5 * b6, s57 + a5 * b7
        s58, s59, s5a, s5b = s58 + a5 * b8, s59 + a5 * b9, s5a + a5 * ba, s5b + a5 * bb
        s5c, s5d, s5e, s5f = s5c + a5 * bc, s5d + a5 * bd, s5e + a5 * be, s5f + a5 * bf
    if inside and not first:
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3] = c[i0 + 0, j0 + 0] + s00, c[i0 + 0, j0 + 1] + s01, c[i0 + 0, j0 + 2] + s02, c[i0 + 0, j0 + 3] + s03
        c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = c[i0 + 0, j0 + 4] + s04, c[i0 + 0, j0 + 5] + s05, c[i0 + 0, j0 + 6] + s06, c[i0 + 0, j0 + 7] + s07
        c[i0 + 0, j0 + 8], c[i0 + 0, j0 + 9], c[i0 + 0, j0 + 10], c[i0 + 0, j0 + 11] = c[i0 + 0, j0 + 8] + s08, c[i0 + 0, j0 + 9] + s09, c[i0 + 0, j0 + 10] + s0a, c[i0 + 0, j0 + 11] + s0b
        c[i0 + 0, j0 + 12], c[i0 + 0, j0 + 13], c[i0 + 0, j0 + 14], c[i0 + 0, j0 + 15] = c[i0 + 0, j0 + 12] + s0c, c[i0 + 0, j0 + 13] + s0d, c[i0 + 0, j0 + 14] + s0e, c[i0 + 0, j0 + 15] + s0f
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3] = c[i0 + 1, j0 + 0] + s10, c[i0 + 1, j0 + 1] + s11, c[i0 + 1, j0 + 2] + s12, c[i0 + 1, j0 + 3] + s13
        c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = c[i0 + 1, j0 + 4] + s14, c[i0 + 1, j0 + 5] + s15, c[i0 + 1, j0 + 6] + s16, c[i0 + 1, j0 + 7] + s17
        c[i0 + 1, j0 + 8], c[i0 + 1, j0 + 9], c[i0 + 1, j0 + 10], c[i0 + 1, j0 + 11] = c[i0 + 1, j0 + 8] + s18, c[i0 + 1, j0 + 9] + s19, c[i0 + 1, j0 + 10] + s1a, c[i0 + 1, j0 + 11] + s1b
        c[i0 + 1, j0 + 12], c[i0 + 1, j0 + 13], c[i0 + 1, j0 + 14], c[i0 + 1, j0 + 15] = c[i0 + 1, j0 + 12] + s1c, c[i0 + 1, j0 + 13] + s1d, c[i0 + 1, j0 + 14] + s1e, c[i0 + 1, j0 + 15] + s1f
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3] = c[i0 + 2, j0 + 0] + s20, c[i0 + 2, j0 + 1] + s21, c[i0 + 2, j0 + 2] + s22, c[i0 + 2, j0 + 3] + s23
        c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = c[i0 + 2, j0 + 4] + s24, c[i0 + 2, j0 + 5] + s25, c[i0 + 2, j0 + 6] + s26, c[i0 + 2, j0 + 7] + s27
        c[i0 + 2, j0 + 8], c[i0 + 2, j0 + 9], c[i0 + 2, j0 + 10], c[i0 + 2, j0 + 11] = c[i0 + 2, j0 + 8] + s28, c[i0 + 2, j0 + 9] + s29, c[i0 + 2, j0 + 10] + s2a, c[i0 + 2, j0 + 11] + s2b
        c[i0 + 2, j0 + 12], c[i0 + 2, j0 + 13], c[i0 + 2, j0 + 14], c[i0 + 2, j0 + 15] = c[i0 + 2, j0 + 12] + s2c, c[i0 + 2, j0 + 13] + s2d, c[i0 + 2, j0 + 14] + s2e, c[i0 + 2, j0 + 15] + s2f
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3] = c[i0 + 3, j0 + 0] + s30, c[i0 + 3, j0 + 1] + s31, c[i0 + 3, j0 + 2] + s32, c[i0 + 3, j0 + 3] + s33
        c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = c[i0 + 3, j0 + 4] + s34, c[i0 + 3, j0 + 5] + s35, c[i0 + 3, j0 + 6] + s36, c[i0 + 3, j0 + 7] + s37
        c[i0 + 3, j0 + 8], c[i0 + 3, j0 + 9], c[i0 + 3, j0 + 10], c[i0 + 3, j0 + 11] = c[i0 + 3, j0 + 8] + s38, c[i0 + 3, j0 + 9] + s39, c[i0 + 3, j0 + 10] + s3a, c[i0 + 3, j0 + 11] + s3b
        c[i0 + 3, j0 + 12], c[i0 + 3, j0 + 13], c[i0 + 3, j0 + 14], c[i0 + 3, j0 + 15] = c[i0 + 3, j0 + 12] + s3c, c[i0 + 3, j0 + 13] + s3d, c[i0 + 3, j0 + 14] + s3e, c[i0 + 3, j0 + 15] + s3f
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3] = c[i0 + 4, j0 + 0] + s40, c[i0 + 4, j0 + 1] + s41, c[i0 + 4, j0 + 2] + s42, c[i0 + 4, j0 + 3] + s43
        c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = c[i0 + 4, j0 + 4] + s44, c[i0 + 4, j0 + 5] + s45, c[i0 + 4, j0 + 6] + s46, c[i0 + 4, j0 + 7] + s47
        c[i0 + 4, j0 + 8], c[i0 + 4, j0 + 9], c[i0 + 4, j0 + 10], c[i0 + 4, j0 + 11] = c[i0 + 4, j0 + 8] + s48, c[i0 + 4, j0 + 9] + s49, c[i0 + 4, j0 + 10] + s4a, c[i0 + 4, j0 + 11] + s4b
        c[i0 + 4, j0 + 12], c[i0 + 4, j0 + 13], c[i0 + 4, j0 + 14], c[i0 + 4, j0 + 15] = c[i0 + 4, j0 + 12] + s4c, c[i0 + 4, j0 + 13] + s4d, c[i0 + 4, j0 + 14] + s4e, c[i0 + 4, j0 + 15] + s4f
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3] = c[i0 + 5, j0 + 0] + s50, c[i0 + 5, j0 + 1] + s51, c[i0 + 5, j0 + 2] + s52, c[i0 + 5, j0 + 3] + s53
        c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = c[i0 + 5, j0 + 4] + s54, c[i0 + 5, j0 + 5] + s55, c[i0 + 5, j0 + 6] + s56, c[i0 + 5, j0 + 7] + s57
        c[i0 + 5, j0 + 8], c[i0 + 5, j0 + 9], c[i0 + 5, j0 + 10], c[i0 + 5, j0 + 11] = c[i0 + 5, j0 + 8] + s58, c[i0 + 5, j0 + 9] + s59, c[i0 + 5, j0 + 10] + s5a, c[i0 + 5, j0 + 11] + s5b
        c[i0 + 5, j0 + 12], c[i0 + 5, j0 + 13], c[i0 + 5, j0 + 14], c[i0 + 5, j0 + 15] = c[i0 + 5, j0 + 12] + s5c, c[i0 + 5, j0 + 13] + s5d, c[i0 + 5, j0 + 14] + s5e, c[i0 + 5, j0 + 15] + s5f
    elif inside and start.shape[0] > 0:  # the first run: the sums plus where they start (the bias)
        t0, t1, t2, t3, t4, t5, t6, t7 = start[j0 + 0], start[j0 + 1], start[j0 + 2], start[j0 + 3], start[j0 + 4], start[j0 + 5], start[j0 + 6], start[j0 + 7]
        t8, t9, ta, tb, tc, td, te, tf = start[j0 + 8], start[j0 + 9], start[j0 + 10], start[j0 + 11], start[j0 + 12], start[j0 + 13], start[j0 + 14], start[j0 + 15]
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3] = t0 + s00, t1 + s01, t2 + s02, t3 + s03
        c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = t4 + s04, t5 + s05, t6 + s06, t7 + s07
        c[i0 + 0, j0 + 8], c[i0 + 0, j0 + 9], c[i0 + 0, j0 + 10], c[i0 + 0, j0 + 11] = t8 + s08, t9 + s09, ta + s0a, tb + s0b
        c[i0 + 0, j0 + 12], c[i0 + 0, j0 + 13], c[i0 + 0, j0 + 14], c[i0 + 0, j0 + 15] = tc + s0c, td + s0d, te + s0e, tf + s0f
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3] = t0 + s10, t1 + s11, t2 + s12, t3 + s13
        c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = t4 + s14, t5 + s15, t6 + s16, t7 + s17
        c[i0 + 1, j0 + 8], c[i0 + 1, j0 + 9], c[i0 + 1, j0 + 10], c[i0 + 1, j0 + 11] = t8 + s18, t9 + s19, ta + s1a, tb + s1b
        c[i0 + 1, j0 + 12], c[i0 + 1, j0 + 13], c[i0 + 1, j0 + 14], c[i0 + 1, j0 + 15] = tc + s1c, td + s1d, te + s1e, tf + s1f
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3] = t0 + s20, t1 + s21, t2 + s22, t3 + s23
        c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = t4 + s24, t5 + s25, t6 + s26, t7 + s27
        c[i0 + 2, j0 + 8], c[i0 + 2, j0 + 9], c[i0 + 2, j0 + 10], c[i0 + 2, j0 + 11] = t8 + s28, t9 + s29, ta + s2a, tb + s2b
        c[i0 + 2, j0 + 12], c[i0 + 2, j0 + 13], c[i0 + 2, j0 + 14], c[i0 + 2, j0 + 15] = tc + s2c, td + s2d, te + s2e, tf + s2f
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3] = t0 + s30, t1 + s31, t2 + s32, t3 + s33
        c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = t4 + s34, t5 + s35, t6 + s36, t7 + s37
        c[i0 + 3, j0 + 8], c[i0 + 3, j0 + 9], c[i0 + 3, j0 + 10], c[i0 + 3, j0 + 11] = t8 + s38, t9 + s39, ta + s3a, tb + s3b
        c[i0 + 3, j0 + 12], c[i0 + 3, j0 + 13], c[i0 + 3, j0 + 14], c[i0 + 3, j0 + 15] = tc + s3c, td + s3d, te + s3e, tf + s3f
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3] = t0 + s40, t1 + s41, t2 + s42, t3 + s43
        c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = t4 + s44, t5 + s45, t6 + s46, t7 + s47
        c[i0 + 4, j0 + 8], c[i0 + 4, j0 + 9], c[i0 + 4, j0 + 10], c[i0 + 4, j0 + 11] = t8 + s48, t9 + s49, ta + s4a, tb + s4b
        c[i0 + 4, j0 + 12], c[i0 + 4, j0 + 13], c[i0 + 4, j0 + 14], c[i0 + 4, j0 + 15] = tc + s4c, td + s4d, te + s4e, tf + s4f
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3] = t0 + s50, t1 + s51, t2 + s52, t3 + s53
        c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = t4 + s54, t5 + s55, t6 + s56, t7 + s57
        c[i0 + 5, j0 + 8], c[i0 + 5, j0 + 9], c[i0 + 5, j0 + 10], c[i0 + 5, j0 + 11] = t8 + s58, t9 + s59, ta + s5a, tb + s5b
        c[i0 + 5, j0 + 12], c[i0 + 5, j0 + 13], c[i0 + 5, j0 + 14], c[i0 + 5, j0 + 15] = tc + s5c, td + s5d, te + s5e, tf + s5f
    elif inside:
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3], c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = s00, s01, s02, s03, s04, s05, s06, s07
        c[i0 + 0, j0 + 8], c[i0 + 0, j0 + 9], c[i0 + 0, j0 + 10], c[i0 + 0, j0 + 11], c[i0 + 0, j0 + 12], c[i0 + 0, j0 + 13], c[i0 + 0, j0 + 14], c[i0 + 0, j0 + 15] = s08, s09, s0a, s0b, s0c, s0d, s0e, s0f
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3], c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = s10, s11, s12, s13, s14, s15, s16, s17
        c[i0 + 1, j0 + 8], c[i0 + 1, j0 + 9], c[i0 + 1, j0 + 10], c[i0 + 1, j0 + 11], c[i0 + 1, j0 + 12], c[i0 + 1, j0 + 13], c[i0 + 1, j0 + 14], c[i0 + 1, j0 + 15] = s18, s19, s1a, s1b, s1c, s1d, s1e, s1f
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3], c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = s20, s21, s22, s23, s24, s25, s26, s27
        c[i0 + 2, j0 + 8], c[i0 + 2, j0 + 9], c[i0 + 2, j0 + 10], c[i0 + 2, j0 + 11], c[i0 + 2, j0 + 12], c[i0 + 2, j0 + 13], c[i0 + 2, j0 + 14], c[i0 + 2, j0 + 15] = s28, s29, s2a, s2b, s2c, s2d, s2e, s2f
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3], c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = s30, s31, s32, s33, s34, s35, s36, s37
        c[i0 + 3, j0 + 8], c[i0 + 3, j0 + 9], c[i0 + 3, j0 + 10], c[i0 + 3, j0 + 11], c[i0 + 3, j0 + 12], c[i0 + 3, j0 + 13], c[i0 + 3, j0 + 14], c[i0 + 3, j0 + 15] = s38, s39, s3a, s3b, s3c, s3d, s3e, s3f
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3], c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = s40, s41, s42, s43, s44, s45, s46, s47
        c[i0 + 4, j0 + 8], c[i0 + 4, j0 + 9], c[i0 + 4, j0 + 10], c[i0 + 4, j0 + 11], c[i0 + 4, j0 + 12], c[i0 + 4, j0 + 13], c[i0 + 4, j0 + 14], c[i0 + 4, j0 + 15] = s48, s49, s4a, s4b, s4c, s4d, s4e, s4f
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3], c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = s50, s51, s52, s53, s54, s55, s56, s57
        c[i0 + 5, j0 + 8], c[i0 + 5, j0 + 9], c[i0 + 5, j0 + 10], c[i0 + 5, j0 + 11], c[i0 + 5, j0 + 12], c[i0 + 5, j0 + 13], c[i0 + 5, j0 + 14], c[i0 + 5, j0 + 15] = s58, s59, s5a, s5b, s5c, s5d, s5e, s5f
    else:  # a block at the edge: through the buffer, the part inside c
        tile[0], tile[1], tile[2], tile[3], tile[4], tile[5], tile[6], tile[7] = s00, s01, s02, s03, s04, s05, s06, s07
        tile[8], tile[9], tile[10], tile[11], tile[12], tile[13], tile[14], tile[15] = s08, s09, s0a, s0b, s0c, s0d, s0e, s0f
        tile[16], tile[17], tile[18], tile[19], tile[20], tile[21], tile[22], tile[23] = s10, s11, s12, s13, s14, s15, s16, s17
        tile[24], tile[25], tile[26], tile[27], tile[28], tile[29], tile[30], tile[31] = s18, s19, s1a, s1b, s1c, s1d, s1e, s1f
        tile[32], tile[33], tile[34], tile[35], tile[36], tile[37], tile[38], tile[39] = s20, s21, s22, s23, s24, s25, s26, s27
        tile[40], tile[41], tile[42], tile[43], tile[44], tile[45], tile[46], tile[47] = s28, s29, s2a, s2b, s2c, s2d, s2e, s2f
        tile[48], tile[49], tile[50], tile[51], tile[52], tile[53], tile[54], tile[55] = s30, s31, s32, s33, s34, s35, s36, s37
        tile[56], tile[57], tile[58], tile[59], tile[60], tile[61], tile[62], tile[63] = s38, s39, s3a, s3b, s3c, s3d, s3e, s3f
        tile[64], tile[65], tile[66], tile[67], tile[68], tile[69], tile[70], tile[71] = s40, s41, s42, s43, s44, s45, s46, s47
        tile[72], tile[73], tile[74], tile[75], tile[76], tile[77], tile[78], tile[79] = s48, s49, s4a, s4b, s4c, s4d, s4e, s4f
        tile[80], tile[81], tile[82], tile[83], tile[84], tile[85], tile[86], tile[87] = s50, s51, s52, s53, s54, s55, s56, s57
        tile[88], tile[89], tile[90], tile[91], tile[92], tile[93], tile[94], tile[95] = s58, s59, s5a, s5b, s5c, s5d, s5e, s5f
        for r in range(min(6, M - i0)):
            for j in range(min(16, N - j0)):
                if not first:
                    c[i0 + r, j0 + j] += tile[16 * r + j]
                elif start.shape[0] > 0:
                    c[i0 + r, j0 + j] = start[j0 + j] + tile[16 * r + j]
                else:
                    c[i0 + r, j0 + j] = tile[16 * r + j]
    if last and epilogue != NONE:  # on the block just written, in L1
        for r in range(min(6, M - i0)):
            row, gated = c[i0 + r], gate[i0 + r]
            for j in range(j0, min(j0 + 16, N)):
                row[j] = _relu(row[j], z) if epilogue == RELU else _gated(row[j], gated[j], z)


@jit(reassoc=False, inline=True)
def _tile_6x8(c, i0, j0, pa, pb, kc, tile, first, last, epilogue, start, gate):
    """Add to ``c[i0:i0 + 6, j0:j0 + 8]`` the product of a row group ``pa`` and a panel ``pb``
    (float64: two 256-bit vectors a row) over a run of ``kc`` terms, or with ``first`` write
    it there, plus ``start[j0:]`` (the bias) in every row unless ``start`` is empty. The
    48 sums (12 vectors) stay in registers for the whole run, one fused multiply-add each,
    in ``k`` order. With ``last``, the :data:`RELU` epilogue then takes the ReLU of the
    block (NaN stays NaN), and :data:`GATE` zeroes it where ``gate`` is not positive: on
    the block just written, in L1. A block past the edge of ``c`` goes through ``tile``
    (see the module docstring)."""
    # pa (>= kc * 6,), pb (>= kc * 8,), tile (6 * 8,), start (>= j0 + 8,) or (0,), c (M, N), gate (M, N) or unused
    M, N = c.shape
    inside = i0 + 6 <= M and j0 + 8 <= N
    z = tile.dtype.type(0)
    s00, s01, s02, s03, s04, s05, s06, s07 = z, z, z, z, z, z, z, z
    s10, s11, s12, s13, s14, s15, s16, s17 = z, z, z, z, z, z, z, z
    s20, s21, s22, s23, s24, s25, s26, s27 = z, z, z, z, z, z, z, z
    s30, s31, s32, s33, s34, s35, s36, s37 = z, z, z, z, z, z, z, z
    s40, s41, s42, s43, s44, s45, s46, s47 = z, z, z, z, z, z, z, z
    s50, s51, s52, s53, s54, s55, s56, s57 = z, z, z, z, z, z, z, z
    for k in range(kc):
        a0, a1, a2, a3, a4, a5 = pa[6 * k + 0], pa[6 * k + 1], pa[6 * k + 2], pa[6 * k + 3], pa[6 * k + 4], pa[6 * k + 5]
        b0, b1, b2, b3 = pb[8 * k + 0], pb[8 * k + 1], pb[8 * k + 2], pb[8 * k + 3]
        b4, b5, b6, b7 = pb[8 * k + 4], pb[8 * k + 5], pb[8 * k + 6], pb[8 * k + 7]
        s00, s01, s02, s03 = s00 + a0 * b0, s01 + a0 * b1, s02 + a0 * b2, s03 + a0 * b3
        s04, s05, s06, s07 = s04 + a0 * b4, s05 + a0 * b5, s06 + a0 * b6, s07 + a0 * b7
        s10, s11, s12, s13 = s10 + a1 * b0, s11 + a1 * b1, s12 + a1 * b2, s13 + a1 * b3
        s14, s15, s16, s17 = s14 + a1 * b4, s15 + a1 * b5, s16 + a1 * b6, s17 + a1 * b7
        s20, s21, s22, s23 = s20 + a2 * b0, s21 + a2 * b1, s22 + a2 * b2, s23 + a2 * b3
        s24, s25, s26, s27 = s24 + a2 * b4, s25 + a2 * b5, s26 + a2 * b6, s27 + a2 * b7
        s30, s31, s32, s33 = s30 + a3 * b0, s31 + a3 * b1, s32 + a3 * b2, s33 + a3 * b3
        s34, s35, s36, s37 = s34 + a3 * b4, s35 + a3 * b5, s36 + a3 * b6, s37 + a3 * b7
        s40, s41, s42, s43 = s40 + a4 * b0, s41 + a4 * b1, s42 + a4 * b2, s43 + a4 * b3
        s44, s45, s46, s47 = s44 + a4 * b4, s45 + a4 * b5, s46 + a4 * b6, s47 + a4 * b7
        s50, s51, s52, s53 = s50 + a5 * b0, s51 + a5 * b1, s52 + a5 * b2, s53 + a5 * b3
        s54, s55, s56, s57 = s54 + a5 * b4, s55 + a5 * b5, s56 + a5 * b6, s57 + a5 * b7
    if inside and not first:
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3] = c[i0 + 0, j0 + 0] + s00, c[i0 + 0, j0 + 1] + s01, c[i0 + 0, j0 + 2] + s02, c[i0 + 0, j0 + 3] + s03
        c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = c[i0 + 0, j0 + 4] + s04, c[i0 + 0, j0 + 5] + s05, c[i0 + 0, j0 + 6] + s06, c[i0 + 0, j0 + 7] + s07
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3] = c[i0 + 1, j0 + 0] + s10, c[i0 + 1, j0 + 1] + s11, c[i0 + 1, j0 + 2] + s12, c[i0 + 1, j0 + 3] + s13
        c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = c[i0 + 1, j0 + 4] + s14, c[i0 + 1, j0 + 5] + s15, c[i0 + 1, j0 + 6] + s16, c[i0 + 1, j0 + 7] + s17
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3] = c[i0 + 2, j0 + 0] + s20, c[i0 + 2, j0 + 1] + s21, c[i0 + 2, j0 + 2] + s22, c[i0 + 2, j0 + 3] + s23
        c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = c[i0 + 2, j0 + 4] + s24, c[i0 + 2, j0 + 5] + s25, c[i0 + 2, j0 + 6] + s26, c[i0 + 2, j0 + 7] + s27
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3] = c[i0 + 3, j0 + 0] + s30, c[i0 + 3, j0 + 1] + s31, c[i0 + 3, j0 + 2] + s32, c[i0 + 3, j0 + 3] + s33
        c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = c[i0 + 3, j0 + 4] + s34, c[i0 + 3, j0 + 5] + s35, c[i0 + 3, j0 + 6] + s36, c[i0 + 3, j0 + 7] + s37
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3] = c[i0 + 4, j0 + 0] + s40, c[i0 + 4, j0 + 1] + s41, c[i0 + 4, j0 + 2] + s42, c[i0 + 4, j0 + 3] + s43
        c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = c[i0 + 4, j0 + 4] + s44, c[i0 + 4, j0 + 5] + s45, c[i0 + 4, j0 + 6] + s46, c[i0 + 4, j0 + 7] + s47
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3] = c[i0 + 5, j0 + 0] + s50, c[i0 + 5, j0 + 1] + s51, c[i0 + 5, j0 + 2] + s52, c[i0 + 5, j0 + 3] + s53
        c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = c[i0 + 5, j0 + 4] + s54, c[i0 + 5, j0 + 5] + s55, c[i0 + 5, j0 + 6] + s56, c[i0 + 5, j0 + 7] + s57
    elif inside and start.shape[0] > 0:  # the first run: the sums plus where they start (the bias)
        t0, t1, t2, t3, t4, t5, t6, t7 = start[j0 + 0], start[j0 + 1], start[j0 + 2], start[j0 + 3], start[j0 + 4], start[j0 + 5], start[j0 + 6], start[j0 + 7]
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3] = t0 + s00, t1 + s01, t2 + s02, t3 + s03
        c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = t4 + s04, t5 + s05, t6 + s06, t7 + s07
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3] = t0 + s10, t1 + s11, t2 + s12, t3 + s13
        c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = t4 + s14, t5 + s15, t6 + s16, t7 + s17
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3] = t0 + s20, t1 + s21, t2 + s22, t3 + s23
        c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = t4 + s24, t5 + s25, t6 + s26, t7 + s27
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3] = t0 + s30, t1 + s31, t2 + s32, t3 + s33
        c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = t4 + s34, t5 + s35, t6 + s36, t7 + s37
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3] = t0 + s40, t1 + s41, t2 + s42, t3 + s43
        c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = t4 + s44, t5 + s45, t6 + s46, t7 + s47
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3] = t0 + s50, t1 + s51, t2 + s52, t3 + s53
        c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = t4 + s54, t5 + s55, t6 + s56, t7 + s57
    elif inside:
        c[i0 + 0, j0 + 0], c[i0 + 0, j0 + 1], c[i0 + 0, j0 + 2], c[i0 + 0, j0 + 3], c[i0 + 0, j0 + 4], c[i0 + 0, j0 + 5], c[i0 + 0, j0 + 6], c[i0 + 0, j0 + 7] = s00, s01, s02, s03, s04, s05, s06, s07
        c[i0 + 1, j0 + 0], c[i0 + 1, j0 + 1], c[i0 + 1, j0 + 2], c[i0 + 1, j0 + 3], c[i0 + 1, j0 + 4], c[i0 + 1, j0 + 5], c[i0 + 1, j0 + 6], c[i0 + 1, j0 + 7] = s10, s11, s12, s13, s14, s15, s16, s17
        c[i0 + 2, j0 + 0], c[i0 + 2, j0 + 1], c[i0 + 2, j0 + 2], c[i0 + 2, j0 + 3], c[i0 + 2, j0 + 4], c[i0 + 2, j0 + 5], c[i0 + 2, j0 + 6], c[i0 + 2, j0 + 7] = s20, s21, s22, s23, s24, s25, s26, s27
        c[i0 + 3, j0 + 0], c[i0 + 3, j0 + 1], c[i0 + 3, j0 + 2], c[i0 + 3, j0 + 3], c[i0 + 3, j0 + 4], c[i0 + 3, j0 + 5], c[i0 + 3, j0 + 6], c[i0 + 3, j0 + 7] = s30, s31, s32, s33, s34, s35, s36, s37
        c[i0 + 4, j0 + 0], c[i0 + 4, j0 + 1], c[i0 + 4, j0 + 2], c[i0 + 4, j0 + 3], c[i0 + 4, j0 + 4], c[i0 + 4, j0 + 5], c[i0 + 4, j0 + 6], c[i0 + 4, j0 + 7] = s40, s41, s42, s43, s44, s45, s46, s47
        c[i0 + 5, j0 + 0], c[i0 + 5, j0 + 1], c[i0 + 5, j0 + 2], c[i0 + 5, j0 + 3], c[i0 + 5, j0 + 4], c[i0 + 5, j0 + 5], c[i0 + 5, j0 + 6], c[i0 + 5, j0 + 7] = s50, s51, s52, s53, s54, s55, s56, s57
    else:  # a block at the edge: through the buffer, the part inside c
        tile[0], tile[1], tile[2], tile[3], tile[4], tile[5], tile[6], tile[7] = s00, s01, s02, s03, s04, s05, s06, s07
        tile[8], tile[9], tile[10], tile[11], tile[12], tile[13], tile[14], tile[15] = s10, s11, s12, s13, s14, s15, s16, s17
        tile[16], tile[17], tile[18], tile[19], tile[20], tile[21], tile[22], tile[23] = s20, s21, s22, s23, s24, s25, s26, s27
        tile[24], tile[25], tile[26], tile[27], tile[28], tile[29], tile[30], tile[31] = s30, s31, s32, s33, s34, s35, s36, s37
        tile[32], tile[33], tile[34], tile[35], tile[36], tile[37], tile[38], tile[39] = s40, s41, s42, s43, s44, s45, s46, s47
        tile[40], tile[41], tile[42], tile[43], tile[44], tile[45], tile[46], tile[47] = s50, s51, s52, s53, s54, s55, s56, s57
        for r in range(min(6, M - i0)):
            for j in range(min(8, N - j0)):
                if not first:
                    c[i0 + r, j0 + j] += tile[8 * r + j]
                elif start.shape[0] > 0:
                    c[i0 + r, j0 + j] = start[j0 + j] + tile[8 * r + j]
                else:
                    c[i0 + r, j0 + j] = tile[8 * r + j]
    if last and epilogue != NONE:  # on the block just written, in L1
        for r in range(min(6, M - i0)):
            row, gated = c[i0 + r], gate[i0 + r]
            for j in range(j0, min(j0 + 8, N)):
                row[j] = _relu(row[j], z) if epilogue == RELU else _gated(row[j], gated[j], z)


@jit(reassoc=False)
def _tiles_6x16(c, pack, K, k0, g0, g1, pbs, p0, p1, kc, tiles, first, last, epilogue, start, gate):
    """:func:`_tile_6x16` on row groups ``g0 .. g1`` of the packed ``A`` in ``pack`` times
    panels ``p0 .. p1`` in ``pbs``, along each row group: the row group stays in L1
    while the panels stream from L2, and ``c`` is written a row at a time."""
    for g in range(g0, g1):
        pa = pack[g * MR * K + k0 * MR:]
        for p in range(p0, p1):
            _tile_6x16(c, g * MR, p * 16, pa, pbs[p * KC * 16:], kc, tiles[p * MR * 16:], first, last, epilogue,
                       start, gate)


@jit(reassoc=False)
def _tiles_6x8(c, pack, K, k0, g0, g1, pbs, p0, p1, kc, tiles, first, last, epilogue, start, gate):
    """:func:`_tile_6x8` on row groups ``g0 .. g1`` of the packed ``A`` in ``pack`` times
    panels ``p0 .. p1`` in ``pbs``, along each row group: the row group stays in L1
    while the panels stream from L2, and ``c`` is written a row at a time."""
    for g in range(g0, g1):
        pa = pack[g * MR * K + k0 * MR:]
        for p in range(p0, p1):
            _tile_6x8(c, g * MR, p * 8, pa, pbs[p * KC * 8:], kc, tiles[p * MR * 8:], first, last, epilogue,
                       start, gate)


@jit(inline=True)
def _tiles(c, pack, K, k0, g0, g1, pbs, p0, p1, kc, tiles, first, last, epilogue, start, gate):
    """The micro-kernel for ``c``'s dtype (6 x 16 for float32, 6 x 8 for float64) over
    row groups ``g0 .. g1`` and panels ``p0 .. p1``."""
    if c.itemsize == 4:
        _tiles_6x16(c, pack, K, k0, g0, g1, pbs, p0, p1, kc, tiles, first, last, epilogue, start, gate)
    else:
        _tiles_6x8(c, pack, K, k0, g0, g1, pbs, p0, p1, kc, tiles, first, last, epilogue, start, gate)


@jit(inline=True)
def _pack_panels(pbs, b, k0, kc, p0, p1, NR):
    """Rows ``k0 .. k0 + kc`` of panels ``p0 .. p1`` of ``b``: panel ``p``'s ``kc`` rows of ``NR``
    columns, contiguous, at ``pbs[p * KC * NR]``, zero past ``b``'s last column; read in
    ``b``'s memory order."""
    # b (K, N) any layout, pbs (>= p1 * KC * NR,)
    t = pbs.dtype.type
    N = b.shape[1]
    full = min(p1, N // NR)  # panels p0 .. full lie inside b
    if b.strides[1] <= b.strides[0]:  # rows of b contiguous: along each row, across the panels
        for p in range(p0, full):
            for k in range(kc):
                row = b[k0 + k]
                at = p * KC * NR + k * NR
                _copy_run(pbs[at:at + NR], row[p * NR:(p + 1) * NR], NR)
    else:  # a transpose (weight.T): down eight columns of b at once, each a row in memory
        for p in range(p0, full):
            for j in range(0, NR, 8):
                c0, c1 = b[k0:k0 + kc, p * NR + j], b[k0:k0 + kc, p * NR + j + 1]
                c2, c3 = b[k0:k0 + kc, p * NR + j + 2], b[k0:k0 + kc, p * NR + j + 3]
                c4, c5 = b[k0:k0 + kc, p * NR + j + 4], b[k0:k0 + kc, p * NR + j + 5]
                c6, c7 = b[k0:k0 + kc, p * NR + j + 6], b[k0:k0 + kc, p * NR + j + 7]
                to = pbs[p * KC * NR + j:]
                for k in range(kc):
                    to[k * NR], to[k * NR + 1], to[k * NR + 2], to[k * NR + 3] = c0[k], c1[k], c2[k], c3[k]
                    to[k * NR + 4], to[k * NR + 5], to[k * NR + 6], to[k * NR + 7] = c4[k], c5[k], c6[k], c7[k]
    for p in range(max(p0, full), p1):  # the last panel, past b's last column
        for k in range(kc):
            at = p * KC * NR + k * NR
            for j in range(NR):
                pbs[at + j] = b[k0 + k, p * NR + j] if p * NR + j < N else t(0)


@jit(inline=True)
def _copy_run(to, src, NR):
    """``to[:NR] = src[:NR]`` for a panel's width, written out so that it compiles to
    two vector loads and stores (a loop over ``NR`` copied one value at a time)."""
    if NR == 16:
        to[0], to[1], to[2], to[3], to[4], to[5], to[6], to[7] = src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7]
        to[8], to[9], to[10], to[11], to[12], to[13], to[14], to[15] = src[8], src[9], src[10], src[11], src[12], src[13], src[14], src[15]
    else:
        to[0], to[1], to[2], to[3], to[4], to[5], to[6], to[7] = src[0], src[1], src[2], src[3], src[4], src[5], src[6], src[7]


@jit(parallel=True, reassoc=False)
def _product(c, bias, a, b, pack, scale, epilogue, gate):
    """Overwrite ``c (M, N)`` with ``scale * a (M, K) @ b (K, N) + bias``, where ``bias``
    is a row ``(N,)`` each sum starts from, or empty for none; then the ``epilogue``
    (:data:`NONE`, :data:`RELU`, or :data:`GATE` by ``gate (M, N)``) as the last run of
    terms is written. ``a`` and ``b`` may be any 2-D views (a transpose included)."""
    M, K = a.shape
    N = b.shape[1]
    t = c.dtype.type
    NR = 64 // c.itemsize  # two 256-bit vectors
    groups = (M + MR - 1) // MR
    panels = (N + NR - 1) // NR
    a_size = groups * MR * K
    s_scale = t(scale)
    # A, packed once: group g holds rows g*MR.. interleaved by k, zero past row M
    for g in prange(groups):
        pa = pack[g * MR * K:(g + 1) * MR * K]
        for k in range(K):
            for r in range(MR):
                i = g * MR + r
                pa[k * MR + r] = t(a[i, k]) * s_scale if i < M else t(0)
    pbs = pack[a_size:a_size + panels * KC * NR]
    tiles = pack[a_size + panels * KC * NR:a_size + panels * (KC + MR) * NR]
    at = a_size + panels * (KC + MR) * NR
    start = pack[at:at + (panels * NR if bias.shape[0] > 0 else 0)]  # the bias, zero past it; or nothing
    S = min(PARTS, panels)
    blocks = max(1, (K + KC - 1) // KC)  # runs of terms of even length (784: 4 x 196, not 3 x 256 + 16)
    for s in prange(S):
        p0, p1 = s * panels // S, (s + 1) * panels // S
        for j in range(p0 * NR, min(start.shape[0], p1 * NR)):
            start[j] = bias[j] if j < N else t(0)
        for kb in range(blocks):
            k0, k1 = kb * K // blocks, (kb + 1) * K // blocks
            _pack_panels(pbs, b, k0, k1 - k0, p0, p1, NR)
            for g0 in range(0, groups, MC // MR):  # MC rows of A (whole groups) at a time: with the part's panels, in L2
                _tiles(c, pack, K, k0, g0, min(groups, g0 + MC // MR), pbs, p0, p1, k1 - k0, tiles, kb == 0,
                       kb == blocks - 1, epilogue, start, gate)


@jit(reassoc=False)
def blocked_linear_forward(out, pack, inp, weight, bias, scale):
    """Overwrite ``out`` with ``scale * inp @ weight + bias``, register-blocked;
    ``pack`` is scratch (overwritten, at least ``pack_size(B, D, H)`` long).
    ``inp`` may hold integers (uint8 pixels with ``scale = 1/255``)."""
    # inp (B, D), weight (D, H), bias (H,), out (B, H), pack (>= pack_size(B, D, H),)
    _product(out, bias, inp, weight, pack, scale, np.int64(NONE), out)


@jit(reassoc=False)
def blocked_linear_relu_forward(act, pack, inp, weight, bias, scale):
    """Overwrite ``act`` with ``relu(scale * inp @ weight + bias)``: :func:`blocked_linear_forward`
    and :func:`~fastnet.kernels.relu_forward` in one pass, the ReLU taken on each block of
    sums as the last run writes it, while it is in L1 (the same bits as the two kernels in
    turn). ``pack`` as there."""
    # inp (B, D), weight (D, H), bias (H,), act (B, H), pack (>= pack_size(B, D, H),)
    _product(act, bias, inp, weight, pack, scale, np.int64(RELU), act)


@jit(reassoc=False)
def blocked_linear_backward_input(dinp, pack, dout, weight):
    """Overwrite ``dinp`` with ``dout @ weight.T``, register-blocked; ``pack`` is
    scratch (at least ``pack_size(B, H, D)`` long)."""
    # dout (B, H), weight (D, H), dinp (B, D), pack (>= pack_size(B, H, D),)
    _product(dinp, dinp[0, :0], dout, weight.T, pack, 1.0, np.int64(NONE), dinp)


@jit(reassoc=False)
def blocked_linear_backward_input_relu(dpre, pack, dout, weight, inp):
    """Overwrite ``dpre`` with ``dout @ weight.T`` where ``inp > 0`` and 0 elsewhere: the
    gradient with respect to the pre-activation of the ReLU whose output ``inp`` is this
    layer's input. :func:`blocked_linear_backward_input` and
    :func:`~fastnet.kernels.relu_backward` in one pass (the same bits); ``pack`` as there."""
    # dout (B, H), weight (D, H), inp (B, D), dpre (B, D), pack (>= pack_size(B, H, D),)
    _product(dpre, dpre[0, :0], dout, weight.T, pack, 1.0, np.int64(GATE), inp)


@jit(reassoc=False)
def blocked_linear_backward_params(dweight, dbias, pack, dout, inp, scale):
    """Overwrite ``dweight`` with ``scale * inp.T @ dout`` and ``dbias`` with ``dout``
    summed over the batch, register-blocked; ``pack`` is scratch (at least
    ``pack_size(D, B, H)`` long). No ``1/B`` factor: the loss gradient carries it."""
    # dout (B, H), inp (B, D), dweight (D, H), dbias (H,), pack (>= pack_size(D, B, H),)
    _product(dweight, dbias[:0], inp.T, dout, pack, scale, np.int64(NONE), dweight)
    B, H = dout.shape
    for h in range(H):
        dbias[h] = 0
    for b in range(B):
        for h in range(H):
            dbias[h] += dout[b, h]
