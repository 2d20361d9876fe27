"""The same math as :mod:`fastnet.kernels`, in plain NumPy.

This module is the readable statement of what the kernels compute. Every
kernel has a twin here with the same name, the same arguments in the same
order, and the same contract (it fills its output arrays in place and
returns ``None``), so the tests can compare each pair and the training loop
can run on either (``fastnet-train --engine numpy``).

A batch holds one sample per row. With ``X`` of shape ``(B, D)`` and a weight
of shape ``(D, H)`` (inputs by outputs), a layer computes ``Z = X W + b``:
the transpose of the textbook ``Z = W X + b`` with samples as columns,
which :func:`classic_gradient_descent` writes out literally.
"""
import numpy as np


# --- the fully connected layer -------------------------------------------------


def linear_forward(out, inp, weight, bias):
    """``out = inp @ weight + bias``: each output unit is a weighted sum of the inputs plus a bias."""
    # inp (B, D), weight (D, H), bias (H,), out (B, H)
    np.matmul(inp, weight, out=out)
    out += bias


def linear_backward_params(dweight, dbias, dout, inp):
    """The parameter gradients of a linear layer, given ``dout = dLoss/dout``.

    Because ``out[b, h] = sum_d inp[b, d] * weight[d, h] + bias[h]``, each
    weight's gradient sums ``inp[b, d] * dout[b, h]`` over the batch, and each
    bias's gradient sums ``dout[b, h]``.
    """
    # dout (B, H), inp (B, D), dweight (D, H), dbias (H,)
    np.matmul(inp.T, dout, out=dweight)
    np.sum(dout, axis=0, out=dbias)


def linear_backward_input(dinp, dout, weight):
    """``dinp = dout @ weight.T``: each input's gradient sums the output gradients
    it fed, weighted by the weights it fed them through."""
    # dout (B, H), weight (D, H), dinp (B, D)
    np.matmul(dout, weight.T, out=dinp)


def linear_backward(dinp, dweight, dbias, dout, inp, weight):
    """All three gradients of a linear layer."""
    # dout (B, H), inp (B, D), weight (D, H), dinp (B, D), dweight (D, H), dbias (H,)
    linear_backward_params(dweight, dbias, dout, inp)
    linear_backward_input(dinp, dout, weight)


def blocked_linear_forward(out, pack, inp, weight, bias, scale):
    """:func:`linear_forward` of ``scale * inp``: packing and register blocking are the
    kernel's business, and ``pack`` is its scratch space (left untouched here)."""
    # inp (B, D) any numeric dtype, weight (D, H), bias (H,), out (B, H), pack (P,)
    linear_forward(out, inp.astype(weight.dtype) * weight.dtype.type(scale), weight, bias)


def blocked_linear_backward_input(dinp, pack, dout, weight):
    """:func:`linear_backward_input`; ``pack`` is the kernel's scratch space."""
    # dout (B, H), weight (D, H), dinp (B, D), pack (P,)
    linear_backward_input(dinp, dout, weight)


def blocked_linear_relu_forward(act, pack, inp, weight, bias, scale):
    """:func:`blocked_linear_forward`, then :func:`relu_forward` on its output."""
    # inp (B, D) any numeric dtype, weight (D, H), bias (H,), act (B, H), pack (P,)
    blocked_linear_forward(act, pack, inp, weight, bias, scale)
    relu_forward(act, act)


def blocked_linear_backward_input_relu(dpre, pack, dout, weight, inp):
    """:func:`blocked_linear_backward_input`, then :func:`relu_backward` through the ReLU
    whose output is ``inp``: the gradient with respect to that ReLU's input."""
    # dout (B, H), weight (D, H), inp (B, D), dpre (B, D), pack (P,)
    blocked_linear_backward_input(dpre, pack, dout, weight)
    relu_backward(dpre, dpre, inp)


def blocked_linear_backward_params(dweight, dbias, pack, dout, inp, scale):
    """:func:`linear_backward_params` of ``scale * inp``; ``pack`` is the kernel's scratch space."""
    # dout (B, H), inp (B, D) any numeric dtype, dweight (D, H), dbias (H,), pack (P,)
    linear_backward_params(dweight, dbias, dout, inp.astype(dweight.dtype) * dweight.dtype.type(scale))


def sparse_linear_forward(out, index, inp, weight, bias, scale):
    """:func:`linear_forward` of ``scale * inp``: skipping zero inputs is the kernel's
    business, and ``index`` is its scratch space (left untouched here)."""
    # inp (B, D) any numeric dtype, weight (D, H), bias (H,), out (B, H), index (S, D)
    linear_forward(out, inp.astype(weight.dtype) * weight.dtype.type(scale), weight, bias)


def sparse_linear_backward_params(dweight, dbias, index, dout, inp, scale):
    """:func:`linear_backward_params` of ``scale * inp``; ``index`` is the kernel's scratch space."""
    # dout (B, H), inp (B, D) any numeric dtype, dweight (D, H), dbias (H,), index (S, >=min(B, 256))
    linear_backward_params(dweight, dbias, dout, inp.astype(dweight.dtype) * dweight.dtype.type(scale))


# --- the ReLU activation --------------------------------------------------------


def relu_forward(out, inp):
    """``out = max(inp, 0)``, element by element (NaN stays NaN)."""
    # inp (B, H), out (B, H)
    np.maximum(inp, 0, out=out)


def relu_backward(dinp, dout, out):
    """``dinp = dout * relu'(z)``, where ``relu'(z)`` is 1 where the output is positive and 0 elsewhere
    (written as a selection, so a unit that is off passes back exactly 0)."""
    # dout (B, H), out (B, H), dinp (B, H)
    np.copyto(dinp, np.where(out > 0, dout, 0))


# --- inverted dropout -----------------------------------------------------------
#
# The mask is a pure function of (key, b, h, H): splitmix64 used as a counter-based
# generator. All arithmetic is on uint64 arrays, which wrap modulo 2**64 silently
# (NumPy warns about overflow only for scalars, hence the 1-element arrays).

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1


def _mix64(z):
    """splitmix64's finalizer on a uint64 array: a bijection that scatters every input bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uint64(n):
    """The integer ``n`` (any sign) as a 1-element uint64 array, modulo 2**64."""
    return np.array([int(n) & _MASK64], dtype=np.uint64)


def dropout_key(seed, step, layer):
    """The key of one layer's dropout mask at one step: ``seed``, ``step`` and
    ``layer`` each folded in by xor, then scrambled by splitmix64's finalizer.
    Returned as a Python int in int64's range (the 64 bits read as two's complement)."""
    z = _mix64(_uint64(seed) + _GOLDEN)
    z = _mix64(z ^ (_uint64(step) + _GOLDEN))
    z = _mix64(z ^ (_uint64(layer) + _GOLDEN))
    return int(z.view(np.int64)[0])


def dropout_forward(act, key, p):
    """Inverted dropout in place: unit ``n = b*H + h`` is dropped (set to 0) when
    ``u = (mix(key + (n + 1) * G) >> 11) / 2**53``, a uniform in [0, 1), is below ``p``;
    the kept units are multiplied by ``1/(1-p)``, so the layer's expected output is unchanged."""
    # act (B, H)
    if p == 0:
        return
    n = np.arange(1, act.size + 1, dtype=np.uint64)
    u = (_mix64(_uint64(key) + n * _GOLDEN) >> np.uint64(11)).astype(np.float64) / 2.0**53
    keep = (u >= p).reshape(act.shape)
    scale = act.dtype.type(1.0 / (1.0 - float(p)))
    np.copyto(act, np.where(keep, act * scale, 0))


def dropout_backward(dinp, dout, out, p):
    """The gradient through dropout and the ReLU before it: ``dinp = dout / (1-p)``
    where ``out > 0`` (the unit was kept and its ReLU on), 0 elsewhere."""
    # dout (B, H), out (B, H), dinp (B, H)
    scale = dinp.dtype.type(1.0 / (1.0 - float(p)))
    np.copyto(dinp, np.where(out > 0, dout * scale, 0))


# --- softmax and cross-entropy --------------------------------------------------


def softmax_cross_entropy_forward(probs, losses, logits, labels):
    """``probs = softmax(logits)`` row by row, and ``losses[b] = -log probs[b, labels[b]]``.

    Subtracting each row's maximum first changes nothing mathematically but
    keeps ``exp`` from overflowing.
    """
    # logits (B, K), labels (B,), probs (B, K), losses (B,)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1)
    np.divide(exp, total[:, None], out=probs)
    rows = np.arange(len(labels))
    losses[:] = np.log(total) - shifted[rows, labels]


def softmax_cross_entropy_backward(dlogits, probs, labels):
    """The gradient of the *mean* loss over the batch: ``(probs - Y) / B``, with ``Y`` one-hot labels."""
    # probs (B, K), labels (B,), dlogits (B, K)
    B = probs.shape[0]
    onehot = np.zeros_like(probs)
    onehot[np.arange(B), labels] = 1
    np.divide(probs - onehot, probs.dtype.type(B), out=dlogits)


# --- the output layer: linear, softmax and cross-entropy in one ------------------


def classifier_forward(probs, losses, scratch, inp, weight, bias, labels, scale):
    """:func:`sparse_linear_forward` into logits, then :func:`softmax_cross_entropy_forward`;
    ``scratch`` is the kernel's (left untouched here)."""
    # inp (B, D) any numeric dtype, weight (D, K), bias (K,), labels (B,), probs (B, K), losses (B,)
    # scratch (S + 1, K, D + 1)
    logits = inp.astype(weight.dtype) * weight.dtype.type(scale) @ weight + bias
    softmax_cross_entropy_forward(probs, losses, logits, labels)


def classifier_backward(dinp, dweight, dbias, scratch, probs, inp, weight, labels, scale):
    """:func:`softmax_cross_entropy_backward` into ``dlogits``, then the linear layer's
    gradients (the input's only when ``dinp`` has rows); ``scratch`` is the kernel's."""
    # probs (B, K), inp (B, D) any numeric dtype, weight (D, K), labels (B,)
    # dinp (B, D) or (0, D), dweight (D, K), dbias (K,), scratch (S + 1, K, D + 1)
    dlogits = np.empty_like(probs)
    softmax_cross_entropy_backward(dlogits, probs, labels)
    sparse_linear_backward_params(dweight, dbias, None, dlogits, inp, scale)
    if dinp.shape[0]:
        linear_backward_input(dinp, dlogits, weight)


# --- update rules ---------------------------------------------------------------


def sgd_update(param, grad, lr, weight_decay):
    """``param <- param - lr * (grad + weight_decay * param)``."""
    # param (P,), grad (P,)
    t = param.dtype.type
    param -= t(lr) * (grad + t(weight_decay) * param)


def momentum_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """Momentum: ``velocity <- momentum * velocity + g``; step along ``velocity``,
    or for Nesterov along ``g + momentum * velocity``."""
    # param (P,), velocity (P,), grad (P,)
    t = param.dtype.type
    g = grad + t(weight_decay) * param
    velocity *= t(momentum)
    velocity += g
    step = g + t(momentum) * velocity if nesterov else velocity
    param -= t(lr) * step


def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, step):
    """Adam: running means of the gradient (``m``) and of its square (``v``),
    corrected for their start at zero, set the step of each parameter."""
    # param (P,), m (P,), v (P,), grad (P,)
    t = param.dtype.type
    g = grad + t(weight_decay) * param
    m *= t(beta1)
    m += t(1 - beta1) * g
    v *= t(beta2)
    v += t(1 - beta2) * g * g
    m_hat = m / t(1 - beta1**step)
    v_hat = v / t(1 - beta2**step)
    param -= t(lr) * m_hat / (np.sqrt(v_hat) + t(eps))


# --- batches --------------------------------------------------------------------


def gather_batch(x, y, images, labels, order, start, scale):
    """Copy samples ``order[start:start+B]`` into ``x`` (converted to ``x``'s dtype, times ``scale``) and ``y``."""
    # images (N, D), labels (N,), order (N,), x (B, D), y (B,)
    rows = order[start:start + x.shape[0]]
    np.multiply(images[rows], x.dtype.type(scale), out=x)
    y[:] = labels[rows]


def standardize_batch(x, mean, inv_std):
    """Standardize each feature in place: ``x = (x - mean) * inv_std``, with ``inv_std = 1 / std``."""
    # x (B, D), mean (D,), inv_std (D,)
    np.subtract(x, mean, out=x)
    np.multiply(x, inv_std, out=x)


def augment_batch(x, y, images, labels, order, start, width, shift, flip, key):
    """Copy samples ``order[start:start+B]`` into ``x`` (as stored) and ``y``, each image
    moved ``dy`` rows down and ``dx`` columns right, pixels from outside it 0, and
    with ``flip`` mirrored left to right when a coin says so.

    The sample at position ``p`` of the epoch draws ``z = mix(key + (p + 1) * G)``;
    ``dx`` and ``dy`` are its low and high 32 bits scaled to ``-shift..shift``, and
    the coin is the lowest bit of ``mix(z)``."""
    # images (N, D), labels (N,), order (N,), x (B, D), y (B,); D = rows * width
    B, D = x.shape
    R, W = D // width, width
    samples = order[start:start + B]
    y[:] = labels[samples]
    position = np.arange(start + 1, start + B + 1, dtype=np.uint64)
    z = _mix64(_uint64(key) + position * _GOLDEN)
    n = np.uint64(2 * shift + 1)
    dx = ((z & np.uint64(0xFFFFFFFF)) * n >> np.uint64(32)).astype(np.int64) - shift
    dy = ((z >> np.uint64(32)) * n >> np.uint64(32)).astype(np.int64) - shift
    mirrored = flip & ((_mix64(z) & np.uint64(1)) == 1)
    for b, j in enumerate(samples):
        image = images[j].reshape(R, W)
        rows = np.arange(R) - dy[b]                                      # the source row of each row
        cols = (np.arange(W)[::-1] if mirrored[b] else np.arange(W)) - dx[b]
        inside = ((rows >= 0) & (rows < R))[:, None] & ((cols >= 0) & (cols < W))[None, :]
        moved = image[np.clip(rows, 0, R - 1)][:, np.clip(cols, 0, W - 1)]
        x[b] = np.where(inside, moved, 0).reshape(D)


# --- the classic full-batch algorithm -------------------------------------------


def classic_gradient_descent(X, labels, X_test, labels_test, *, hidden=10, iterations=500,
                             lr=0.1, init="uniform", seed=0, callback=None):
    """Train a 784-``hidden``-10 network exactly as the textbook formulas state it.

    Samples are columns: ``X`` is ``(D, m)`` with pixels in ``[0, 1]``. Every
    iteration uses the whole training set::

        Z1 = W1 X + b1      A1 = relu(Z1)      Z2 = W2 A1 + b2      A2 = softmax(Z2)
        dZ2 = A2 - Y        dW2 = dZ2 A1^T / m                     db2 = sum(dZ2) / m
        dZ1 = W2^T dZ2 * relu'(Z1)   dW1 = dZ1 X^T / m             db1 = sum(dZ1) / m
        W <- W - lr * dW    b <- b - lr * db

    ``init="uniform"`` draws every weight and bias from U(-0.5, 0.5);
    ``init="normal"`` draws weights from N(0, 0.01^2) and starts biases at 0. Returns ``(params, test_accuracy)`` with ``params`` a dict of
    ``W1, b1, W2, b2``. ``callback(iteration, accuracy_on_train)`` is called
    every 10 iterations when given.
    """
    rng = np.random.default_rng(seed)
    D, m = X.shape
    K = 10
    if init == "uniform":
        W1 = rng.uniform(-0.5, 0.5, (hidden, D))
        b1 = rng.uniform(-0.5, 0.5, (hidden, 1))
        W2 = rng.uniform(-0.5, 0.5, (K, hidden))
        b2 = rng.uniform(-0.5, 0.5, (K, 1))
    elif init == "normal":
        W1 = rng.normal(0, 0.01, (hidden, D))
        b1 = np.zeros((hidden, 1))
        W2 = rng.normal(0, 0.01, (K, hidden))
        b2 = np.zeros((K, 1))
    else:
        raise ValueError(f"init: expected 'uniform' or 'normal', got {init!r}")
    Y = np.zeros((K, m))
    Y[labels, np.arange(m)] = 1

    def forward(X):
        Z1 = W1 @ X + b1
        A1 = np.maximum(Z1, 0)
        Z2 = W2 @ A1 + b2
        E = np.exp(Z2 - Z2.max(axis=0))
        return Z1, A1, E / E.sum(axis=0)

    for it in range(1, iterations + 1):
        Z1, A1, A2 = forward(X)
        dZ2 = A2 - Y
        dW2 = dZ2 @ A1.T / m
        db2 = dZ2.sum(axis=1, keepdims=True) / m
        dZ1 = (W2.T @ dZ2) * (Z1 > 0)
        dW1 = dZ1 @ X.T / m
        db1 = dZ1.sum(axis=1, keepdims=True) / m
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2
        if callback is not None and it % 10 == 0:
            callback(it, float(np.mean(A2.argmax(axis=0) == labels)))

    test_accuracy = float(np.mean(forward(X_test)[2].argmax(axis=0) == labels_test))
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, test_accuracy
