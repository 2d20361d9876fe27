"""Central-difference gradient check of a 2-hidden-layer MLP, in float64.

The network is assembled from the layer functions of either
:mod:`fastnet.reference` or :mod:`fastnet.kernels`; every analytic gradient
(all six parameter arrays, and the input) is compared with
``(L(p + h) - L(p - h)) / 2h``. The data are drawn so that no pre-activation
lies within 1e-3 of the ReLU's kink, where the loss is not differentiable.
"""
import numpy as np
import pytest

from fastnet import kernels, reference

IMPLS = [pytest.param(reference, id="reference"), pytest.param(kernels, id="kernels")]
D, H1, H2, K, B = 6, 5, 4, 3, 4
STEP = 1e-6
KINK = 1e-3


def forward(impl, params, x, labels):
    """Mean loss, and every activation the backward pass needs."""
    W1, b1, W2, b2, W3, b3 = params
    Z1, A1 = np.empty((B, H1)), np.empty((B, H1))
    Z2, A2 = np.empty((B, H2)), np.empty((B, H2))
    Z3, probs, losses = np.empty((B, K)), np.empty((B, K)), np.empty(B)
    impl.linear_forward(Z1, x, W1, b1)
    impl.relu_forward(A1, Z1)
    impl.linear_forward(Z2, A1, W2, b2)
    impl.relu_forward(A2, Z2)
    impl.linear_forward(Z3, A2, W3, b3)
    impl.softmax_cross_entropy_forward(probs, losses, Z3, labels)
    return losses.mean(), dict(Z1=Z1, A1=A1, Z2=Z2, A2=A2, probs=probs)


def backward(impl, params, x, labels, acts):
    """Analytic gradients of the mean loss: dW1, db1, dW2, db2, dW3, db3, dx."""
    W1, b1, W2, b2, W3, b3 = params
    grads = [np.full_like(p, np.nan) for p in params]
    dW1, db1, dW2, db2, dW3, db3 = grads
    dZ3, dA2, dA1 = np.empty((B, K)), np.empty((B, H2)), np.empty((B, H1))
    impl.softmax_cross_entropy_backward(dZ3, acts["probs"], labels)
    impl.linear_backward(dA2, dW3, db3, dZ3, acts["A2"], W3)
    impl.relu_backward(dA2, dA2, acts["A2"])
    impl.linear_backward(dA1, dW2, db2, dA2, acts["A1"], W2)
    impl.relu_backward(dA1, dA1, acts["A1"])
    impl.linear_backward_params(dW1, db1, dA1, x)
    # The input's gradient too, through linear_backward on the first layer;
    # its parameter gradients must equal linear_backward_params'.
    dx, dW1_again, db1_again = np.empty((B, D)), np.empty((D, H1)), np.empty(H1)
    impl.linear_backward(dx, dW1_again, db1_again, dA1, x, W1)
    np.testing.assert_array_equal(dW1_again, dW1, err_msg="linear_backward vs linear_backward_params: dweight")
    np.testing.assert_array_equal(db1_again, db1, err_msg="linear_backward vs linear_backward_params: dbias")
    return grads + [dx]


def well_conditioned_net(rng):
    """Parameters and data with every pre-activation at least KINK from zero,
    at least one live and one dead unit in each hidden layer, and some exact
    zeros in the input (the kernels skip those)."""
    for _ in range(1000):
        params = [rng.normal(0, 0.8, (D, H1)), rng.normal(0, 0.3, H1),
                  rng.normal(0, 0.8, (H1, H2)), rng.normal(0, 0.3, H2),
                  rng.normal(0, 0.8, (H2, K)), rng.normal(0, 0.3, K)]
        x = rng.standard_normal((B, D))
        x[rng.random((B, D)) < 0.3] = 0.0
        labels = rng.integers(0, K, B)
        _, acts = forward(reference, params, x, labels)
        Z1, Z2 = acts["Z1"], acts["Z2"]
        if min(np.abs(Z1).min(), np.abs(Z2).min()) < KINK:
            continue
        if not ((Z1 > 0).any() and (Z1 < 0).any() and (Z2 > 0).any() and (Z2 < 0).any()):
            continue
        if (x == 0).any():
            return params, x, labels
    raise RuntimeError("no well-conditioned network in 1000 draws")


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_match_central_differences(rng, impl):
    params, x, labels = well_conditioned_net(rng)
    loss, acts = forward(impl, params, x, labels)
    analytic = backward(impl, params, x, labels, acts)
    names = ["dW1", "db1", "dW2", "db2", "dW3", "db3", "dx"]
    variables = params + [x]

    for name, var, grad in zip(names, variables, analytic):
        numeric = np.empty_like(var)
        for i in np.ndindex(var.shape):
            saved = var[i]
            var[i] = saved + STEP
            plus, _ = forward(impl, params, x, labels)
            var[i] = saved - STEP
            minus, _ = forward(impl, params, x, labels)
            var[i] = saved
            numeric[i] = (plus - minus) / (2 * STEP)
        # rtol 1e-6 for the truncation error h^2 * L''' ; atol for the
        # rounding error of the difference, about eps * L / h = 1e-10.
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9,
                                   err_msg=f"{impl.__name__}: {name} vs central differences")
        assert np.any(grad != 0), f"{name} is all zero: the check would prove nothing"

    # The ReLU masks really cut gradients: a unit dead for the whole batch
    # gets no gradient on its incoming weights.
    dead1 = ~(acts["Z1"] > 0).any(axis=0)
    assert np.all(analytic[0][:, dead1] == 0) and np.all(analytic[1][dead1] == 0)
    # A zero input gets no gradient on its outgoing weights.
    unused = ~x.any(axis=0)
    assert np.all(analytic[0][unused] == 0)


def test_kernel_and_reference_gradients_agree(rng):
    params, x, labels = well_conditioned_net(rng)
    loss_k, acts_k = forward(kernels, params, x, labels)
    loss_r, acts_r = forward(reference, params, x, labels)
    np.testing.assert_allclose(loss_k, loss_r, rtol=1e-13)
    for name, g_k, g_r in zip(["dW1", "db1", "dW2", "db2", "dW3", "db3", "dx"],
                              backward(kernels, params, x, labels, acts_k),
                              backward(reference, params, x, labels, acts_r)):
        np.testing.assert_allclose(g_k, g_r, rtol=1e-12, atol=1e-15, err_msg=name)


# --- the engine's whole passes, with dropout ---------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_engine_gradients_with_dropout_match_central_differences(rng, name):
    """engine.forward/backward of a 2-hidden-layer network with dropout 0.4, in
    float64. The mask is a function of (seed, step, layer, unit), so every
    forward pass of the check drops the same units: a fixed mask, as the
    central differences need."""
    from fastnet import engine
    from fastnet.model import MLP

    ops = engine.get(name)
    sizes = (D, H1, H2, K)
    p, seed, step = 0.4, 11, 5
    for _ in range(1000):
        model = MLP(sizes, dtype="float64", seed=int(rng.integers(1 << 30)))
        model.params[model.n_weights:] = rng.normal(0, 0.3, model.n_params - model.n_weights)
        x = rng.standard_normal((B, D))
        labels = rng.integers(0, K, B).astype(np.int32)
        acts, scratch = engine.allocate(sizes, B, np.float64, np.float64)
        params = engine.params_of(model)

        def loss():
            acts.x[:] = x
            acts.y[:] = labels
            ops.forward(params, acts, scratch, B, 1.0, p, seed, step)
            return acts.losses.mean()

        loss()
        # each hidden layer's sums before its ReLU (the blocked kernels do not store them),
        # laid out as acts.act: layer 2's from layer 1's output after the dropout
        z1 = x @ model.weights[0] + model.biases[0]
        z2 = engine.hidden(acts.act, params.sizes, 0, B, B) @ model.weights[1] + model.biases[1]
        pre = np.concatenate([z1.ravel(), z2.ravel()])
        dropped = acts.act == 0
        kept_on = (pre > 0) & ~dropped
        if np.abs(pre).min() >= KINK and kept_on.any() and ((pre > 0) & dropped).any():
            break
    else:
        raise RuntimeError("no well-conditioned network in 1000 draws")
    grads = engine.Params(np.full(model.n_params, np.nan), params.sizes)
    ops.backward(grads, params, acts, scratch, B, 1.0, p)
    numeric = np.empty(model.n_params)
    for i in range(model.n_params):
        saved = model.params[i]
        model.params[i] = saved + STEP
        plus = loss()
        model.params[i] = saved - STEP
        minus = loss()
        model.params[i] = saved
        numeric[i] = (plus - minus) / (2 * STEP)
    np.testing.assert_allclose(grads.flat, numeric, rtol=1e-6, atol=1e-9,
                               err_msg=f"{name}: engine gradients with dropout vs central differences")
    # the check means something: a unit that is on but dropped passes no gradient back
    assert np.any(grads.flat != 0)
