"""A tiny network worked out by hand, and the reference's textbook algorithm.

The hand-worked example uses weights that are small dyadic fractions, so
every number but the losses is exact in float32 and float64; both the
kernels and the reference must reproduce it.
"""
import math

import numpy as np
import pytest

from fastnet import kernels, reference

IMPLS = [pytest.param(reference, id="reference"), pytest.param(kernels, id="kernels")]
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_tiny_network_by_hand(impl, dtype):
    # D=2 inputs, H=2 hidden units, K=2 classes, one sample of class 1.
    # Weights are (D, H): inputs by outputs, so Z = x @ W + b.
    x = np.array([[1.0, 2.0]], dtype=dtype)
    y = np.array([1])
    W1 = np.array([[0.5, -1.0],
                   [0.25, 0.5]], dtype=dtype)
    b1 = np.array([0.0, -0.5], dtype=dtype)
    W2 = np.array([[1.0, -1.0],
                   [2.0, 3.0]], dtype=dtype)
    b2 = np.array([-1.0, 1.0], dtype=dtype)
    nan = lambda *shape: np.full(shape, np.nan, dtype=dtype)  # noqa: E731
    exact = dict(rtol=0, atol=0)
    close = dict(rtol=1e-6 if dtype == np.float32 else 1e-14, atol=0)

    # Forward.
    # Z1[0] = 1*0.5  + 2*0.25 + 0    =  1.0
    # Z1[1] = 1*-1.0 + 2*0.5  - 0.5  = -0.5
    Z1 = nan(1, 2)
    impl.linear_forward(Z1, x, W1, b1)
    np.testing.assert_allclose(Z1, [[1.0, -0.5]], **exact, err_msg="Z1")
    # A1 = relu(Z1) = [1.0, 0.0]: unit 1 is dead.
    A1 = nan(1, 2)
    impl.relu_forward(A1, Z1)
    np.testing.assert_allclose(A1, [[1.0, 0.0]], **exact, err_msg="A1")
    # Z2[0] = 1.0*1.0  + 0.0*2.0 - 1.0 = 0.0
    # Z2[1] = 1.0*-1.0 + 0.0*3.0 + 1.0 = 0.0
    Z2 = nan(1, 2)
    impl.linear_forward(Z2, A1, W2, b2)
    np.testing.assert_allclose(Z2, [[0.0, 0.0]], **exact, err_msg="Z2")
    # softmax([0, 0]) = [1/2, 1/2]; loss = -log(1/2) = log 2 = 0.6931471805599453.
    probs, losses = nan(1, 2), nan(1)
    impl.softmax_cross_entropy_forward(probs, losses, Z2, y)
    np.testing.assert_allclose(probs, [[0.5, 0.5]], **exact, err_msg="probs")
    np.testing.assert_allclose(losses, [0.6931471805599453], **close, err_msg="loss")

    # Backward.
    # dZ2 = (probs - onehot(1)) / B = [0.5 - 0, 0.5 - 1] / 1 = [0.5, -0.5]
    dZ2 = nan(1, 2)
    impl.softmax_cross_entropy_backward(dZ2, probs, y)
    np.testing.assert_allclose(dZ2, [[0.5, -0.5]], **exact, err_msg="dZ2")
    # dW2[h, k] = A1[h] * dZ2[k] = [[1*0.5, 1*-0.5], [0*0.5, 0*-0.5]]
    # db2 = dZ2 = [0.5, -0.5]
    # dA1[h] = sum_k dZ2[k] * W2[h, k]: h=0: 0.5*1 + -0.5*-1 = 1.0
    #                                   h=1: 0.5*2 + -0.5*3  = -0.5
    dA1, dW2, db2 = nan(1, 2), nan(2, 2), nan(2)
    impl.linear_backward(dA1, dW2, db2, dZ2, A1, W2)
    np.testing.assert_allclose(dW2, [[0.5, -0.5], [0.0, 0.0]], **exact, err_msg="dW2")
    np.testing.assert_allclose(db2, [0.5, -0.5], **exact, err_msg="db2")
    np.testing.assert_allclose(dA1, [[1.0, -0.5]], **exact, err_msg="dA1")
    # dZ1 = dA1 * (A1 > 0) = [1.0, 0.0]: the dead unit passes nothing back.
    dZ1 = nan(1, 2)
    impl.relu_backward(dZ1, dA1, A1)
    np.testing.assert_allclose(dZ1, [[1.0, 0.0]], **exact, err_msg="dZ1")
    # dW1[d, h] = x[d] * dZ1[h] = [[1*1, 1*0], [2*1, 2*0]]; db1 = dZ1 = [1, 0]
    # dx[d] = sum_h dZ1[h] * W1[d, h]: d=0: 1*0.5 = 0.5; d=1: 1*0.25 = 0.25
    dx, dW1, db1 = nan(1, 2), nan(2, 2), nan(2)
    impl.linear_backward(dx, dW1, db1, dZ1, x, W1)
    np.testing.assert_allclose(dW1, [[1.0, 0.0], [2.0, 0.0]], **exact, err_msg="dW1")
    np.testing.assert_allclose(db1, [1.0, 0.0], **exact, err_msg="db1")
    np.testing.assert_allclose(dx, [[0.5, 0.25]], **exact, err_msg="dx")

    # One SGD step, lr = 1/8, no weight decay: p -= dp / 8.
    # W1 = [[0.5 - 1/8, -1 - 0], [0.25 - 2/8, 0.5 - 0]] = [[0.375, -1], [0, 0.5]]
    # b1 = [0 - 1/8, -0.5 - 0]                        = [-0.125, -0.5]
    # W2 = [[1 - 0.5/8, -1 + 0.5/8], [2, 3]]           = [[0.9375, -0.9375], [2, 3]]
    # b2 = [-1 - 0.5/8, 1 + 0.5/8]                     = [-1.0625, 1.0625]
    for p, g in [(W1, dW1), (b1, db1), (W2, dW2), (b2, db2)]:
        impl.sgd_update(p.reshape(-1), g.reshape(-1), 0.125, 0.0)
    np.testing.assert_allclose(W1, [[0.375, -1.0], [0.0, 0.5]], **exact, err_msg="W1 after step")
    np.testing.assert_allclose(b1, [-0.125, -0.5], **exact, err_msg="b1 after step")
    np.testing.assert_allclose(W2, [[0.9375, -0.9375], [2.0, 3.0]], **exact, err_msg="W2 after step")
    np.testing.assert_allclose(b2, [-1.0625, 1.0625], **exact, err_msg="b2 after step")

    # Forward again with the new weights: the loss has gone down.
    # Z1 = [1*0.375 + 2*0 - 0.125, 1*-1 + 2*0.5 - 0.5] = [0.25, -0.5];  A1 = [0.25, 0]
    # Z2 = [0.25*0.9375 - 1.0625, 0.25*-0.9375 + 1.0625] = [-0.828125, 0.828125]
    # loss = log(e^-0.828125 + e^0.828125) - 0.828125 = log(1 + e^-1.65625)
    #      = log(1.19085333986431632) = 0.17467014245854176 < log 2
    # probs[0] = 1 / (1 + e^1.65625) = 0.16026603232776070
    impl.linear_forward(Z1, x, W1, b1)
    impl.relu_forward(A1, Z1)
    impl.linear_forward(Z2, A1, W2, b2)
    impl.softmax_cross_entropy_forward(probs, losses, Z2, y)
    np.testing.assert_allclose(Z2, [[-0.828125, 0.828125]], **exact, err_msg="Z2 after step")
    np.testing.assert_allclose(losses, [0.17467014245854176], **close, err_msg="loss after step")
    np.testing.assert_allclose(probs, [[0.16026603232776070, 0.83973396767223930]], **close,
                               err_msg="probs after step")


@pytest.mark.parametrize("impl", IMPLS)
def test_tiny_batch_by_hand_averages_over_samples(impl):
    # Two samples with logits [0, 0] and [log 3, 0], labels 0 and 1.
    # probs: [1/2, 1/2] and [3/4, 1/4]; losses: log 2 and log 4.
    # dlogits = (probs - onehot) / B: [[-1/2, 1/2], [3/4, -3/4]] / 2
    #         = [[-0.25, 0.25], [0.375, -0.375]]
    logits = np.array([[0.0, 0.0], [math.log(3), 0.0]])
    labels = np.array([0, 1])
    probs, losses, dlogits = np.empty((2, 2)), np.empty(2), np.empty((2, 2))
    impl.softmax_cross_entropy_forward(probs, losses, logits, labels)
    impl.softmax_cross_entropy_backward(dlogits, probs, labels)
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.75, 0.25]], rtol=1e-15)
    np.testing.assert_allclose(losses, [math.log(2), math.log(4)], rtol=1e-15)
    np.testing.assert_allclose(dlogits, [[-0.25, 0.25], [0.375, -0.375]], rtol=1e-15)


# --- the textbook algorithm against the layer functions --------------------------


def test_classic_gradient_descent_matches_the_layer_functions(rng):
    """classic_gradient_descent (samples as columns, W X + b) takes the same
    steps as the layer functions (samples as rows, X W + b)."""
    D, m, m_test, hidden, iterations, lr, seed = 6, 20, 9, 5, 20, 0.3, 7
    X = rng.random((D, m))
    X[rng.random((D, m)) < 0.5] = 0.0
    labels = rng.integers(0, 10, m)
    X_test = rng.random((D, m_test))
    labels_test = rng.integers(0, 10, m_test)
    seen = []

    params, accuracy = reference.classic_gradient_descent(
        X, labels, X_test, labels_test, hidden=hidden, iterations=iterations, lr=lr,
        init="uniform", seed=seed, callback=lambda it, acc: seen.append((it, acc)))

    # The same start: the draws documented for init="uniform", transposed to (D, H).
    init = np.random.default_rng(seed)
    W1 = init.uniform(-0.5, 0.5, (hidden, D)).T.copy()
    b1 = init.uniform(-0.5, 0.5, (hidden, 1)).ravel()
    W2 = init.uniform(-0.5, 0.5, (10, hidden)).T.copy()
    b2 = init.uniform(-0.5, 0.5, (10, 1)).ravel()
    x = X.T.copy()
    Z1, A1, Z2 = np.empty((m, hidden)), np.empty((m, hidden)), np.empty((m, 10))
    probs, losses, dZ2, dA1 = np.empty((m, 10)), np.empty(m), np.empty((m, 10)), np.empty((m, hidden))
    dW1, db1, dW2, db2 = np.empty_like(W1), np.empty_like(b1), np.empty_like(W2), np.empty_like(b2)
    accuracies = []
    for _ in range(iterations):
        reference.linear_forward(Z1, x, W1, b1)
        reference.relu_forward(A1, Z1)
        reference.linear_forward(Z2, A1, W2, b2)
        reference.softmax_cross_entropy_forward(probs, losses, Z2, labels)
        accuracies.append(np.mean(probs.argmax(axis=1) == labels))
        reference.softmax_cross_entropy_backward(dZ2, probs, labels)
        reference.linear_backward(dA1, dW2, db2, dZ2, A1, W2)
        reference.relu_backward(dA1, dA1, A1)
        reference.linear_backward_params(dW1, db1, dA1, x)
        for p, g in [(W1, dW1), (b1, db1), (W2, dW2), (b2, db2)]:
            reference.sgd_update(p.reshape(-1), g.reshape(-1), lr, 0.0)

    for name, got, want in [("W1", params["W1"], W1.T), ("b1", params["b1"].ravel(), b1),
                            ("W2", params["W2"], W2.T), ("b2", params["b2"].ravel(), b2)]:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=name)
    # The callback sees the training accuracy of the forward pass of iterations 10 and 20.
    assert [it for it, _ in seen] == [10, 20]
    np.testing.assert_allclose([acc for _, acc in seen], [accuracies[9], accuracies[19]])
    Zt = np.empty((m_test, hidden))
    reference.linear_forward(Zt, X_test.T.copy(), W1, b1)
    reference.relu_forward(Zt, Zt)
    logits_test = Zt @ W2 + b2
    assert accuracy == np.mean(logits_test.argmax(axis=1) == labels_test)


def test_classic_gradient_descent_rejects_unknown_init(rng):
    X = rng.random((4, 3))
    with pytest.raises(ValueError, match="init"):
        reference.classic_gradient_descent(X, np.array([0, 1, 2]), X, np.array([0, 1, 2]),
                                           init="zeros", iterations=1)
