"""Inverted dropout and batch standardization: the kernels against their NumPy
twins, and the properties the engine relies on.

- The dropout mask is the same bits in the kernel and in the reference, at 1
  and 2 threads, and depends on (key, b, h, H) alone.
- It drops about a fraction ``p`` of the units, different keys draw
  unrelated masks, and ``p == 0`` changes nothing.
- Kept units are ``act * (1/(1-p))`` exactly, in the array's dtype.
- ``dropout_backward`` is the gradient through dropout and the ReLU before it.
- ``standardize_batch`` is ``(x - mean) / std``.
"""
import numba
import numpy as np
import pytest
from numba import njit

from fastnet import kernels, reference
from numba_threads import with_threads

DTYPES = [np.float32, np.float64]
IMPLS = [pytest.param(kernels, id="kernels"), pytest.param(reference, id="reference")]
# (B, H): one unit, B=1, odd widths, a hidden layer's batch.
SHAPES = [(1, 1), (1, 13), (6, 13), (5, 7), (32, 128)]
PS = [0.1, 0.5, 0.9]


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-14, atol=1e-14)


def positive(rng, shape, dtype):
    """Activations with no zero, so that exactly the dropped units are 0 afterwards."""
    return (rng.random(shape) + 0.5).astype(dtype)


def dropped(act, key, p, impl=kernels):
    """The mask ``impl`` draws: True where a unit is dropped."""
    ones = np.ones(act.shape, act.dtype)
    impl.dropout_forward(ones, key, p)
    return ones == 0


def scale(dtype, p):
    """``1/(1-p)``, computed in float64 and rounded to ``dtype``, as the kernels do."""
    return dtype(1.0 / (1.0 - p))


# --- dropout_key -------------------------------------------------------------------


@pytest.mark.parametrize("seed, step, layer", [
    (0, 0, 0), (1, 2, 3), (20261128, 12345, 1), (-1, -5, 7), (2**63 - 1, 0, 2),
    (np.uint64(2**64 - 1), np.int32(4), np.uint8(1)),
])
def test_dropout_key_matches_reference(seed, step, layer):
    got = kernels.dropout_key(seed, step, layer)
    want = reference.dropout_key(seed, step, layer)
    assert isinstance(got, int) and isinstance(want, int)
    assert got == want, f"dropout_key{(seed, step, layer)}: kernel {got}, reference {want}"
    assert -2**63 <= got < 2**63


def test_dropout_key_differs_across_step_and_layer():
    keys = [kernels.dropout_key(seed, step, layer)
            for seed in (0, 1, 2) for step in range(200) for layer in range(4)]
    assert len(set(keys)) == len(keys), "two (seed, step, layer) share a key"
    # Neighbouring steps and layers differ in about half of their 64 bits.
    bits = np.array(keys, dtype=np.int64).view(np.uint64).reshape(3, 200, 4)
    for a, b in [(bits[:, 1:], bits[:, :-1]), (bits[:, :, 1:], bits[:, :, :-1]), (bits[1:], bits[:-1])]:
        flipped = np.unpackbits((a ^ b).view(np.uint8)).reshape(*a.shape, 64).sum(axis=-1)
        assert 30 < flipped.mean() < 34, f"neighbouring keys differ in {flipped.mean():.1f} of 64 bits on average"
        assert flipped.min() > 10


# --- dropout_forward ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("B,H", SHAPES)
def test_dropout_forward_matches_reference_bit_for_bit(rng, B, H, p, dtype):
    act = rng.standard_normal((B, H)).astype(dtype)
    key = kernels.dropout_key(3, B, H)
    got, want = act.copy(), act.copy()

    kernels.dropout_forward(got, key, p)
    reference.dropout_forward(want, key, p)

    np.testing.assert_array_equal(got, want, err_msg=f"dropout_forward B={B} H={H} p={p} {dtype.__name__}")
    np.testing.assert_array_equal(dropped(act, key, p), dropped(act, key, p, reference), err_msg="masks differ")


@pytest.mark.parametrize("p", [0.3, 0.5, 0.05])
def test_dropout_drops_a_fraction_p(p):
    act = np.ones((256, 1024), np.float32)
    mask = dropped(act, kernels.dropout_key(0, 1, 0), p)
    # 262144 units: the fraction's standard deviation is below 0.001.
    assert abs(mask.mean() - p) < 0.01, f"dropped {mask.mean():.4f} of the units, expected {p}"
    # No row or column is far off either (a row's 1024 units: sd <= 0.016).
    assert np.abs(mask.mean(axis=1) - p).max() < 0.08
    assert np.abs(mask.mean(axis=0) - p).max() < 0.15


def test_different_keys_draw_unrelated_masks():
    shape, p = (64, 257), 0.3
    keys = [kernels.dropout_key(5, step, layer) for step in range(4) for layer in range(3)]
    masks = [dropped(np.ones(shape), key, p) for key in keys]
    for i in range(len(masks)):
        for j in range(i):
            both = (masks[i] & masks[j]).mean()
            assert not np.array_equal(masks[i], masks[j]), f"keys {i} and {j} draw the same mask"
            assert abs(both - p * p) < 0.02, f"keys {i} and {j}: {both:.3f} dropped by both, expected {p * p}"
    # Neighbouring units of one mask are unrelated too.
    m = masks[0]
    assert abs((m[:, 1:] & m[:, :-1]).mean() - p * p) < 0.02
    assert abs((m[1:] & m[:-1]).mean() - p * p) < 0.02


def test_dropout_mask_depends_only_on_key_b_h_and_H(rng):
    key, p = kernels.dropout_key(1, 2, 0), 0.4
    whole = dropped(np.ones((40, 9)), key, p)
    for B in (1, 7, 39):                                  # a batch of B rows: the first B rows of the mask
        np.testing.assert_array_equal(dropped(np.ones((B, 9)), key, p), whole[:B], err_msg=f"B={B}")
    for dtype in DTYPES:                                  # the dtype does not change the mask
        np.testing.assert_array_equal(dropped(np.ones((40, 9), dtype), key, p), whole, err_msg=dtype.__name__)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0, 0.0])
def test_dropout_with_p_zero_leaves_act_untouched(rng, impl, dtype, p):
    act = rng.standard_normal((5, 7)).astype(dtype)
    act[0, :4] = [np.nan, np.inf, -0.0, 0.0]
    before = act.copy()
    impl.dropout_forward(act, kernels.dropout_key(0, 0, 0), p)
    assert act.tobytes() == before.tobytes(), "p == 0 changed the bits of act"


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.3, 0.5, 0.9])
def test_kept_units_are_scaled_exactly(rng, impl, dtype, p):
    act = positive(rng, (17, 31), dtype)
    out = act.copy()
    impl.dropout_forward(out, kernels.dropout_key(2, 3, 4), p)
    kept = out != 0
    assert 0 < kept.mean() < 1
    assert out.dtype == dtype
    np.testing.assert_array_equal(out[kept], act[kept] * scale(dtype, p), err_msg="kept units are act * (1/(1-p))")
    # That is act / (1-p) up to the rounding of 1/(1-p) to the dtype.
    np.testing.assert_allclose(out[kept], act[kept] / (1 - p), rtol=2 * np.finfo(dtype).eps)
    assert np.all(out[~kept] == 0) and not np.signbit(out[~kept]).any()


# --- dropout_backward --------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward_by_hand(impl, dtype):
    # p = 0.5, so 1/(1-p) = 2 exactly, in both dtypes.
    # out: [kept, ReLU on] [dropped] [ReLU off] [kept, on] [NaN]
    out = np.array([[3.0, 0.0, 0.0, 0.5, np.nan]], dtype)
    dout = np.array([[1.5, np.nan, 7.0, -0.25, 4.0]], dtype)
    dinp = np.full_like(out, np.nan)
    impl.dropout_backward(dinp, dout, out, 0.5)
    # dinp = 2 * dout where out > 0, exactly 0 elsewhere (even where dout is NaN).
    np.testing.assert_array_equal(dinp, np.array([[3.0, 0.0, 0.0, -0.5, 0.0]], dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("B,H", SHAPES)
def test_dropout_backward_matches_reference(rng, B, H, p, dtype):
    out = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    out[rng.random((B, H)) < p] = 0
    dout = rng.standard_normal((B, H)).astype(dtype)
    got, want = np.full((B, H), np.nan, dtype), np.full((B, H), np.nan, dtype)
    kernels.dropout_backward(got, dout, out, p)
    reference.dropout_backward(want, dout, out, p)
    np.testing.assert_array_equal(got, want, err_msg=f"dropout_backward B={B} H={H} p={p} {dtype.__name__}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward_is_the_gradient_through_relu_and_dropout(rng, impl, dtype):
    B, H, p = 16, 33, 0.4
    key = kernels.dropout_key(9, 8, 1)
    z = rng.standard_normal((B, H)).astype(dtype)
    a = np.empty_like(z)
    impl.relu_forward(a, z)
    impl.dropout_forward(a, key, p)
    dout = rng.standard_normal((B, H)).astype(dtype)
    dz = np.full_like(z, np.nan)
    impl.dropout_backward(dz, dout, a, p)

    # a = relu(z) * keep / (1-p): da/dz is 1/(1-p) where kept and z > 0, else 0.
    keep = ~dropped(z, key, p)
    on = keep & (z > 0)
    assert on.any() and (keep & ~on).any() and (~keep & (z > 0)).any()
    np.testing.assert_array_equal(dz[on], dout[on] * scale(dtype, p))
    assert np.all(dz[~on] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_backward_in_place_and_at_p_zero(rng, dtype):
    out = np.maximum(rng.standard_normal((6, 13)), 0).astype(dtype)
    dout = rng.standard_normal((6, 13)).astype(dtype)
    want = np.empty_like(dout)
    kernels.dropout_backward(want, dout, out, 0.25)
    inplace = dout.copy()
    kernels.dropout_backward(inplace, inplace, out, 0.25)
    np.testing.assert_array_equal(inplace, want, err_msg="dinp is dout itself")
    relu, ours = np.empty_like(dout), np.empty_like(dout)
    kernels.relu_backward(relu, dout, out)
    kernels.dropout_backward(ours, dout, out, 0.0)
    np.testing.assert_array_equal(ours, relu, err_msg="p == 0 is relu_backward")


# --- standardize_batch -------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D", [(1, 1), (1, 13), (6, 13), (5, 7), (32, 784)])
def test_standardize_batch_matches_reference(rng, B, D, dtype):
    x = (3 * rng.standard_normal((B, D)) + 1).astype(dtype)
    x[::3, : D // 2] = 0
    mean = rng.standard_normal(D).astype(dtype)
    inv_std = (rng.random(D) + 0.1).astype(dtype)
    saved = mean.copy(), inv_std.copy()
    got, want = x.copy(), x.copy()

    kernels.standardize_batch(got, mean, inv_std)
    reference.standardize_batch(want, mean, inv_std)

    np.testing.assert_allclose(got, want, **tol(dtype), err_msg=f"standardize_batch B={B} D={D} {dtype.__name__}")
    np.testing.assert_array_equal(mean, saved[0], err_msg="standardize_batch changed mean")
    np.testing.assert_array_equal(inv_std, saved[1], err_msg="standardize_batch changed inv_std")


@pytest.mark.parametrize("dtype", DTYPES)
def test_standardize_batch_is_x_minus_mean_over_std(rng, dtype):
    x = (rng.standard_normal((200, 11)) * np.arange(1, 12) + np.arange(-5, 6)).astype(dtype)
    mean, std = x.mean(axis=0), x.std(axis=0)
    want = (x.astype(np.float64) - mean) / std
    got = x.copy()
    kernels.standardize_batch(got, mean, (1 / std).astype(dtype))
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(got.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(got.std(axis=0), 1, rtol=1e-5)


# --- threads and a user's own @njit code ---------------------------------------------


def run_all(x, act, dout, mean, inv_std, key, p):
    x, act = x.copy(), act.copy()
    dinp = np.full_like(act, np.nan)
    kernels.standardize_batch(x, mean, inv_std)
    kernels.dropout_forward(act, key, p)
    kernels.dropout_backward(dinp, dout, act, p)
    return x, act, dinp


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,H", [(3, 7), (256, 1024)])
def test_same_bits_at_1_and_2_threads(rng, B, H, dtype):
    x = rng.standard_normal((B, H)).astype(dtype)
    act = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    mean, inv_std = rng.standard_normal(H).astype(dtype), (rng.random(H) + 0.5).astype(dtype)
    args = (x, act, dout, mean, inv_std, kernels.dropout_key(0, 1, 2), 0.3)
    one = with_threads(1, run_all, *args)
    two = with_threads(2, run_all, *args)
    for name, u, w in zip(["standardize_batch", "dropout_forward", "dropout_backward"], one, two):
        assert u.tobytes() == w.tobytes(), f"{name} differs between 1 and 2 threads"


@njit
def user_step(x, act, dinp, dout, mean, inv_std, seed, step, p):
    """A user's own @njit code: standardize, then drop out layer 0 with a key made in compiled code."""
    kernels.standardize_batch(x, mean, inv_std)
    key = kernels.dropout_key(seed, step, 0)
    kernels.dropout_forward(act, key, p)
    kernels.dropout_backward(dinp, dout, act, p)
    return key


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_callable_from_user_njit(rng, dtype):
    B, H = 9, 13
    x = rng.standard_normal((B, H)).astype(dtype)
    act = np.maximum(rng.standard_normal((B, H)), 0).astype(dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    mean, inv_std = rng.standard_normal(H).astype(dtype), (rng.random(H) + 0.5).astype(dtype)
    got = [x.copy(), act.copy(), np.full((B, H), np.nan, dtype)]
    key = user_step(got[0], got[1], got[2], dout, mean, inv_std, 42, 7, 0.5)

    assert key == reference.dropout_key(42, 7, 0)
    want = [x.copy(), act.copy(), np.empty((B, H), dtype)]
    reference.standardize_batch(want[0], mean, inv_std)
    reference.dropout_forward(want[1], key, 0.5)
    reference.dropout_backward(want[2], dout, want[1], 0.5)
    np.testing.assert_allclose(got[0], want[0], **tol(dtype), err_msg="standardize_batch from @njit")
    np.testing.assert_array_equal(got[1], want[1], err_msg="dropout_forward from @njit")
    np.testing.assert_array_equal(got[2], want[2], err_msg="dropout_backward from @njit")
