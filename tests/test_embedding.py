"""fastnet's kernels inside a user's own Numba code (docs/kernels.md).

- Every name in ``fastnet.kernels.__all__``, called from a user's ``@njit``
  function, matches its twin in :mod:`fastnet.reference`. The arguments are
  built from the kernel's spec in :data:`fastnet.checked.SPECS`, so a kernel
  added to ``__all__`` is covered as soon as it has a spec (a test fails
  until it does).
- Every kernel called from inside a user's ``prange`` loop, on per-chunk
  slices, matches the reference; so does the way the docs recommend for
  the kernels that sum over the batch (a partial buffer per chunk, reduced
  in a fixed order).
- A parallel kernel launched from inside a ``prange`` body runs on the
  calling thread (Numba does not nest parallel regions); the docs rely on it.
- ``examples/train_mnist_njit.py`` runs and prints a test accuracy.
"""
import ctypes
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import njit, prange

from fastnet import checked, kernels, reference
from fastnet._jit import PARALLEL

REPO = Path(__file__).resolve().parents[1]
DTYPES = [np.float32, np.float64]
SIZES = dict(B=7, D=13, H=5, K=4, N=20, P=31, S=3)
SCALARS = dict(lr=0.1, weight_decay=0.01, momentum=0.9, nesterov=True, beta1=0.9, beta2=0.999,
               eps=1e-8, step=3, start=5, scale=1 / 255, key=-5647682728569471504, p=0.3,
               width=13, shift=1, flip=True)  # augment_batch's image: one row of D = 13


def tol(dtype):
    return dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


def make_args(name, dtype, rng):
    """Valid arguments for kernel ``name`` in ``dtype``, from its spec: inputs
    random (``inp`` ~70% zeros, as MNIST), outputs NaN, integer scratch zeros,
    float scratch random."""
    args = {}
    for arg, spec in checked.SPECS[name]["args"].items():
        if isinstance(spec, checked.Scalar):
            args[arg] = SCALARS[arg]
            continue
        shape = []
        for dim in spec.dims:
            if dim.isalpha():
                shape.append(SIZES[dim])
            elif dim.startswith("S"):
                shape.append(SIZES["S"])
            elif dim.startswith("0|"):                 # "0|B": the full size
                shape.append(SIZES[dim[2:]])
            elif "+" in dim and ">=" not in dim:         # "D+1"
                shape.append(sum(SIZES[t] if t.isalpha() else int(t) for t in dim.split("+")))
            elif "(" in dim:                            # "P>=pack_size(B,D,H)": a little more than needed
                shape.append(checked._total(dim.split(">=")[1], SIZES) + 2)
            else:                                   # ">=B", ">=D", ">=start+B": a little more than needed
                shape.append(SIZES["N"] if "start" in dim else SIZES[dim[2:]] + 2)
        if spec.kind == checked.NUMBER:
            args[arg] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.kind == checked.INT and spec.role == "scratch":
            args[arg] = np.zeros(shape, np.int32)
        elif spec.kind == checked.INT and spec.written:
            args[arg] = np.full(shape, -1, np.int64)
        elif arg == "order":
            args[arg] = rng.permutation(shape[0])
        elif spec.kind == checked.INT:
            args[arg] = rng.integers(0, SIZES["K"], shape)
        elif spec.role == "out":
            args[arg] = np.full(shape, np.nan, dtype)
        elif arg == "inp":
            args[arg] = (rng.standard_normal(shape) * (rng.random(shape) < 0.3)).astype(dtype)
        elif arg == "v":                            # Adam's second moment is never negative
            args[arg] = rng.random(shape).astype(dtype)
        else:
            args[arg] = rng.standard_normal(shape).astype(dtype)
    return args


def written(name):
    """The arguments a kernel writes as its results (not its scratch)."""
    return [arg for arg, spec in checked.SPECS[name]["args"].items()
            if isinstance(spec, checked.Array) and spec.role in ("out", "inout")]


def copies(args):
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in args.items()}


@njit
def user_call(kernel, args):
    """A user's own ``@njit`` function, calling a fastnet kernel in nopython mode."""
    kernel(*args)


# --- every public kernel from a user's @njit function ----------------------------


def test_every_public_kernel_has_a_spec_and_a_twin():
    assert set(kernels.__all__) <= set(checked.SPECS), "kernels without a spec in fastnet.checked.SPECS"
    for name in kernels.__all__:
        assert hasattr(reference, name), f"{name} has no twin in fastnet.reference"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", kernels.__all__)
def test_kernel_from_user_njit_matches_reference(rng, name, dtype):
    args = make_args(name, dtype, rng)
    want = copies(args)
    user_call(getattr(kernels, name), tuple(args.values()))
    getattr(reference, name)(*want.values())
    for arg in written(name):
        np.testing.assert_allclose(args[arg], want[arg], **tol(dtype),
                                   err_msg=f"{name}: {arg} from a user @njit function vs reference")


# --- kernels inside the user's own prange loop ------------------------------------
#
# Each chunk c of the batch (or of a flat parameter buffer) is handed to the
# kernel as a C-contiguous slice: rows x[a:b], or a whole partial buffer
# part[c]. Inside a prange body each kernel runs on the calling thread.


@njit(parallel=True)
def user_forward_in_chunks(z, zs, a, probs, losses, index, x, weight, bias, labels, chunks):
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.linear_forward(z[lo:hi], x[lo:hi], weight, bias)
        kernels.sparse_linear_forward(zs[lo:hi], index[c], x[lo:hi], weight, bias, 1.0)
        kernels.relu_forward(a[lo:hi], z[lo:hi])
        kernels.softmax_cross_entropy_forward(probs[lo:hi], losses[lo:hi], z[lo:hi], labels[lo:hi])


@njit(parallel=True)
def user_backward_rows_in_chunks(dlogits, drelu, dinp, probs, labels, dout, out, weight, chunks):
    B = dout.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        # Divides by the chunk's rows, hi - lo: the mean over the chunk, not over the batch.
        kernels.softmax_cross_entropy_backward(dlogits[lo:hi], probs[lo:hi], labels[lo:hi])
        kernels.relu_backward(drelu[lo:hi], dout[lo:hi], out[lo:hi])
        kernels.linear_backward_input(dinp[lo:hi], dout[lo:hi], weight)


@njit(parallel=True)
def user_backward_params_in_chunks(dweight, dbias, dinp, part_dw, part_db, part_dw2, part_db2,
                                   index, dout, x, weight, chunks):
    """Sums over the batch: each chunk into its own partial buffer, then a
    serial reduction in chunk order (the result does not depend on threads)."""
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.linear_backward_params(part_dw[c], part_db[c], dout[lo:hi], x[lo:hi])
        kernels.sparse_linear_backward_params(part_dw2[c], part_db2[c], index[c], dout[lo:hi], x[lo:hi], 1.0)
        kernels.linear_backward(dinp[lo:hi], part_dw2[chunks + c], part_db2[chunks + c], dout[lo:hi],
                                x[lo:hi], weight)
    for k in range(3):
        for c in range(chunks):
            dw = part_dw[c] if k == 0 else part_dw2[(k - 1) * chunks + c]
            db = part_db[c] if k == 0 else part_db2[(k - 1) * chunks + c]
            if c == 0:
                dweight[k] = dw
                dbias[k] = db
            else:
                dweight[k] += dw
                dbias[k] += db


@njit(parallel=True)
def user_updates_in_chunks(p1, p2, velocity, p3, m, v, grad, chunks):
    P = grad.shape[0]
    for c in prange(chunks):
        lo, hi = c * P // chunks, (c + 1) * P // chunks
        kernels.sgd_update(p1[lo:hi], grad[lo:hi], 0.1, 0.01)
        kernels.momentum_update(p2[lo:hi], velocity[lo:hi], grad[lo:hi], 0.1, 0.9, 0.01, True)
        kernels.adam_update(p3[lo:hi], m[lo:hi], v[lo:hi], grad[lo:hi], 0.1, 0.9, 0.999, 1e-8, 0.01, 3)


@njit(parallel=True)
def user_gather_in_chunks(x, y, images, labels, order, start, chunks):
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.gather_batch(x[lo:hi], y[lo:hi], images, labels, order, start + lo, 1 / 255)


@njit(parallel=True)
def user_augment_in_chunks(x, y, images, labels, order, start, width, shift, key, chunks):
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.augment_batch(x[lo:hi], y[lo:hi], images, labels, order, start + lo, width, shift, True, key)


@njit(parallel=True)
def user_standardize_and_dropout_in_chunks(x, act, dinp, dout, mean, inv_std, keys, p, chunks):
    """Each chunk standardizes its rows, then drops out its rows with a key of its own."""
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.standardize_batch(x[lo:hi], mean, inv_std)
        kernels.dropout_forward(act[lo:hi], keys[c], p)
        kernels.dropout_backward(dinp[lo:hi], dout[lo:hi], act[lo:hi], p)


@njit(parallel=True)
def user_classifier_in_chunks(probs, losses, dinp, part_dw, part_db, scratch, x, weight, bias, labels, chunks):
    """Each chunk is its own batch, with its own scratch and gradient buffers."""
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.classifier_forward(probs[lo:hi], losses[lo:hi], scratch[c], x[lo:hi], weight, bias,
                                   labels[lo:hi], 1.0)
        kernels.classifier_backward(dinp[lo:hi], part_dw[c], part_db[c], scratch[c], probs[lo:hi], x[lo:hi],
                                    weight, labels[lo:hi], 1.0)


@njit(parallel=True)
def user_blocked_in_chunks(out, act, dinp, dpre, dweight, dbias, part_dw, part_db, packs, x, dout, weight, bias,
                           scale, chunks):
    """The register-blocked kernels on each chunk's rows, each chunk with a ``pack``
    of its own; the weight gradient summed over the batch through partial
    buffers, reduced in chunk order."""
    B = x.shape[0]
    for c in prange(chunks):
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        kernels.blocked_linear_forward(out[lo:hi], packs[c], x[lo:hi], weight, bias, scale)
        kernels.blocked_linear_relu_forward(act[lo:hi], packs[c], x[lo:hi], weight, bias, scale)
        kernels.blocked_linear_backward_input(dinp[lo:hi], packs[c], dout[lo:hi], weight)
        kernels.blocked_linear_backward_input_relu(dpre[lo:hi], packs[c], dout[lo:hi], weight, x[lo:hi])
        kernels.blocked_linear_backward_params(part_dw[c], part_db[c], packs[c], dout[lo:hi], x[lo:hi], scale)
    for c in range(chunks):
        if c == 0:
            dweight[:] = part_dw[c]
            dbias[:] = part_db[c]
        else:
            dweight += part_dw[c]
            dbias += part_db[c]


#: The kernels each prange test above calls; every public kernel must be in one.
PRANGE_COVERED = {
    "linear_forward", "sparse_linear_forward", "relu_forward", "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward", "relu_backward", "linear_backward_input",
    "linear_backward_params", "sparse_linear_backward_params", "linear_backward",
    "sgd_update", "momentum_update", "adam_update", "gather_batch", "classifier_forward", "classifier_backward",
    "dropout_forward", "dropout_backward", "standardize_batch", "augment_batch",
    "blocked_linear_forward", "blocked_linear_backward_input", "blocked_linear_backward_params",
    "blocked_linear_relu_forward", "blocked_linear_backward_input_relu",
}
CHUNKS = [1, 2, 3, 8]   # 8 > the 2 threads here: several chunks per thread


def test_every_public_kernel_is_tried_inside_prange():
    assert set(kernels.__all__) <= PRANGE_COVERED, "add the new kernels to a prange test"


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_kernels_inside_prange(rng, dtype, chunks):
    B, D, H = 16, 13, 5
    x = (rng.standard_normal((B, D)) * (rng.random((B, D)) < 0.3)).astype(dtype)
    weight = rng.standard_normal((D, H)).astype(dtype)
    bias = rng.standard_normal(H).astype(dtype)
    labels = rng.integers(0, H, B)
    got = [np.full((B, H), np.nan, dtype) for _ in range(4)] + [np.full(B, np.nan, dtype)]
    index = np.zeros((chunks, B, D), np.int32)          # scratch: one per chunk
    user_forward_in_chunks(*got[:4], got[4], index, x, weight, bias, labels, chunks)

    z, a, probs, losses = np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty(B, dtype)
    reference.linear_forward(z, x, weight, bias)
    reference.relu_forward(a, z)
    reference.softmax_cross_entropy_forward(probs, losses, z, labels)
    for arg, g, w in zip(["linear", "sparse_linear", "relu", "probs", "losses"], got, [z, z, a, probs, losses]):
        np.testing.assert_allclose(g, w, **tol(dtype), err_msg=f"{arg}_forward inside prange, {chunks} chunks")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_backward_kernels_inside_prange(rng, dtype, chunks):
    B, D, H = 16, 13, 5
    probs = rng.random((B, H)).astype(dtype)
    labels = rng.integers(0, H, B)
    dout = rng.standard_normal((B, H)).astype(dtype)
    out = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    weight = rng.standard_normal((D, H)).astype(dtype)
    dlogits, drelu = np.full((B, H), np.nan, dtype), np.full((B, H), np.nan, dtype)
    dinp = np.full((B, D), np.nan, dtype)
    user_backward_rows_in_chunks(dlogits, drelu, dinp, probs, labels, dout, out, weight, chunks)

    for c in range(chunks):                             # softmax backward: the mean over each chunk
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        want = np.empty((hi - lo, H), dtype)
        reference.softmax_cross_entropy_backward(want, probs[lo:hi], labels[lo:hi])
        np.testing.assert_allclose(dlogits[lo:hi], want, **tol(dtype), err_msg=f"softmax backward, chunk {c}")
    want_relu, want_dinp = np.empty((B, H), dtype), np.empty((B, D), dtype)
    reference.relu_backward(want_relu, dout, out)
    reference.linear_backward_input(want_dinp, dout, weight)
    np.testing.assert_allclose(drelu, want_relu, **tol(dtype), err_msg="relu_backward inside prange")
    np.testing.assert_allclose(dinp, want_dinp, **tol(dtype), err_msg="linear_backward_input inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_sum_kernels_inside_prange_with_partial_buffers(rng, dtype, chunks):
    B, D, H = 16, 13, 5
    x = (rng.standard_normal((B, D)) * (rng.random((B, D)) < 0.3)).astype(dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    weight = rng.standard_normal((D, H)).astype(dtype)
    dweight, dbias = np.full((3, D, H), np.nan, dtype), np.full((3, H), np.nan, dtype)
    dinp = np.full((B, D), np.nan, dtype)
    part_dw, part_db = np.full((chunks, D, H), np.nan, dtype), np.full((chunks, H), np.nan, dtype)
    part_dw2, part_db2 = np.full((2 * chunks, D, H), np.nan, dtype), np.full((2 * chunks, H), np.nan, dtype)
    index = np.zeros((chunks, D, B), np.int32)
    user_backward_params_in_chunks(dweight, dbias, dinp, part_dw, part_db, part_dw2, part_db2,
                                   index, dout, x, weight, chunks)

    want_dw, want_db, want_dinp = np.empty((D, H), dtype), np.empty(H, dtype), np.empty((B, D), dtype)
    reference.linear_backward(want_dinp, want_dw, want_db, dout, x, weight)
    for k, name in enumerate(["linear_backward_params", "sparse_linear_backward_params", "linear_backward"]):
        np.testing.assert_allclose(dweight[k], want_dw, **tol(dtype), err_msg=f"{name} dweight, {chunks} chunks")
        np.testing.assert_allclose(dbias[k], want_db, **tol(dtype), err_msg=f"{name} dbias, {chunks} chunks")
    np.testing.assert_allclose(dinp, want_dinp, **tol(dtype), err_msg="linear_backward dinp inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_update_rules_inside_prange(rng, dtype, chunks):
    P = 101
    grad = rng.standard_normal(P).astype(dtype)
    params = [rng.standard_normal(P).astype(dtype) for _ in range(3)]
    velocity, m, v = rng.standard_normal(P).astype(dtype), rng.standard_normal(P).astype(dtype), rng.random(P).astype(dtype)
    want = copies(dict(p1=params[0], p2=params[1], p3=params[2], velocity=velocity, m=m, v=v))
    user_updates_in_chunks(params[0], params[1], velocity, params[2], m, v, grad, chunks)
    reference.sgd_update(want["p1"], grad, 0.1, 0.01)
    reference.momentum_update(want["p2"], want["velocity"], grad, 0.1, 0.9, 0.01, True)
    reference.adam_update(want["p3"], want["m"], want["v"], grad, 0.1, 0.9, 0.999, 1e-8, 0.01, 3)
    got = dict(p1=params[0], p2=params[1], p3=params[2], velocity=velocity, m=m, v=v)
    for arg in got:
        np.testing.assert_allclose(got[arg], want[arg], **tol(dtype), err_msg=f"update {arg} inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_inside_prange(rng, dtype, chunks):
    N, B, D = 50, 16, 13
    images = rng.integers(0, 256, (N, D), dtype=np.uint8)
    labels = rng.integers(0, 10, N).astype(np.uint8)
    order = rng.permutation(N)
    x, y = np.full((B, D), np.nan, dtype), np.full(B, -1, np.int64)
    want_x, want_y = np.empty((B, D), dtype), np.empty(B, np.int64)
    user_gather_in_chunks(x, y, images, labels, order, 7, chunks)
    reference.gather_batch(want_x, want_y, images, labels, order, 7, 1 / 255)
    np.testing.assert_allclose(x, want_x, **tol(dtype), err_msg="gather_batch x inside prange")
    np.testing.assert_array_equal(y, want_y, err_msg="gather_batch y inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
def test_augment_batch_inside_prange(rng, chunks):
    """A chunk passed ``start + lo`` draws the moves the whole batch's call draws for its rows."""
    N, B, R, W = 50, 16, 4, 6
    images = rng.integers(0, 256, (N, R * W), dtype=np.uint8)
    labels = rng.integers(0, 10, N).astype(np.int32)
    order = rng.permutation(N)
    x, y = np.full((B, R * W), 77, np.uint8), np.full(B, -1, np.int32)
    want_x, want_y = np.empty((B, R * W), np.uint8), np.empty(B, np.int32)
    user_augment_in_chunks(x, y, images, labels, order, 7, W, 2, SCALARS["key"], chunks)
    reference.augment_batch(want_x, want_y, images, labels, order, 7, W, 2, True, SCALARS["key"])
    np.testing.assert_array_equal(x, want_x, err_msg="augment_batch x inside prange")
    np.testing.assert_array_equal(y, want_y, err_msg="augment_batch y inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_standardize_and_dropout_inside_prange(rng, dtype, chunks):
    B, D, H = 16, 13, 5
    x = rng.standard_normal((B, D)).astype(dtype)
    mean, inv_std = rng.standard_normal(D).astype(dtype), rng.random(D).astype(dtype) + 1
    act = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    keys = np.array([kernels.dropout_key(7, 1, c) for c in range(chunks)])
    want_x, want_act, want_dinp = x.copy(), act.copy(), np.empty((B, H), dtype)
    dinp = np.full((B, H), np.nan, dtype)
    user_standardize_and_dropout_in_chunks(x, act, dinp, dout, mean, inv_std, keys, 0.3, chunks)

    reference.standardize_batch(want_x, mean, inv_std)
    for c in range(chunks):                             # a slice's mask numbers its own rows from 0
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        reference.dropout_forward(want_act[lo:hi], int(keys[c]), 0.3)
    reference.dropout_backward(want_dinp, dout, want_act, 0.3)
    np.testing.assert_allclose(x, want_x, **tol(dtype), err_msg="standardize_batch inside prange")
    np.testing.assert_array_equal(act, want_act, err_msg="dropout_forward inside prange")
    np.testing.assert_array_equal(dinp, want_dinp, err_msg="dropout_backward inside prange")


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_kernels_inside_prange(rng, dtype, chunks):
    # H past two float32 panels and D past a float64 one, B not a multiple of the 6-row groups.
    B, D, H = 33, 21, 37
    x = (rng.standard_normal((B, D)) * (rng.random((B, D)) < 0.5)).astype(dtype)   # ReLU outputs, half zero
    dout = rng.standard_normal((B, H)).astype(dtype)
    weight, bias = rng.standard_normal((D, H)).astype(dtype), rng.standard_normal(H).astype(dtype)
    out, dinp = np.full((B, H), np.nan, dtype), np.full((B, D), np.nan, dtype)
    act, dpre = np.full((B, H), np.nan, dtype), np.full((B, D), np.nan, dtype)
    dweight, dbias = np.full((D, H), np.nan, dtype), np.full(H, np.nan, dtype)
    part_dw, part_db = np.full((chunks, D, H), np.nan, dtype), np.full((chunks, H), np.nan, dtype)
    rows = -(-B // chunks)                              # a chunk's most rows
    P = max(kernels.pack_size(rows, D, H), kernels.pack_size(rows, H, D), kernels.pack_size(D, rows, H))
    packs = np.full((chunks, P), np.nan, dtype)         # scratch: one per chunk
    user_blocked_in_chunks(out, act, dinp, dpre, dweight, dbias, part_dw, part_db, packs, x, dout, weight, bias, 1.0,
                           chunks)

    want_out, want_dinp = np.empty((B, H), dtype), np.empty((B, D), dtype)
    want_dw, want_db = np.empty((D, H), dtype), np.empty(H, dtype)
    reference.blocked_linear_forward(want_out, None, x, weight, bias, 1.0)
    reference.blocked_linear_backward_input(want_dinp, None, dout, weight)
    reference.blocked_linear_backward_params(want_dw, want_db, None, dout, x, 1.0)
    want_act, want_dpre = np.empty((B, H), dtype), np.empty((B, D), dtype)
    reference.blocked_linear_relu_forward(want_act, None, x, weight, bias, 1.0)
    reference.blocked_linear_backward_input_relu(want_dpre, None, dout, weight, x)
    for name, got, want in [("blocked_linear_forward", out, want_out), ("blocked_linear_backward_input", dinp, want_dinp),
                            ("blocked_linear_relu_forward", act, want_act),
                            ("blocked_linear_backward_input_relu", dpre, want_dpre),
                            ("blocked_linear_backward_params dweight", dweight, want_dw),
                            ("blocked_linear_backward_params dbias", dbias, want_db)]:
        np.testing.assert_allclose(got, want, **tol(dtype), err_msg=f"{name} inside prange, {chunks} chunks")


# --- what a nested parallel launch does ------------------------------------------

try:
    _gettid = ctypes.CDLL(None).gettid
    _gettid.restype, _gettid.argtypes = ctypes.c_int, ()
except AttributeError:      # not glibc >= 2.30
    _gettid = None


if _gettid is not None:
    @njit(**dict(PARALLEL, cache=False))    # ctypes functions cannot be cached
    def _inner(tids, row):
        # Compiled with fastnet's options for parallel kernels.
        for i in prange(tids.shape[1]):
            tids[row, i] = _gettid()

    @njit(parallel=True)
    def _outer(tids, outer_tids):
        for c in prange(tids.shape[0]):
            outer_tids[c] = _gettid()
            _inner(tids, c)

    @njit
    def _serial_outer(tids, outer_tids):
        for c in range(tids.shape[0]):
            outer_tids[c] = _gettid()
            _inner(tids, c)


@pytest.mark.skipif(_gettid is None, reason="needs glibc's gettid")
@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
def test_parallel_kernel_inside_prange_runs_on_the_calling_thread():
    tids, outer_tids = np.full((8, 256), -1, np.int64), np.full(8, -1, np.int64)
    _outer(tids, outer_tids)
    for c in range(8):
        assert set(tids[c]) == {outer_tids[c]}, (
            f"{numba.threading_layer()}: a parallel kernel inside prange ran on threads "
            f"{sorted(set(tids[c]))}, not only on its caller {outer_tids[c]}: update docs/kernels.md")
    # Called outside any prange, the same kernel does spread over the threads.
    tids, outer_tids = np.full((4, 4096), -1, np.int64), np.full(4, -1, np.int64)
    _serial_outer(tids, outer_tids)
    assert len(set(tids.ravel())) >= 2, "a parallel kernel outside prange ran on one thread only"


# --- the example -------------------------------------------------------------------


def test_example_trains_and_prints_test_accuracy(mnist_dir):
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_mnist_njit.py"), "--data", str(mnist_dir),
         "--epochs", "1", "--limit", "6000"],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    found = re.search(r"test accuracy: (\d+\.\d+)%", run.stdout)
    assert found, run.stdout
    assert 50.0 < float(found.group(1)) <= 100.0, run.stdout


@pytest.mark.parametrize("chunks", CHUNKS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_classifier_kernels_inside_prange(rng, dtype, chunks):
    B, D, K = 16, 13, 4
    x = np.maximum(rng.standard_normal((B, D)), 0).astype(dtype)
    weight = rng.standard_normal((D, K)).astype(dtype)
    bias = rng.standard_normal(K).astype(dtype)
    labels = rng.integers(0, K, B)
    probs, losses = np.full((B, K), np.nan, dtype), np.full(B, np.nan, dtype)
    dinp = np.full((B, D), np.nan, dtype)
    part_dw, part_db = np.full((chunks, D, K), np.nan, dtype), np.full((chunks, K), np.nan, dtype)
    scratch = np.zeros((chunks, 3, K, D + 1), dtype)
    user_classifier_in_chunks(probs, losses, dinp, part_dw, part_db, scratch, x, weight, bias, labels, chunks)

    for c in range(chunks):                             # each chunk a batch of its own
        lo, hi = c * B // chunks, (c + 1) * B // chunks
        want_p, want_l = np.empty((hi - lo, K), dtype), np.empty(hi - lo, dtype)
        want_dinp, want_dw, want_db = np.empty((hi - lo, D), dtype), np.empty((D, K), dtype), np.empty(K, dtype)
        reference.classifier_forward(want_p, want_l, None, x[lo:hi], weight, bias, labels[lo:hi], 1.0)
        reference.classifier_backward(want_dinp, want_dw, want_db, None, want_p, x[lo:hi], weight,
                                      labels[lo:hi], 1.0)
        for name, got, want in [("probs", probs[lo:hi], want_p), ("losses", losses[lo:hi], want_l),
                                ("dinp", dinp[lo:hi], want_dinp), ("dweight", part_dw[c], want_dw),
                                ("dbias", part_db[c], want_db)]:
            np.testing.assert_allclose(got, want, **tol(dtype), err_msg=f"classifier {name}, chunk {c}")
