"""Which first-layer kernels float features should take: the dense pair
(``linear_forward``, ``linear_backward_params``) or the sparse pair
(``sparse_linear_forward``, ``sparse_linear_backward_params``), against the
share of zeros in the features.

float32 features at batch 128 into 128 hidden units, for an MNIST-wide input
(784) and a narrow table (37 columns), with 0%, 50%, 80% and 95% of the values
zero (at random places; the others standard normal). One group per pass,
width and share, ``first-layer-<pass>-<D>x128-zeros<percent>``, with rows
``dense`` and ``sparse``; the measured choice is written up in
docs/performance.md ("Float features: the first layer's kernels").
"""
import numpy as np
import pytest

from fastnet import kernels
from fastnet.engine import SCRATCH_PARTS

B, H = 128, 128
WIDTHS = (784, 37)
ZEROS = (0.0, 0.5, 0.8, 0.95)


def _inputs(D, zeros):
    rng = np.random.default_rng(20261201)
    x = rng.standard_normal((B, D)).astype(np.float32)
    x[rng.random((B, D)) < zeros] = 0
    weight = (rng.standard_normal((D, H)) / np.sqrt(D)).astype(np.float32)
    bias = np.zeros(H, np.float32)
    dout = (rng.standard_normal((B, H)) / B).astype(np.float32)
    return x, weight, bias, dout


def _calls(which, pass_, D, zeros):
    x, weight, bias, dout = _inputs(D, zeros)
    out, dweight, dbias = np.zeros((B, H), np.float32), np.zeros((D, H), np.float32), np.zeros(H, np.float32)
    if pass_ == "forward":
        if which == "dense":
            return kernels.linear_forward, (out, x, weight, bias)
        return kernels.sparse_linear_forward, (out, np.zeros((SCRATCH_PARTS, D), np.int32), x, weight, bias, 1.0)
    if which == "dense":
        return kernels.linear_backward_params, (dweight, dbias, dout, x)
    return kernels.sparse_linear_backward_params, (dweight, dbias, np.zeros((SCRATCH_PARTS, B), np.int32), dout,
                                                   x, 1.0)


@pytest.mark.parametrize("which", ["dense", "sparse"])
@pytest.mark.parametrize("zeros", ZEROS)
@pytest.mark.parametrize("D", WIDTHS)
@pytest.mark.parametrize("pass_", ["forward", "backward_params"])
def test_first_layer_kernels_against_the_share_of_zeros(benchmark, pass_, D, zeros, which):
    kernel, args = _calls(which, pass_, D, zeros)
    kernel(*args)  # compile (or load) outside the timed calls
    benchmark.group = f"first-layer-{pass_}-{D}x{H}-zeros{round(100 * zeros)}"
    benchmark(kernel, *args)


@pytest.mark.parametrize("pass_", ["forward", "backward_params"])
def test_the_two_kernels_agree(pass_):
    """The comparison is of equals: both compute the same outputs."""
    dense_kernel, dense_args = _calls("dense", pass_, 37, 0.5)
    sparse_kernel, sparse_args = _calls("sparse", pass_, 37, 0.5)
    dense_kernel(*dense_args)
    sparse_kernel(*sparse_args)
    outputs = (0,) if pass_ == "forward" else (0, 1)
    for i in outputs:
        np.testing.assert_allclose(dense_args[i], sparse_args[i], rtol=1e-5, atol=1e-6)
