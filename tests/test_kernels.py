"""The Numba kernels against their NumPy twins in :mod:`fastnet.reference`.

Every name in ``fastnet.kernels.__all__`` is compared with the reference
function of the same name, over shapes that include B=1, odd widths, an
MNIST-sized layer, inputs with all-zero rows and with ~80% zeros (the
sparse kernels skip zero inputs), in float32 and float64; for the
register-blocked kernels, shapes past the edges of their blocks. Output
buffers (and scratch) are prefilled with NaN, so an output the kernel
forgets to write (or adds to instead of overwriting) shows up.

Also here: special values (huge and NaN logits), several update steps in a
row, training on a small separable problem, kernels called from a user's
own ``@njit`` function, and results that do not depend on the thread count.
"""
import numba
import numpy as np
import pytest

from fastnet import kernels, reference

DTYPES = [np.float32, np.float64]
IMPLS = [pytest.param(kernels, id="kernels"), pytest.param(reference, id="reference")]

# (B, D, H): B=1, odd widths, a narrow output, an MNIST-sized first layer.
LINEAR_SHAPES = [(1, 13, 7), (6, 13, 7), (5, 13, 3), (1, 784, 128), (32, 784, 128)]
# dense: no exact zero; sparse: ~80% zeros like MNIST pixels; zero_rows: rows 0, 3, 6.. all zero.
INPUT_KINDS = ["dense", "sparse", "zero_rows"]


def tol(dtype, scale=1.0):
    """rtol/atol for comparing two orders of summation in ``dtype``.

    ``scale`` is the largest sum of absolute terms behind one output: a sum
    that cancels to near zero is only accurate to a few ulps of that.
    """
    if dtype == np.float32:
        return dict(rtol=2e-5, atol=2e-6 * scale)
    return dict(rtol=1e-12, atol=1e-14 * scale)


def make_input(rng, kind, B, D, dtype):
    if kind == "dense":
        x = rng.standard_normal((B, D))
    elif kind == "sparse":
        x = rng.uniform(0.0, 1.0, (B, D)) * (rng.random((B, D)) < 0.2)
    elif kind == "zero_rows":
        x = rng.standard_normal((B, D))
        x[::3] = 0.0
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(x, dtype=dtype)


def make_layer(rng, D, H, dtype):
    weight = rng.normal(0.0, 1.0 / np.sqrt(D), (D, H)).astype(dtype)
    bias = rng.normal(0.0, 0.1, H).astype(dtype)
    return weight, bias


def garbage(shape, dtype):
    return np.full(shape, np.nan, dtype=dtype)


def abs_scale(a, b):
    """Largest entry of |a| @ |b|, in float64: the size of the terms behind a matmul."""
    return float(np.max(np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)), initial=1.0))


# --- linear layer ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("B,D,H", LINEAR_SHAPES)
def test_linear_forward_matches_reference(rng, B, D, H, kind, dtype):
    inp = make_input(rng, kind, B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    saved = inp.copy(), weight.copy(), bias.copy()
    got = garbage((B, H), dtype)
    want = garbage((B, H), dtype)

    kernels.linear_forward(got, inp, weight, bias)
    reference.linear_forward(want, inp, weight, bias)

    np.testing.assert_allclose(got, want, **tol(dtype, abs_scale(inp, weight)),
                               err_msg=f"linear_forward B={B} D={D} H={H} {kind} {dtype.__name__}")
    for before, after in zip(saved, (inp, weight, bias)):
        np.testing.assert_array_equal(after, before, err_msg="linear_forward changed an input")
    if kind == "zero_rows":
        # An all-zero input row gives exactly the bias.
        np.testing.assert_array_equal(got[::3], np.broadcast_to(bias, got[::3].shape),
                                      err_msg="zero input rows must give the bias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("B,D,H", LINEAR_SHAPES)
def test_linear_backward_matches_reference(rng, B, D, H, kind, dtype):
    inp = make_input(rng, kind, B, D, dtype)
    weight, _ = make_layer(rng, D, H, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    saved = inp.copy(), weight.copy(), dout.copy()
    got = [garbage((B, D), dtype), garbage((D, H), dtype), garbage(H, dtype)]
    want = [garbage((B, D), dtype), garbage((D, H), dtype), garbage(H, dtype)]

    kernels.linear_backward(*got, dout, inp, weight)
    reference.linear_backward(*want, dout, inp, weight)

    scales = [abs_scale(dout, weight.T), abs_scale(inp.T, dout), abs_scale(np.ones((1, B)), dout)]
    for name, g, w, s in zip(["dinp", "dweight", "dbias"], got, want, scales):
        np.testing.assert_allclose(g, w, **tol(dtype, s),
                                   err_msg=f"linear_backward {name} B={B} D={D} H={H} {kind} {dtype.__name__}")
    for before, after in zip(saved, (inp, weight, dout)):
        np.testing.assert_array_equal(after, before, err_msg="linear_backward changed an input")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("B,D,H", LINEAR_SHAPES)
def test_linear_backward_params_matches_reference(rng, B, D, H, kind, dtype):
    inp = make_input(rng, kind, B, D, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    got = [garbage((D, H), dtype), garbage(H, dtype)]
    want = [garbage((D, H), dtype), garbage(H, dtype)]

    kernels.linear_backward_params(*got, dout, inp)
    reference.linear_backward_params(*want, dout, inp)

    scales = [abs_scale(inp.T, dout), abs_scale(np.ones((1, B)), dout)]
    for name, g, w, s in zip(["dweight", "dbias"], got, want, scales):
        np.testing.assert_allclose(g, w, **tol(dtype, s),
                                   err_msg=f"linear_backward_params {name} B={B} D={D} H={H} {kind}")
    if kind == "sparse" or kind == "zero_rows":
        # An input that is zero for the whole batch gives a zero row of dweight.
        dead = ~inp.any(axis=0)
        assert np.all(got[0][dead] == 0)


# --- ReLU -----------------------------------------------------------------------


RELU_SHAPES = [(1, 7), (5, 13), (32, 128)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("B,H", RELU_SHAPES)
def test_relu_forward_matches_reference(rng, B, H, kind, dtype):
    inp = make_input(rng, kind, B, H, dtype)
    if kind == "sparse":
        inp -= dtype(0.1) * (inp != 0)  # some negatives, some exact zeros
    got, want = garbage((B, H), dtype), garbage((B, H), dtype)

    kernels.relu_forward(got, inp)
    reference.relu_forward(want, inp)

    np.testing.assert_array_equal(got, want, err_msg=f"relu_forward B={B} H={H} {kind}")
    assert np.all(got >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("B,H", RELU_SHAPES)
def test_relu_backward_matches_reference(rng, B, H, kind, dtype):
    out = np.maximum(make_input(rng, kind, B, H, dtype), 0)
    dout = rng.standard_normal((B, H)).astype(dtype)
    got, want = garbage((B, H), dtype), garbage((B, H), dtype)

    kernels.relu_backward(got, dout, out)
    reference.relu_backward(want, dout, out)

    np.testing.assert_array_equal(got, want, err_msg=f"relu_backward B={B} H={H} {kind}")
    np.testing.assert_array_equal(got, np.where(out > 0, dout, 0))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_in_place(rng, impl, dtype):
    """relu_forward(out=inp) and relu_backward(dinp=dout) are allowed."""
    z = rng.standard_normal((5, 13)).astype(dtype)
    want = np.maximum(z, 0)
    impl.relu_forward(z, z)
    np.testing.assert_array_equal(z, want, err_msg="relu_forward in place")

    dout = rng.standard_normal((5, 13)).astype(dtype)
    want = np.where(z > 0, dout, 0).astype(dtype)
    impl.relu_backward(dout, dout, z)
    np.testing.assert_array_equal(dout, want, err_msg="relu_backward in place")


# --- softmax and cross-entropy ----------------------------------------------------


SOFTMAX_SHAPES = [(1, 3), (7, 3), (1, 10), (64, 10)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,K", SOFTMAX_SHAPES)
def test_softmax_cross_entropy_forward_matches_reference(rng, B, K, dtype):
    logits = (3 * rng.standard_normal((B, K))).astype(dtype)
    labels = rng.integers(0, K, B)
    got = garbage((B, K), dtype), garbage(B, dtype)
    want = garbage((B, K), dtype), garbage(B, dtype)

    kernels.softmax_cross_entropy_forward(*got, logits, labels)
    reference.softmax_cross_entropy_forward(*want, logits, labels)

    for name, g, w in zip(["probs", "losses"], got, want):
        np.testing.assert_allclose(g, w, **tol(dtype, 1.0), err_msg=f"softmax forward {name} B={B} K={K}")
    np.testing.assert_allclose(got[0].sum(axis=1), 1, **tol(dtype, 1.0))
    # The loss is -log of the label's probability.
    np.testing.assert_allclose(got[1], -np.log(got[0][np.arange(B), labels].astype(np.float64)),
                               **tol(dtype, 10.0))


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.int64])
def test_softmax_cross_entropy_any_integer_labels(rng, label_dtype):
    B, K = 9, 10
    logits = rng.standard_normal((B, K))
    labels = rng.integers(0, K, B)
    want = np.empty((B, K)), np.empty(B), np.empty((B, K))
    reference.softmax_cross_entropy_forward(want[0], want[1], logits, labels)
    reference.softmax_cross_entropy_backward(want[2], want[0], labels)
    got = garbage((B, K), np.float64), garbage(B, np.float64), garbage((B, K), np.float64)

    kernels.softmax_cross_entropy_forward(got[0], got[1], logits, labels.astype(label_dtype))
    kernels.softmax_cross_entropy_backward(got[2], got[0], labels.astype(label_dtype))

    for name, g, w in zip(["probs", "losses", "dlogits"], got, want):
        np.testing.assert_allclose(g, w, **tol(np.float64), err_msg=f"{name} with {label_dtype.__name__} labels")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,K", SOFTMAX_SHAPES)
def test_softmax_cross_entropy_backward_matches_reference(rng, B, K, dtype):
    logits = rng.standard_normal((B, K))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(dtype)
    labels = rng.integers(0, K, B)
    got, want = garbage((B, K), dtype), garbage((B, K), dtype)

    kernels.softmax_cross_entropy_backward(got, probs, labels)
    reference.softmax_cross_entropy_backward(want, probs, labels)

    np.testing.assert_allclose(got, want, **tol(dtype, 1.0), err_msg=f"softmax backward B={B} K={K}")
    # Each row of (probs - onehot) sums to zero.
    np.testing.assert_allclose(got.sum(axis=1), 0, atol=10 * np.finfo(dtype).eps)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_backward_in_place(rng, impl, dtype):
    """softmax_cross_entropy_backward(dlogits=probs) is allowed."""
    B, K = 6, 3
    probs = rng.dirichlet(np.ones(K), B).astype(dtype)
    labels = rng.integers(0, K, B)
    want = np.empty_like(probs)
    reference.softmax_cross_entropy_backward(want, probs.copy(), labels)

    impl.softmax_cross_entropy_backward(probs, probs, labels)

    np.testing.assert_allclose(probs, want, **tol(dtype), err_msg="softmax backward in place")


# --- special values -------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_huge_logits_stay_finite(impl, dtype):
    logits = np.array([[1e4, -1e4, 0.0],
                       [1e4, -1e4, 0.0],
                       [-1e4, -1e4, -1e4],
                       [1e4, 1e4, -1e4]], dtype=dtype)
    labels = np.array([0, 1, 2, 1])
    probs, losses = garbage(logits.shape, dtype), garbage(4, dtype)

    impl.softmax_cross_entropy_forward(probs, losses, logits, labels)

    assert np.all(np.isfinite(probs)) and np.all(np.isfinite(losses)), (probs, losses)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-6)
    # Row 0: the label holds the max, loss 0. Row 1: the label is 2e4 below
    # it, loss 2e4 although its probability underflows to 0. Row 2: three
    # equal logits, loss log 3. Row 3: two equal maxima, loss log 2. (The
    # last two to 1e-3 only: see test_softmax_loss_keeps_precision_at_large_logits.)
    np.testing.assert_allclose(losses, [0.0, 2e4, np.log(3), np.log(2)], rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(probs[0], [1, 0, 0], atol=1e-30)
    np.testing.assert_allclose(probs[1], [1, 0, 0], atol=1e-30)
    np.testing.assert_allclose(probs[2], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(probs[3], [0.5, 0.5, 0], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("impl,dtype,big", [
    pytest.param(reference, np.float32, 1e4, id="reference-float32-1e4"),
    pytest.param(reference, np.float32, 1e12, id="reference-float32-1e12"),
    pytest.param(reference, np.float64, 1e12, id="reference-float64-1e12"),
    pytest.param(kernels, np.float32, 1e4, id="kernels-float32-1e4"),
    pytest.param(kernels, np.float32, 1e12, id="kernels-float32-1e12"),
    pytest.param(kernels, np.float64, 1e12, id="kernels-float64-1e12"),
])
def test_softmax_loss_keeps_precision_at_large_logits(impl, dtype, big):
    """Shifting by the row max makes the loss depend only on logit differences,
    so two equal logits of any size give exactly log 2 (three: log 3)."""
    logits = np.array([[big, big, -big], [-big, -big, -big]], dtype=dtype)
    labels = np.array([1, 0])
    probs, losses = garbage(logits.shape, dtype), garbage(2, dtype)

    impl.softmax_cross_entropy_forward(probs, losses, logits, labels)

    np.testing.assert_allclose(losses, [np.log(2), np.log(3)], **tol(dtype),
                               err_msg=f"loss of equal logits at {big:g} in {dtype.__name__}")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_nan_logit_poisons_only_its_row(rng, impl, dtype):
    logits = rng.standard_normal((5, 4)).astype(dtype)
    labels = np.array([0, 1, 2, 3, 0])
    clean = logits.copy()
    logits[1, 0] = np.nan   # NaN as the row's first logit (the kernel's starting max)
    logits[3, 2] = np.nan   # NaN further along, and not at the label
    probs, losses = garbage(logits.shape, dtype), garbage(5, dtype)
    want_probs, want_losses = np.empty_like(probs), np.empty_like(losses)
    reference.softmax_cross_entropy_forward(want_probs, want_losses, clean, labels)

    impl.softmax_cross_entropy_forward(probs, losses, logits, labels)

    np.testing.assert_array_equal(np.isnan(losses), [False, True, False, True, False])
    ok = [0, 2, 4]
    np.testing.assert_allclose(losses[ok], want_losses[ok], **tol(dtype), err_msg="clean rows")
    np.testing.assert_allclose(probs[ok], want_probs[ok], **tol(dtype), err_msg="clean rows")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_keeps_nan(impl, dtype):
    inp = np.array([[np.nan, -1.0, 0.0, 2.0, -np.inf, np.inf, -np.nan]], dtype=dtype)
    out = np.full_like(inp, 7.0)

    impl.relu_forward(out, inp)

    np.testing.assert_array_equal(out, np.array([[np.nan, 0, 0, 2, 0, np.inf, np.nan]], dtype=dtype))


# --- update rules ---------------------------------------------------------------


UPDATE_RULES = [
    pytest.param(("sgd", {}), id="sgd"),
    pytest.param(("momentum", dict(momentum=0.9, nesterov=False)), id="heavy-ball"),
    pytest.param(("momentum", dict(momentum=0.9, nesterov=True)), id="nesterov"),
    pytest.param(("adam", dict(beta1=0.9, beta2=0.999, eps=1e-8)), id="adam"),
]


def init_state(rule, param):
    if rule == "sgd":
        return []
    if rule == "momentum":
        return [np.zeros_like(param)]
    return [np.zeros_like(param), np.zeros_like(param)]


def apply_update(impl, rule, cfg, param, state, grad, lr, weight_decay, step):
    if rule == "sgd":
        impl.sgd_update(param, grad, lr, weight_decay)
    elif rule == "momentum":
        impl.momentum_update(param, state[0], grad, lr, cfg["momentum"], weight_decay, cfg["nesterov"])
    else:
        impl.adam_update(param, state[0], state[1], grad, lr, cfg["beta1"], cfg["beta2"], cfg["eps"],
                         weight_decay, step)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
@pytest.mark.parametrize("P", [1, 7, 1000])
@pytest.mark.parametrize("rule_cfg", UPDATE_RULES)
def test_update_rules_match_reference_over_steps(rng, rule_cfg, P, weight_decay, dtype):
    rule, cfg = rule_cfg
    lr = 0.05
    start = rng.standard_normal(P).astype(dtype)
    got, want = start.copy(), start.copy()
    got_state, want_state = init_state(rule, start), init_state(rule, start)

    for step in range(1, 6):
        grad = rng.standard_normal(P).astype(dtype)
        grad_before = grad.copy()
        apply_update(kernels, rule, cfg, got, got_state, grad, lr, weight_decay, step)
        apply_update(reference, rule, cfg, want, want_state, grad, lr, weight_decay, step)
        np.testing.assert_array_equal(grad, grad_before, err_msg="an update changed the gradient")
        msg = f"{rule} {cfg} wd={weight_decay} P={P} after step {step}"
        np.testing.assert_allclose(got, want, **tol(dtype, 1.0), err_msg=msg)
        for i, (g, w) in enumerate(zip(got_state, want_state)):
            np.testing.assert_allclose(g, w, **tol(dtype, 1.0), err_msg=f"{msg}: state {i}")
    assert not np.array_equal(got, start)


@pytest.mark.parametrize("impl", IMPLS)
def test_float32_adam_tracks_a_float64_evaluation(rng, impl):
    """Adam's moments weigh the gradient by ``1 - beta`` taken in float64 and then
    rounded: ``1 - float32(0.999)`` is 1.3e-5 (relatively) off ``float32(1 - 0.999)``,
    an error no later step corrects. 200 float32 steps stay within float32 rounding
    of the same formulas evaluated in float64."""
    P, lr, beta1, beta2, eps, wd = 64, 1e-3, 0.9, 0.999, 1e-8, 1e-4
    p = rng.standard_normal(P).astype(np.float32)
    m, v = np.zeros(P, np.float32), np.zeros(P, np.float32)
    p64, m64, v64 = p.astype(np.float64), np.zeros(P), np.zeros(P)
    for step in range(1, 201):
        g = rng.standard_normal(P).astype(np.float32)
        impl.adam_update(p, m, v, g, lr, beta1, beta2, eps, wd, step)
        g64 = g + wd * p64
        m64 = beta1 * m64 + (1 - beta1) * g64
        v64 = beta2 * v64 + (1 - beta2) * g64 * g64
        p64 -= lr * (m64 / (1 - beta1**step)) / (np.sqrt(v64 / (1 - beta2**step)) + eps)
        if step == 1:  # one rounding of each factor: far below the 1.3e-5 of a float32 (1 - beta)
            np.testing.assert_allclose(v, v64, rtol=5e-7, err_msg="v after step 1")
    np.testing.assert_allclose(v, v64, rtol=3e-6, err_msg="v after 200 steps")
    np.testing.assert_allclose(m, m64, rtol=1e-4, atol=1e-6, err_msg="m after 200 steps")
    np.testing.assert_allclose(p, p64, rtol=1e-5, atol=1e-6, err_msg="param after 200 steps")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_first_steps_by_formula(rng, impl, dtype):
    """The first steps of each rule, from their definitions, with a zero start state."""
    P, lr, wd, mu = 50, 0.1, 0.01, 0.9
    p0 = rng.standard_normal(P).astype(dtype)
    g = rng.standard_normal(P).astype(dtype)
    p0_64, g_64 = p0.astype(np.float64), g.astype(np.float64)
    gw = g_64 + wd * p0_64
    t = tol(dtype, 1.0)

    p = p0.copy()
    impl.sgd_update(p, g, lr, wd)
    np.testing.assert_allclose(p, p0_64 - lr * gw, **t, err_msg="sgd")

    # Momentum, first step from v = 0: v = g, heavy-ball moves by lr * g,
    # Nesterov by lr * (g + mu * g).
    for nesterov, factor in [(False, 1.0), (True, 1.0 + mu)]:
        p, v = p0.copy(), np.zeros_like(p0)
        impl.momentum_update(p, v, g, lr, mu, wd, nesterov)
        np.testing.assert_allclose(v, gw, **t, err_msg=f"velocity nesterov={nesterov}")
        np.testing.assert_allclose(p, p0_64 - lr * factor * gw, **t, err_msg=f"nesterov={nesterov}")
    # Second heavy-ball step with the same gradient (no decay): v = mu * g + g.
    p, v = p0.copy(), np.zeros_like(p0)
    impl.momentum_update(p, v, g, lr, mu, 0.0, False)
    impl.momentum_update(p, v, g, lr, mu, 0.0, False)
    np.testing.assert_allclose(p, p0_64 - lr * g_64 - lr * (1 + mu) * g_64, **t, err_msg="heavy-ball 2 steps")

    # Adam's first step: m_hat = g, v_hat = g^2, so each parameter moves by
    # lr * g / (|g| + eps), i.e. lr against the sign of its gradient.
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    impl.adam_update(p, m, v, g, lr, 0.9, 0.999, 1e-8, 0.0, 1)
    np.testing.assert_allclose(p, p0_64 - lr * np.sign(g_64), rtol=1e-5, atol=1e-6, err_msg="adam step 1")
    np.testing.assert_allclose(m, 0.1 * g_64, **t)
    np.testing.assert_allclose(v, 0.001 * g_64**2, **t)


# --- gather_batch ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D,start", [(1, 13, 0), (7, 13, 5), (16, 784, 24)])
def test_gather_batch_matches_reference(rng, B, D, start, dtype):
    N = 40
    images = rng.integers(0, 256, (N, D), dtype=np.uint8)
    images[0] = 0
    labels = rng.integers(0, 10, N).astype(np.uint8)
    order = rng.permutation(N)
    scale = 1.0 / 255.0
    got_x, got_y = garbage((B, D), dtype), np.full(B, -1, dtype=np.int64)
    want_x, want_y = garbage((B, D), dtype), np.full(B, -1, dtype=np.int64)

    kernels.gather_batch(got_x, got_y, images, labels, order, start, scale)
    reference.gather_batch(want_x, want_y, images, labels, order, start, scale)

    np.testing.assert_allclose(got_x, want_x, rtol=np.finfo(dtype).eps, atol=0, err_msg="gather_batch x")
    np.testing.assert_array_equal(got_y, want_y, err_msg="gather_batch y")
    rows = order[start:start + B]
    np.testing.assert_array_equal(got_y, labels[rows])
    np.testing.assert_allclose(got_x, images[rows] / 255.0, rtol=np.finfo(dtype).eps)
    assert got_x.min() >= 0 and got_x.max() <= 1


# --- training on a small separable problem --------------------------------------


def separable_problem(rng, N=192, D=8, K=3):
    centers = 2.0 * rng.standard_normal((K, D))
    labels = rng.integers(0, K, N)
    images = centers[labels] + 0.5 * rng.standard_normal((N, D))
    images[:, ::3] *= rng.random((N, 1)) < 0.5      # some exact zero inputs
    return np.ascontiguousarray(images), labels


class Net:
    """A D-H-K MLP on one flat parameter buffer, run with ``impl``'s functions."""

    def __init__(self, rng, D, H, K, B, dtype=np.float64):
        self.sizes = [(D, H), (H,), (H, K), (K,)]
        P = sum(int(np.prod(s)) for s in self.sizes)
        self.params = np.empty(P, dtype=dtype)
        self.grads = np.empty(P, dtype=dtype)
        self.W1, self.b1, self.W2, self.b2 = self._views(self.params)
        self.dW1, self.db1, self.dW2, self.db2 = self._views(self.grads)
        self.W1[:] = rng.normal(0, 1 / np.sqrt(D), (D, H))
        self.b1[:] = 0.1
        self.W2[:] = rng.normal(0, 1 / np.sqrt(H), (H, K))
        self.b2[:] = 0
        self.x, self.y = np.empty((B, D), dtype=dtype), np.empty(B, dtype=np.int64)
        self.Z1, self.A1 = np.empty((B, H), dtype=dtype), np.empty((B, H), dtype=dtype)
        self.Z2, self.probs = np.empty((B, K), dtype=dtype), np.empty((B, K), dtype=dtype)
        self.losses = np.empty(B, dtype=dtype)
        self.dZ2, self.dA1 = np.empty((B, K), dtype=dtype), np.empty((B, H), dtype=dtype)

    def _views(self, flat):
        out, i = [], 0
        for s in self.sizes:
            n = int(np.prod(s))
            out.append(flat[i:i + n].reshape(s))
            i += n
        return out

    def copy_params_from(self, other):
        self.params[:] = other.params

    def step(self, impl, images, labels, order, start, lr):
        """One SGD step on samples ``order[start:start+B]``; returns the batch's mean loss."""
        impl.gather_batch(self.x, self.y, images, labels, order, start, 1.0)
        impl.linear_forward(self.Z1, self.x, self.W1, self.b1)
        impl.relu_forward(self.A1, self.Z1)
        impl.linear_forward(self.Z2, self.A1, self.W2, self.b2)
        impl.softmax_cross_entropy_forward(self.probs, self.losses, self.Z2, self.y)
        impl.softmax_cross_entropy_backward(self.dZ2, self.probs, self.y)
        impl.linear_backward(self.dA1, self.dW2, self.db2, self.dZ2, self.A1, self.W2)
        impl.relu_backward(self.dA1, self.dA1, self.A1)
        impl.linear_backward_params(self.dW1, self.db1, self.dA1, self.x)
        impl.sgd_update(self.params, self.grads, lr, 0.0)
        return float(self.losses.mean())


def test_training_lowers_loss_and_tracks_reference(rng):
    images, labels = separable_problem(rng)
    N, B, steps = len(images), 32, 300
    net = Net(rng, D=images.shape[1], H=16, K=3, B=B)
    ref = Net(rng, D=images.shape[1], H=16, K=3, B=B)
    ref.copy_params_from(net)
    got, want = [], []
    for epoch in range(steps * B // N):
        order = rng.permutation(N)
        for start in range(0, N, B):
            got.append(net.step(kernels, images, labels, order, start, 0.1))
            want.append(ref.step(reference, images, labels, order, start, 0.1))
    got, want = np.array(got), np.array(want)

    assert len(got) == steps
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg="loss trajectory")
    np.testing.assert_allclose(net.params, ref.params, rtol=1e-9, atol=1e-12, err_msg="final parameters")
    first, last = got[:6].mean(), got[-6:].mean()   # one epoch at each end
    assert last < 0.1 * first, (first, last)


# --- kernels inside a user's @njit code -----------------------------------------


@numba.njit
def _user_train_steps(params, grads, W1, b1, W2, b2, dW1, db1, dW2, db2,
                      x, y, Z1, A1, Z2, probs, losses, dZ2, dA1, lr, steps):
    """Forward, backward and SGD update, ``steps`` times on one batch, all in nopython mode."""
    mean_losses = np.empty(steps)
    for s in range(steps):
        kernels.linear_forward(Z1, x, W1, b1)
        kernels.relu_forward(A1, Z1)
        kernels.linear_forward(Z2, A1, W2, b2)
        kernels.softmax_cross_entropy_forward(probs, losses, Z2, y)
        kernels.softmax_cross_entropy_backward(dZ2, probs, y)
        kernels.linear_backward(dA1, dW2, db2, dZ2, A1, W2)
        kernels.relu_backward(dA1, dA1, A1)
        kernels.linear_backward_params(dW1, db1, dA1, x)
        kernels.sgd_update(params, grads, lr, 0.0)
        mean_losses[s] = losses.mean()
    return mean_losses


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_callable_from_user_njit(rng, dtype):
    images, labels = separable_problem(rng, N=24, D=13)
    B = len(images)
    order = np.arange(B)
    nets = [Net(rng, D=13, H=7, K=3, B=B, dtype=dtype) for _ in range(3)]
    for net in nets[1:]:
        net.copy_params_from(nets[0])
    for net in nets:
        reference.gather_batch(net.x, net.y, images, labels, order, 0, 1.0)

    user, py, ref = nets
    got = _user_train_steps(user.params, user.grads, user.W1, user.b1, user.W2, user.b2,
                            user.dW1, user.db1, user.dW2, user.db2, user.x, user.y, user.Z1, user.A1,
                            user.Z2, user.probs, user.losses, user.dZ2, user.dA1, 0.1, 3)
    from_python = [py.step(kernels, images, labels, order, 0, 0.1) for _ in range(3)]
    from_reference = [ref.step(reference, images, labels, order, 0, 0.1) for _ in range(3)]

    np.testing.assert_allclose(got, from_python, **tol(dtype), err_msg="njit caller vs Python caller: losses")
    np.testing.assert_allclose(user.params, py.params, **tol(dtype),
                               err_msg="njit caller vs Python caller: params")
    np.testing.assert_allclose(user.grads, py.grads, **tol(dtype), err_msg="njit caller vs Python caller: grads")
    np.testing.assert_allclose(got, from_reference, **tol(dtype, 10.0), err_msg="njit caller vs reference")
    np.testing.assert_allclose(user.params, ref.params, **tol(dtype, 10.0), err_msg="njit caller vs reference")


# --- thread-count independence --------------------------------------------------


def run_every_kernel(inputs, dtype):
    """Call each parallel kernel once on copies of ``inputs``; return every output."""
    x, weight, bias, dout, labels, logits, param, grad, images, order = (a.copy() for a in inputs)
    B, D = x.shape
    H = weight.shape[1]
    K = logits.shape[1]
    out = {}
    out["linear_forward"] = garbage((B, H), dtype)
    kernels.linear_forward(out["linear_forward"], x, weight, bias)
    out["linear_backward"] = [garbage((B, D), dtype), garbage((D, H), dtype), garbage(H, dtype)]
    kernels.linear_backward(*out["linear_backward"], dout, x, weight)
    out["linear_backward_params"] = [garbage((D, H), dtype), garbage(H, dtype)]
    kernels.linear_backward_params(*out["linear_backward_params"], dout, x)
    out["relu_forward"] = garbage((B, H), dtype)
    kernels.relu_forward(out["relu_forward"], dout)
    out["relu_backward"] = garbage((B, H), dtype)
    kernels.relu_backward(out["relu_backward"], dout, out["relu_forward"])
    out["softmax_forward"] = [garbage((B, K), dtype), garbage(B, dtype)]
    kernels.softmax_cross_entropy_forward(*out["softmax_forward"], logits, labels)
    out["softmax_backward"] = garbage((B, K), dtype)
    kernels.softmax_cross_entropy_backward(out["softmax_backward"], out["softmax_forward"][0], labels)
    p = param.copy()
    kernels.sgd_update(p, grad, 0.05, 1e-3)
    out["sgd_update"] = p
    for nesterov in (False, True):
        p, v = param.copy(), np.zeros_like(param)
        for _ in range(2):
            kernels.momentum_update(p, v, grad, 0.05, 0.9, 1e-3, nesterov)
        out[f"momentum_update nesterov={nesterov}"] = [p, v]
    p, m, v = param.copy(), np.zeros_like(param), np.zeros_like(param)
    for step in (1, 2, 3):
        kernels.adam_update(p, m, v, grad, 1e-3, 0.9, 0.999, 1e-8, 1e-3, step)
    out["adam_update"] = [p, m, v]
    out["gather_batch"] = [garbage((B, D), dtype), np.full(B, -1)]
    kernels.gather_batch(*out["gather_batch"], images, labels, order, 0, 1 / 255)
    return out


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs at least 2 Numba threads")
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_thread_count(rng, dtype):
    B, D, H, K = 128, 784, 128, 10
    x = make_input(rng, "sparse", B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    labels = rng.integers(0, K, B)
    logits = (3 * rng.standard_normal((B, K))).astype(dtype)
    param = rng.standard_normal(D * H + H).astype(dtype)
    grad = rng.standard_normal(D * H + H).astype(dtype)
    images = rng.integers(0, 256, (B, D), dtype=np.uint8)
    order = rng.permutation(B)
    inputs = (x, weight, bias, dout, labels, logits, param, grad, images, order)

    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_every_kernel(inputs, dtype)
        numba.set_num_threads(2)
        two = run_every_kernel(inputs, dtype)
    finally:
        numba.set_num_threads(saved)

    for name in one:
        a = one[name] if isinstance(one[name], list) else [one[name]]
        b = two[name] if isinstance(two[name], list) else [two[name]]
        for i, (u, w) in enumerate(zip(a, b)):
            assert np.array_equal(u, w, equal_nan=False), f"{name} output {i} differs between 1 and 2 threads"


# --- sparse-input linear kernels ------------------------------------------------

# (B, D, H): B=1, odd widths, MNIST's first layer, and batches past the
# 256-sample chunks that sparse_linear_backward_params takes a large batch in.
SPARSE_SHAPES = [(1, 13, 7), (6, 13, 7), (5, 13, 3), (32, 784, 128), (300, 20, 9), (600, 50, 10)]


def make_pixels(rng, B, D, density=0.2):
    """uint8 'pixels', most of them zero, as MNIST's are."""
    x = rng.integers(1, 256, (B, D)) * (rng.random((B, D)) < density)
    return x.astype(np.uint8)


def sparse_input(rng, kind, B, D, dtype):
    """``(inp, scale)`` for the sparse kernels: uint8 pixels with 1/255, or floats with 1."""
    if kind == "uint8":
        return make_pixels(rng, B, D), 1 / 255
    return make_input(rng, kind, B, D, dtype), 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS + ["uint8"])
@pytest.mark.parametrize("B,D,H", SPARSE_SHAPES)
def test_sparse_linear_forward_matches_reference(rng, B, D, H, kind, dtype):
    inp, scale = sparse_input(rng, kind, B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    got, want = garbage((B, H), dtype), garbage((B, H), dtype)
    index = np.full((16, D), -1, np.int32)
    kernels.sparse_linear_forward(got, index, inp, weight, bias, scale)
    reference.sparse_linear_forward(want, index.copy(), inp, weight, bias, scale)
    scaled = inp.astype(np.float64) * scale
    np.testing.assert_allclose(got, want, **tol(dtype, abs_scale(scaled, weight)),
                               err_msg=f"sparse_linear_forward {B}x{D}x{H} {kind} {dtype.__name__}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS + ["uint8"])
@pytest.mark.parametrize("B,D,H", SPARSE_SHAPES)
def test_sparse_linear_backward_params_matches_reference(rng, B, D, H, kind, dtype):
    inp, scale = sparse_input(rng, kind, B, D, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    got = garbage((D, H), dtype), garbage(H, dtype)
    want = garbage((D, H), dtype), garbage(H, dtype)
    index = np.full((16, min(B, 256)), -1, np.int32)   # the least the kernel needs
    kernels.sparse_linear_backward_params(*got, index, dout, inp, scale)
    reference.sparse_linear_backward_params(*want, index.copy(), dout, inp, scale)
    scaled = inp.astype(np.float64) * scale
    np.testing.assert_allclose(got[0], want[0], **tol(dtype, abs_scale(scaled.T, dout)),
                               err_msg=f"sparse dweight {B}x{D}x{H} {kind} {dtype.__name__}")
    np.testing.assert_allclose(got[1], want[1], **tol(dtype, float(np.abs(dout).sum(0).max())),
                               err_msg=f"sparse dbias {B}x{D}x{H} {kind} {dtype.__name__}")


@pytest.mark.parametrize("B", [7, 128, 600])
def test_sparse_kernels_give_the_same_bits_for_any_number_of_parts(rng, B):
    """S, the scratch's rows, sets how the work is split, never the result."""
    D, H = 50, 12
    inp = make_pixels(rng, B, D)
    weight, bias = make_layer(rng, D, H, np.float32)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    outs, grads = [], []
    for S in (1, 3, 16, 64):
        out = garbage((B, H), np.float32)
        kernels.sparse_linear_forward(out, np.zeros((S, D), np.int32), inp, weight, bias, 1 / 255)
        dw, db = garbage((D, H), np.float32), garbage(H, np.float32)
        kernels.sparse_linear_backward_params(dw, db, np.zeros((S, B), np.int32), dout, inp, 1 / 255)
        outs.append(out)
        grads.append((dw, db))
    for S, out, (dw, db) in zip((3, 16, 64), outs[1:], grads[1:]):
        assert np.array_equal(out, outs[0]), f"forward with S={S} differs from S=1"
        assert np.array_equal(dw, grads[0][0]) and np.array_equal(db, grads[0][1]), f"params with S={S}"


def test_sparse_kernels_on_uint8_match_float_input(rng):
    """Raw pixels with scale 1/255 give the very bits of the float32 batch gather_batch would make."""
    B, D, H = 64, 784, 32
    pixels = make_pixels(rng, B, D)
    x = np.empty((B, D), np.float32)
    kernels.gather_batch(x, np.empty(B, np.int32), pixels, np.zeros(B, np.uint8), np.arange(B), 0, 1 / 255)
    weight, bias = make_layer(rng, D, H, np.float32)
    a, b = garbage((B, H), np.float32), garbage((B, H), np.float32)
    index = np.zeros((16, D), np.int32)
    kernels.sparse_linear_forward(a, index, pixels, weight, bias, 1 / 255)
    kernels.sparse_linear_forward(b, index, x, weight, bias, 1.0)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("density", [1.0, 0.2])
@pytest.mark.parametrize("B", [5, 128, 300])
def test_sparse_kernels_give_the_bits_of_the_plain_ones(rng, B, density):
    """With ``scale`` 1, the sparse kernels compute the plain ones' sums in the same
    order (docs/kernels.md points callers to them as the faster, same-result choice)."""
    D, H = 784, 32
    inp = (make_pixels(rng, B, D, density) / np.float32(255)).astype(np.float32)
    weight, bias = make_layer(rng, D, H, np.float32)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    plain, sparse = garbage((B, H), np.float32), garbage((B, H), np.float32)
    kernels.linear_forward(plain, inp, weight, bias)
    kernels.sparse_linear_forward(sparse, np.zeros((16, D), np.int32), inp, weight, bias, 1.0)
    assert np.array_equal(plain, sparse)
    plain = garbage((D, H), np.float32), garbage(H, np.float32)
    sparse = garbage((D, H), np.float32), garbage(H, np.float32)
    kernels.linear_backward_params(*plain, dout, inp)
    kernels.sparse_linear_backward_params(*sparse, np.zeros((16, min(B, 256)), np.int32), dout, inp, 1.0)
    assert np.array_equal(plain[0], sparse[0]) and np.array_equal(plain[1], sparse[1])


@pytest.mark.parametrize("B", [8, 13, 130])
@pytest.mark.parametrize("density", [1.0, 0.6, 0.2])
def test_sparse_forward_bits_do_not_depend_on_grouping_rows(rng, B, density):
    """Dense inputs go four rows at a time over the columns non-zero in any of them
    (the last group may be short); each row must come out as it does alone."""
    D, H = 50, 12
    inp = make_pixels(rng, B, D, density)
    inp[B // 2:] = make_pixels(rng, B - B // 2, D, 0.1)  # sparser rows after dense ones
    weight, bias = make_layer(rng, D, H, np.float32)
    index = np.zeros((16, D), np.int32)
    got = garbage((B, H), np.float32)
    kernels.sparse_linear_forward(got, index, inp, weight, bias, 1 / 255)
    for b in range(B):
        alone = garbage((1, H), np.float32)
        kernels.sparse_linear_forward(alone, index, inp[b:b + 1], weight, bias, 1 / 255)
        assert np.array_equal(got[b], alone[0]), f"row {b}"


@pytest.mark.parametrize("shift", [1, 2, 3])
def test_sparse_backward_params_bits_do_not_depend_on_how_rows_are_grouped(rng, shift):
    """The kernel fills four rows of dweight at a time, over the samples non-zero in
    any of them: zero columns put in front move every row to another place in its
    group of four (or to the rows left over), and no row's bits may change."""
    B, D, H = 300, 50, 12
    inp = make_pixels(rng, B, D)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    index = np.zeros((16, 256), np.int32)
    dw, db = garbage((D, H), np.float32), garbage(H, np.float32)
    kernels.sparse_linear_backward_params(dw, db, index, dout, inp, 1 / 255)
    padded = np.concatenate([np.zeros((B, shift), np.uint8), inp], axis=1)
    dw2, db2 = garbage((D + shift, H), np.float32), garbage(H, np.float32)
    kernels.sparse_linear_backward_params(dw2, db2, index, dout, padded, 1 / 255)
    assert np.array_equal(dw2[shift:], dw)
    assert not dw2[:shift].any()
    assert np.array_equal(db2, db)


def test_sparse_backward_params_on_uint8_match_float_input(rng):
    """Raw pixels with scale 1/255 give the very bits of their float32 copy."""
    B, D, H = 64, 784, 32
    pixels = make_pixels(rng, B, D)
    x = np.empty((B, D), np.float32)
    kernels.gather_batch(x, np.empty(B, np.int32), pixels, np.zeros(B, np.uint8), np.arange(B), 0, 1 / 255)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    index = np.zeros((16, B), np.int32)
    a = garbage((D, H), np.float32), garbage(H, np.float32)
    b = garbage((D, H), np.float32), garbage(H, np.float32)
    kernels.sparse_linear_backward_params(*a, index, dout, pixels, 1 / 255)
    kernels.sparse_linear_backward_params(*b, index, dout, x, 1.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
def test_sparse_kernels_do_not_depend_on_thread_count(rng):
    B, D, H = 300, 784, 128
    inp = make_pixels(rng, B, D)
    weight, bias = make_layer(rng, D, H, np.float32)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            out = garbage((B, H), np.float32)
            kernels.sparse_linear_forward(out, np.zeros((16, D), np.int32), inp, weight, bias, 1 / 255)
            dw, db = garbage((D, H), np.float32), garbage(H, np.float32)
            kernels.sparse_linear_backward_params(dw, db, np.zeros((16, 256), np.int32), dout, inp, 1 / 255)
            results.append((out, dw, db))
    finally:
        numba.set_num_threads(before)
    for a, b in zip(*results):
        assert np.array_equal(a, b)


# --- register-blocked dense kernels ---------------------------------------------

# (B, D, H): one of everything; M, N and K (of each kernel's own product) below and
# past the 6-row groups, the 16 (float32) and 8 (float64) column panels and the
# 256-term runs; more panels than the 4 parallel parts; B past the 128 rows of A
# taken at a time (and the weight gradient's runs of 256 samples).
BLOCKED_SHAPES = [(1, 1, 1), (3, 5, 17), (7, 17, 5), (1, 513, 100), (33, 100, 513), (128, 300, 17),
                  (7, 513, 300), (128, 100, 1), (300, 17, 33)]


def blocked_input(rng, kind, B, D, dtype):
    """``(inp, scale)``: uint8 pixels with 1/255, or floats with 1 (``zero_rows``: rows 0, 3, 6.. all zero)."""
    if kind == "uint8":
        return make_pixels(rng, B, D), 1 / 255
    return make_input(rng, kind, B, D, dtype), 1.0


def blocked_pack(M, K, N, dtype, extra=0):
    """A ``pack`` for the product ``(M, K) @ (K, N)``, full of NaN: the kernels must not read what they did not write."""
    return garbage(kernels.pack_size(M, K, N) + extra, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS + ["uint8"])
@pytest.mark.parametrize("B,D,H", BLOCKED_SHAPES)
def test_blocked_linear_forward_matches_reference(rng, B, D, H, kind, dtype):
    inp, scale = blocked_input(rng, kind, B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    saved = inp.copy(), weight.copy(), bias.copy()
    got, want = garbage((B, H), dtype), garbage((B, H), dtype)
    kernels.blocked_linear_forward(got, blocked_pack(B, D, H, dtype), inp, weight, bias, scale)
    reference.blocked_linear_forward(want, None, inp, weight, bias, scale)
    scaled = inp.astype(np.float64) * scale
    np.testing.assert_allclose(got, want, **tol(dtype, abs_scale(scaled, weight)),
                               err_msg=f"blocked_linear_forward {B}x{D}x{H} {kind} {dtype.__name__}")
    for before, after in zip(saved, (inp, weight, bias)):
        np.testing.assert_array_equal(after, before, err_msg="blocked_linear_forward changed an input")
    if kind == "zero_rows":
        np.testing.assert_array_equal(got[::3], np.broadcast_to(bias, got[::3].shape),
                                      err_msg="zero input rows must give the bias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D,H", BLOCKED_SHAPES)
def test_blocked_linear_backward_input_matches_reference(rng, B, D, H, dtype):
    weight, _ = make_layer(rng, D, H, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    dout[::3] = 0                                       # rows of ReLU units all off
    saved = weight.copy(), dout.copy()
    got, want = garbage((B, D), dtype), garbage((B, D), dtype)
    kernels.blocked_linear_backward_input(got, blocked_pack(B, H, D, dtype), dout, weight)
    reference.blocked_linear_backward_input(want, None, dout, weight)
    np.testing.assert_allclose(got, want, **tol(dtype, abs_scale(dout, weight.T)),
                               err_msg=f"blocked_linear_backward_input {B}x{D}x{H} {dtype.__name__}")
    assert not got[::3].any(), "a zero dout row must give a zero dinp row"
    for before, after in zip(saved, (weight, dout)):
        np.testing.assert_array_equal(after, before, err_msg="blocked_linear_backward_input changed an input")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS + ["uint8"])
@pytest.mark.parametrize("B,D,H", BLOCKED_SHAPES)
def test_blocked_linear_backward_params_matches_reference(rng, B, D, H, kind, dtype):
    inp, scale = blocked_input(rng, kind, B, D, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    saved = inp.copy(), dout.copy()
    got = garbage((D, H), dtype), garbage(H, dtype)
    want = garbage((D, H), dtype), garbage(H, dtype)
    kernels.blocked_linear_backward_params(*got, blocked_pack(D, B, H, dtype), dout, inp, scale)
    reference.blocked_linear_backward_params(*want, None, dout, inp, scale)
    scaled = inp.astype(np.float64) * scale
    np.testing.assert_allclose(got[0], want[0], **tol(dtype, abs_scale(scaled.T, dout)),
                               err_msg=f"blocked dweight {B}x{D}x{H} {kind} {dtype.__name__}")
    np.testing.assert_allclose(got[1], want[1], **tol(dtype, float(np.abs(dout).sum(0).max())),
                               err_msg=f"blocked dbias {B}x{D}x{H} {kind} {dtype.__name__}")
    for before, after in zip(saved, (inp, dout)):
        np.testing.assert_array_equal(after, before, err_msg="blocked_linear_backward_params changed an input")
    dead = ~inp.any(axis=0)                             # an input zero for the whole batch: a zero row
    assert not got[0][dead].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D,H", BLOCKED_SHAPES)
def test_blocked_relu_kernels_are_the_plain_kernel_then_the_relu(rng, B, D, H, dtype):
    """The fused ReLU (forward) and ReLU gate (input gradient) give the bits of the plain
    blocked kernel followed by ``relu_forward`` / ``relu_backward``, NaN included, and
    match their reference twins."""
    inp, scale = blocked_input(rng, "uint8", B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    weight[0, 0] = np.nan                               # a NaN sum stays NaN through the ReLU
    plain = garbage((B, H), dtype)
    kernels.blocked_linear_forward(plain, blocked_pack(B, D, H, dtype), inp, weight, bias, scale)
    want = garbage((B, H), dtype)
    kernels.relu_forward(want, plain)
    got = garbage((B, H), dtype)
    kernels.blocked_linear_relu_forward(got, blocked_pack(B, D, H, dtype), inp, weight, bias, scale)
    np.testing.assert_array_equal(got, want, err_msg=f"blocked_linear_relu_forward {B}x{D}x{H} {dtype.__name__}")
    twin = garbage((B, H), dtype)
    reference.blocked_linear_relu_forward(twin, None, inp, weight, bias, scale)
    np.testing.assert_allclose(got, twin, **tol(dtype, abs_scale(inp.astype(np.float64) * scale, np.nan_to_num(weight))))

    below = np.maximum(rng.standard_normal((B, D)), 0).astype(dtype)   # the ReLU output this layer read
    dout = rng.standard_normal((B, H)).astype(dtype)
    dout[0, 0] = np.nan                                 # reaches only the units that were on
    dinp = garbage((B, D), dtype)
    kernels.blocked_linear_backward_input(dinp, blocked_pack(B, H, D, dtype), dout, weight)
    want = garbage((B, D), dtype)
    kernels.relu_backward(want, dinp, below)
    got = garbage((B, D), dtype)
    kernels.blocked_linear_backward_input_relu(got, blocked_pack(B, H, D, dtype), dout, weight, below)
    np.testing.assert_array_equal(got, want, err_msg=f"blocked_linear_backward_input_relu {B}x{D}x{H}")
    assert not got[below <= 0].any(), "a unit that was off passes back exactly 0"
    twin = garbage((B, D), dtype)
    reference.blocked_linear_backward_input_relu(twin, None, dout, weight, below)
    np.testing.assert_allclose(got, twin, **tol(dtype, abs_scale(np.nan_to_num(dout), np.nan_to_num(weight.T))))


def run_blocked(inp, scale, weight, bias, dout, extra=0, fill=np.nan):
    """The three blocked kernels on one layer; their outputs (prefilled with NaN), packs filled with ``fill``."""
    dtype = weight.dtype.type
    (B, D), H = inp.shape, weight.shape[1]
    out, dinp = garbage((B, H), dtype), garbage((B, D), dtype)
    dweight, dbias = garbage((D, H), dtype), garbage(H, dtype)
    kernels.blocked_linear_forward(out, np.full(kernels.pack_size(B, D, H) + extra, fill, dtype), inp, weight,
                                   bias, scale)
    kernels.blocked_linear_backward_input(dinp, np.full(kernels.pack_size(B, H, D) + extra, fill, dtype), dout,
                                          weight)
    kernels.blocked_linear_backward_params(dweight, dbias, np.full(kernels.pack_size(D, B, H) + extra, fill, dtype),
                                           dout, inp, scale)
    return dict(out=out, dinp=dinp, dweight=dweight, dbias=dbias)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 threads")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,D,H", [(7, 17, 5), (128, 513, 300), (300, 100, 33)])
def test_blocked_kernels_give_the_same_bits_at_1_and_2_threads(rng, B, D, H, dtype):
    """Each element of C is summed by one part, in k order: the thread count changes nothing."""
    weight, bias = make_layer(rng, D, H, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    for inp, scale in [(make_input(rng, "sparse", B, D, dtype), 1.0), (make_pixels(rng, B, D), 1 / 255)]:
        results = []
        before = numba.get_num_threads()
        try:
            for threads in (1, 2):
                numba.set_num_threads(threads)
                results.append(run_blocked(inp, scale, weight, bias, dout))
        finally:
            numba.set_num_threads(before)
        for name in results[0]:
            assert np.array_equal(results[0][name], results[1][name]), \
                f"{name} ({inp.dtype} input) differs between 1 and 2 threads"


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_kernels_do_not_depend_on_the_packs_contents_or_length(rng, dtype):
    """A pack is scratch: what it held before, and any length past pack_size, leave the bits alone."""
    B, D, H = 33, 300, 37
    inp = make_input(rng, "sparse", B, D, dtype)
    weight, bias = make_layer(rng, D, H, dtype)
    dout = rng.standard_normal((B, H)).astype(dtype)
    first = run_blocked(inp, 1.0, weight, bias, dout, extra=0, fill=np.nan)
    second = run_blocked(inp, 1.0, weight, bias, dout, extra=1000, fill=7.0)
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def test_blocked_kernels_on_uint8_match_float_input(rng):
    """Raw pixels with scale 1/255 give the very bits of the float32 batch gather_batch would make."""
    B, D, H = 64, 300, 40
    pixels = make_pixels(rng, B, D)
    x = np.empty((B, D), np.float32)
    kernels.gather_batch(x, np.empty(B, np.int32), pixels, np.zeros(B, np.uint8), np.arange(B), 0, 1 / 255)
    weight, bias = make_layer(rng, D, H, np.float32)
    dout = rng.standard_normal((B, H)).astype(np.float32)
    a = run_blocked(pixels, 1 / 255, weight, bias, dout)
    b = run_blocked(x, 1.0, weight, bias, dout)
    for name in a:
        assert np.array_equal(a[name], b[name]), name


@pytest.mark.parametrize("dtype", DTYPES)
def test_blocked_kernels_propagate_inf_and_nan_as_a_matmul(rng, dtype):
    """No zero input is skipped: 0 * inf is NaN, as in ``inp @ weight``; and the zero
    padding past the edges of M and N leaks no NaN into the result."""
    B, D, H = 7, 5, 17
    inp = make_input(rng, "dense", B, D, dtype)
    inp[:, 1] = 0
    inp[2, 3] = np.inf
    weight, bias = make_layer(rng, D, H, dtype)
    weight[1, 4] = np.inf                               # times the zero column: NaN down output 4
    weight[0, 9] = np.nan
    dout = rng.standard_normal((B, H)).astype(dtype)
    dout[5, 6] = np.inf
    got = run_blocked(inp, 1.0, weight, bias, dout)
    with np.errstate(invalid="ignore", over="ignore"):
        want = dict(out=inp @ weight + bias, dinp=dout @ weight.T, dweight=inp.T @ dout, dbias=dout.sum(axis=0))
    for name in got:
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want[name]), err_msg=f"{name}: NaN")
        np.testing.assert_array_equal(np.isposinf(got[name]), np.isposinf(want[name]), err_msg=f"{name}: +inf")
        np.testing.assert_array_equal(np.isneginf(got[name]), np.isneginf(want[name]), err_msg=f"{name}: -inf")
    assert np.isnan(got["out"][:, 4]).all() and np.isnan(got["out"][:, 9]).all()


# --- the output layer: linear + softmax + cross-entropy -------------------------

# (B, D, K): B=1, odd widths, K=1 and K not a multiple of 4, the default output
# layer, and batches of fewer rows than the scratch has parts.
CLASSIFIER_SHAPES = [(1, 13, 7), (6, 13, 1), (5, 13, 3), (9, 7, 5), (128, 128, 10), (300, 50, 10)]


def classifier_case(rng, B, D, K, kind, dtype):
    """inp, scale, weight, bias, labels and a scratch of 16 parts."""
    if kind == "uint8":
        inp, scale = make_pixels(rng, B, D), 1 / 255
    else:
        inp, scale = np.maximum(make_input(rng, kind, B, D, dtype), 0), 1.0   # ReLU outputs
    weight, bias = make_layer(rng, D, K, dtype)
    labels = rng.integers(0, K, B)
    return inp, scale, weight, bias, labels, np.full((17, K, D + 1), np.nan, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", INPUT_KINDS + ["uint8"])
@pytest.mark.parametrize("B,D,K", CLASSIFIER_SHAPES)
def test_classifier_matches_reference(rng, B, D, K, kind, dtype):
    inp, scale, weight, bias, labels, scratch = classifier_case(rng, B, D, K, kind, dtype)
    got = [garbage((B, K), dtype), garbage(B, dtype)]
    want = [garbage((B, K), dtype), garbage(B, dtype)]
    kernels.classifier_forward(*got, scratch, inp, weight, bias, labels, scale)
    reference.classifier_forward(*want, None, inp, weight, bias, labels, scale)
    for name, g, w in zip(["probs", "losses"], got, want):
        np.testing.assert_allclose(g, w, **tol(dtype, 10.0), err_msg=f"classifier_forward {name} {B}x{D}x{K} {kind}")

    probs = want[0]
    got = [garbage((B, D), dtype), garbage((D, K), dtype), garbage(K, dtype)]
    want = [garbage((B, D), dtype), garbage((D, K), dtype), garbage(K, dtype)]
    kernels.classifier_backward(*got, scratch, probs, inp, weight, labels, scale)
    reference.classifier_backward(*want, None, probs, inp, weight, labels, scale)
    scaled = inp.astype(np.float64) * scale
    scales = [abs_scale(np.ones((B, K)) / B, weight.T), abs_scale(scaled.T, np.ones((B, K)) / B), 1.0]
    for name, g, w, s in zip(["dinp", "dweight", "dbias"], got, want, scales):
        np.testing.assert_allclose(g, w, **tol(dtype, s), err_msg=f"classifier_backward {name} {B}x{D}x{K} {kind}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_classifier_backward_skips_an_empty_dinp(rng, dtype):
    inp, scale, weight, bias, labels, scratch = classifier_case(rng, 9, 13, 4, "uint8", dtype)
    probs, losses = garbage((9, 4), dtype), garbage(9, dtype)
    kernels.classifier_forward(probs, losses, scratch, inp, weight, bias, labels, scale)
    full = [garbage((9, 13), dtype), garbage((13, 4), dtype), garbage(4, dtype)]
    kernels.classifier_backward(*full, scratch, probs, inp, weight, labels, scale)
    empty = [np.empty((0, 13), dtype), garbage((13, 4), dtype), garbage(4, dtype)]
    kernels.classifier_backward(*empty, scratch, probs, inp, weight, labels, scale)
    assert np.array_equal(empty[1], full[1]) and np.array_equal(empty[2], full[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_classifier_equals_the_three_kernels_it_fuses(rng, dtype):
    """Linear, softmax + cross-entropy and the linear layer's gradients: the same numbers."""
    B, D, K = 33, 40, 10
    inp, scale, weight, bias, labels, scratch = classifier_case(rng, B, D, K, "sparse", dtype)
    probs, losses = garbage((B, K), dtype), garbage(B, dtype)
    kernels.classifier_forward(probs, losses, scratch, inp, weight, bias, labels, scale)
    logits, p2, l2 = garbage((B, K), dtype), garbage((B, K), dtype), garbage(B, dtype)
    kernels.linear_forward(logits, inp, weight, bias)
    kernels.softmax_cross_entropy_forward(p2, l2, logits, labels)
    np.testing.assert_allclose(probs, p2, **tol(dtype, 10.0))
    np.testing.assert_allclose(losses, l2, **tol(dtype, 10.0))

    dinp, dweight, dbias = garbage((B, D), dtype), garbage((D, K), dtype), garbage(K, dtype)
    kernels.classifier_backward(dinp, dweight, dbias, scratch, probs, inp, weight, labels, scale)
    dlogits = garbage((B, K), dtype)
    kernels.softmax_cross_entropy_backward(dlogits, probs, labels)
    want = [garbage((B, D), dtype), garbage((D, K), dtype), garbage(K, dtype)]
    kernels.linear_backward(*want, dlogits, inp, weight)
    for name, g, w in zip(["dinp", "dweight", "dbias"], [dinp, dweight, dbias], want):
        np.testing.assert_allclose(g, w, **tol(dtype, 1.0), err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_classifier_loss_stays_finite_and_precise_at_large_logits(dtype):
    """As softmax_cross_entropy_forward: equal huge logits give exactly log 2."""
    big = 1e4 if dtype == np.float32 else 1e12
    inp = np.array([[1.0, 0.0], [0.0, 1.0]], dtype)
    weight = np.array([[big, big, -big], [-big, -big, -big]], dtype)   # row b of inp picks row b of weight
    probs, losses = garbage((2, 3), dtype), garbage(2, dtype)
    scratch = np.zeros((3, 3, 3), dtype)
    kernels.classifier_forward(probs, losses, scratch, inp, weight, np.zeros(3, dtype), np.array([1, 0]), 1.0)
    np.testing.assert_allclose(losses, [np.log(2), np.log(3)], **tol(dtype))
    assert np.all(np.isfinite(probs))


@pytest.mark.parametrize("B", [5, 128, 300])
def test_classifier_gives_the_same_bits_at_1_and_2_threads(rng, B):
    """The sums run over fixed parts of the batch (the scratch's), not over threads."""
    inp, scale, weight, bias, labels, scratch = classifier_case(rng, B, 128, 10, "sparse", np.float32)
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            probs, losses = garbage((B, 10), np.float32), garbage(B, np.float32)
            kernels.classifier_forward(probs, losses, scratch, inp, weight, bias, labels, scale)
            grads = [garbage((B, 128), np.float32), garbage((128, 10), np.float32), garbage(10, np.float32)]
            kernels.classifier_backward(*grads, scratch, probs, inp, weight, labels, scale)
            results.append([probs, losses, *grads])
    finally:
        numba.set_num_threads(before)
    for name, a, b in zip(["probs", "losses", "dinp", "dweight", "dbias"], *results):
        assert np.array_equal(a, b), f"{name} differs between 1 and 2 threads"
