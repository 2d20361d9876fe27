"""The engine: one loop source, run compiled (numba) or as Python over the reference (numpy);
prediction (:func:`fastnet.engine.predict_proba`) through its forward pass.

Prediction is checked against a NumPy forward pass written out here from
``named_parameters()``, and a backward pass against NumPy backpropagation.
"""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastnet import engine, kernels, reference
from fastnet.model import MLP

ENGINES = ["numba", "numpy"]
DTYPES = ["float32", "float64"]


def test_get_rejects_unknown_names():
    with pytest.raises(ValueError) as info:
        engine.get("torch")
    message = str(info.value)
    assert "'torch'" in message
    for name in engine.ENGINES:
        assert name in message, message


@pytest.mark.parametrize("name", ENGINES)
def test_get_returns_a_named_engine_with_every_entry(name):
    ops = engine.get(name)
    assert ops.name == name
    for entry in ("load_batch", "forward", "backward", "update", "train_batches", "gather_batch", "count_correct"):
        assert callable(getattr(ops, entry)), entry
    assert engine.get(name) is ops  # built once


def test_the_engines_share_one_loop_source():
    numba_ops, numpy_ops = engine.get("numba"), engine.get("numpy")
    for fn in (engine.forward, engine.backward, engine.update, engine.train_batches):
        compiled, python = getattr(numba_ops, fn.__name__), getattr(numpy_ops, fn.__name__)
        assert python.__code__ is compiled.py_func.__code__ is fn.__code__
        # ... the numpy one runs the reference kernels, the numba one the compiled ones.
        for kernel in ("sparse_linear_forward", "sparse_linear_backward_params", "blocked_linear_relu_forward",
                       "blocked_linear_backward_input", "blocked_linear_backward_input_relu",
                       "blocked_linear_backward_params", "classifier_forward",
                       "classifier_backward", "relu_backward", "adam_update"):
            assert python.__globals__[kernel] is getattr(reference, kernel), kernel
            assert compiled.py_func.__globals__[kernel] is getattr(kernels, kernel), kernel
    assert numpy_ops.gather_batch is reference.gather_batch
    assert numba_ops.gather_batch is kernels.gather_batch


def test_the_passes_call_the_sparse_and_the_blocked_linear_kernels_only():
    """The linear kernels the passes name: sparse (zero pixels skipped) or register-blocked
    for the first layer, as the data decide (``Scratch.blocked_first``), register-blocked
    for the hidden layers past it, with the ReLU taken in the same pass (the input gradient
    apart from it under dropout); none of the plain ones."""
    called = set(engine.forward.__code__.co_names) | set(engine.backward.__code__.co_names)
    linear = {name for name in kernels.__all__ if "linear" in name}
    assert called & linear == {"sparse_linear_forward", "sparse_linear_backward_params", "blocked_linear_relu_forward",
                               "blocked_linear_backward_input", "blocked_linear_backward_input_relu",
                               "blocked_linear_backward_params"}


# A fresh process (nothing compiled in it yet) trains networks of 1, 3 and 5
# hidden layers with every update rule, then lists what the numba engine compiled.
_ONE_LOOP = textwrap.dedent("""
    import json
    import numpy as np
    from fastnet import engine
    from fastnet.config import OPTIMIZERS, TrainConfig
    from fastnet.train import Trainer, evaluate
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 64)).astype(np.uint8)
    labels = (np.arange(96) % 10).astype(np.uint8)
    runs = []
    for hidden in [(8,), (9, 7, 6), (9, 8, 7, 6, 5)]:
        for optimizer in OPTIMIZERS:
            config = TrainConfig(hidden=hidden, optimizer=optimizer, dtype="float32", engine="numba",
                                 epochs=1, batch_size=32, lr=0.01, val_split=0, threads=None)
            trainer = Trainer(config, images, labels)
            trainer.warmup()
            result = trainer.run()
            accuracy = evaluate(result.model, images, labels).accuracy
            runs.append([len(trainer.model.sizes) - 2, optimizer, result.history[-1].loss, accuracy, trainer.step])
    ops = engine.get("numba")
    print(json.dumps({"runs": runs,
                      "train_batches": [str(s) for s in ops.train_batches.signatures],
                      "forward": [str(s) for s in ops.forward.signatures]}))
""")


def test_every_depth_and_update_rule_share_one_compiled_loop():
    """The bundles make the argument types the same for any depth and update rule:
    one signature of train_batches (and of forward) serves every network of a dtype."""
    done = subprocess.run([sys.executable, "-c", _ONE_LOOP], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    runs = report["runs"]
    assert [(depth, optimizer) for depth, optimizer, *_ in runs] == \
        [(depth, optimizer) for depth in (1, 3, 5) for optimizer in engine.OPTIMIZERS]
    for depth, optimizer, loss, accuracy, steps in runs:
        assert np.isfinite(loss), (depth, optimizer)
        assert 0 <= accuracy <= 1, (depth, optimizer)
        assert steps == 3, (depth, optimizer)  # 96 samples in batches of 32: three steps each
    assert len(report["train_batches"]) == 1, report["train_batches"]
    assert len(report["forward"]) == 1, report["forward"]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [1, 7, 64])
def test_count_correct_matches_argmax(rng, name, dtype, B):
    K = 10
    probs = rng.random((B, K)).astype(dtype)
    labels = rng.integers(0, K, B).astype(np.int32)
    # Make some rows right on purpose, and one row a tie (argmax takes the first).
    right = rng.random(B) < 0.5
    probs[right, labels[right]] = 2.0
    probs[0, :] = 1.0
    expected = int(np.count_nonzero(probs.argmax(axis=1) == labels))
    assert engine.get(name).count_correct(probs, labels) == expected


# --- the bundles --------------------------------------------------------------------


@pytest.mark.parametrize("blocked_first", [False, True])
@pytest.mark.parametrize("sizes", [(784, 10), (784, 12, 10), (784, 9, 5, 10)])
def test_allocate_sizes_every_buffer(sizes, blocked_first):
    B = 8
    acts, scratch = engine.allocate(sizes, B, np.float32, engine.input_dtype(sizes, np.uint8, np.float32),
                                    blocked_first)
    widths = sizes[1:-1]
    # The batch as stored (uint8) where a hidden layer reads it, in the params' dtype otherwise.
    assert acts.x.shape == (B, sizes[0])
    assert acts.x.dtype == (np.uint8 if widths else np.float32)
    assert acts.y.shape == (B,)
    # act holds every hidden layer's output; pre only the first's sums (the sparse first layer's,
    # which the ReLU reads; the blocked kernels take the ReLU as they write).
    assert acts.act.shape == (B * sum(widths),) and acts.act.dtype == np.float32
    assert acts.pre.shape == (B * widths[0] if widths else 0,) and acts.pre.dtype == np.float32
    for buffer in (acts.dpre, acts.dact):
        assert buffer.shape == (B * max(widths, default=0),) and buffer.dtype == np.float32
    assert acts.probs.shape == (B, sizes[-1]) and acts.losses.shape == (B,)
    assert scratch.inputs.shape == (engine.SCRATCH_PARTS, max(sizes[:-1])) and scratch.inputs.dtype == np.int32
    assert scratch.samples.shape == (engine.SCRATCH_PARTS, B) and scratch.samples.dtype == np.int32
    assert scratch.classifier.shape == (engine.SCRATCH_PARTS + 1, sizes[-1], sizes[-2] + 1)
    # The register-blocked kernels' pack: enough for each product of the hidden layers past the
    # first, and of the first one where it takes them (its input needs no gradient, but the
    # engine sizes the pack alike for every blocked layer); empty without such a layer.
    assert scratch.blocked_first == (blocked_first and len(sizes) > 2)
    blocked = list(zip(sizes[:-2], sizes[1:-1]))[0 if scratch.blocked_first else 1:]
    need = [kernels.pack_size(*shape) for D, H in blocked for shape in ((B, D, H), (B, H, D), (D, B, H))]
    assert scratch.pack.ndim == 1 and scratch.pack.dtype == np.float32
    assert scratch.pack.shape[0] == max(need, default=0), (scratch.pack.shape, need)


@pytest.mark.parametrize("sizes", [(784, 10), (784, 12, 10), (784, 9, 5, 10)])
def test_params_of_views_the_model_and_layer_cuts_its_layers(sizes):
    model = MLP(sizes, dtype="float64", seed=3)
    params = engine.params_of(model)
    assert np.shares_memory(params.flat, model.params) and params.flat.shape == model.params.shape
    assert params.sizes.dtype == np.int64 and tuple(params.sizes) == sizes
    assert engine.n_weights(params.sizes) == model.n_weights
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        weight, bias = engine.layer(params.flat, params.sizes, i)
        assert np.shares_memory(weight, w) and np.shares_memory(bias, b)
        np.testing.assert_array_equal(weight, w)
        np.testing.assert_array_equal(bias, b)


# --- a small network, wired as Trainer wires it ------------------------------------


class Net:
    """A small network, its bundles and a training set, wired as Trainer wires them."""

    def __init__(self, rng, *, dtype=np.float64, sizes=(784, 12, 10), B=8, N=40, blocked_first=False):
        self.B = B
        self.model = MLP(sizes, dtype=dtype, seed=1)
        self.images = rng.integers(0, 256, (N, sizes[0])).astype(np.uint8)
        self.images[rng.random(self.images.shape) < 0.7] = 0
        self.labels = rng.integers(0, sizes[-1], N).astype(np.int32)  # as Trainer holds them
        self.order = np.arange(N, dtype=np.int64)
        self.acts, self.scratch = engine.allocate(sizes, B, dtype, engine.input_dtype(sizes, np.uint8, dtype),
                                                  blocked_first)
        self.params = engine.params_of(self.model)
        P = self.model.n_params
        self.grads = engine.Params(np.zeros(P, dtype), self.params.sizes)
        self.moments = engine.Moments(np.zeros(P, dtype), np.zeros(P, dtype))

    @property
    def scales(self):
        """(gather_scale, scale): uint8 pixels are scaled as the first layer reads them, or as they are gathered."""
        return (1.0, 1 / 255) if self.acts.x.dtype == np.uint8 else (1 / 255, 1.0)

    def settings(self, optimizer="sgd", lr=0.1, weight_decay=0.0):
        return engine.Settings(engine.OPTIMIZERS.index(optimizer), lr, 0.9, weight_decay, 0.9, 0.999, 1e-8,
                               0.0, 0)

    def steps(self, name, start, count, *, optimizer="sgd", lr=0.1):
        data = engine.Data(self.images, self.labels, self.order, *self.scales, *engine.preprocess_of(self.model))
        return engine.get(name).train_batches(self.params, self.grads, self.moments, self.acts, self.scratch, data,
                                              self.settings(optimizer, lr), start, count, self.B, 0)

    def forward(self, name, n):
        """Gather the first ``n`` samples and run them forward."""
        ops = engine.get(name)
        gather_scale, scale = self.scales
        ops.gather_batch(self.acts.x[:n], self.acts.y[:n], self.images, self.labels, self.order, 0, gather_scale)
        ops.forward(self.params, self.acts, self.scratch, n, scale, 0.0, 0, 0)


@pytest.mark.parametrize("name", ENGINES)
def test_train_batches_reports_loss_and_correct_counts(rng, name):
    net = Net(rng)
    before = net.model.params.copy()
    # The loss of the first batch, before any update, from the model's own prediction.
    probs = engine.predict_proba(net.model, net.images[:8], engine="numpy")
    first_loss = -np.log(probs[np.arange(8), net.labels[:8]]).sum()
    first_correct = np.count_nonzero(probs.argmax(axis=1) == net.labels[:8])

    loss_sum, correct, bad = net.steps(name, 0, 1)
    assert bad == -1
    np.testing.assert_allclose(loss_sum, first_loss, rtol=1e-10)
    assert correct == first_correct
    assert not np.array_equal(net.model.params, before), "one step must update the params"

    loss_sum, correct, bad = net.steps(name, 8, 4)
    assert bad == -1 and np.isfinite(loss_sum) and 0 <= correct <= 32


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("bad_batch", [0, 2])
def test_train_batches_stops_before_the_update_of_a_non_finite_batch(rng, name, bad_batch):
    net = Net(rng)
    # The samples of batch ``bad_batch`` alone light pixel 0, whose weights are the
    # largest float64: their hidden units reach 1e308 and the logits overflow to
    # inf (or inf - inf = NaN), and so does the batch loss. Other samples multiply
    # those weights by 0 on either engine, so they stay finite.
    target = 8 * bad_batch
    net.images[:, 0] = 0
    net.images[target:target + 8, 0] = 255
    net.model.weights[0][0, :] = 1e308

    # The params after bad_batch good steps, from a twin network that never meets the bad batch.
    twin = Net(np.random.default_rng(0))
    twin.model.params[:] = net.model.params
    twin.images[:], twin.labels[:] = net.images, net.labels
    if bad_batch:
        twin.steps(name, 0, bad_batch)

    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        loss_sum, correct, bad = net.steps(name, 0, 4)
    assert bad == bad_batch
    assert bad >= 0
    np.testing.assert_array_equal(net.model.params, twin.model.params,
                                  err_msg="the non-finite batch must not update the params")
    # The sums cover the good batches only.
    assert np.isfinite(loss_sum)
    if bad_batch == 0:
        assert loss_sum == 0 and correct == 0


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("n", [8, 5])
def test_forward_fills_every_layer(rng, name, n):
    """Hidden layer ``i``'s rows sit at ``B * (H_0 + ... + H_(i-1))`` in ``act``, ``n`` rows of ``H_i``;
    the sparse first layer's sums before the ReLU at the start of ``pre``."""
    sizes = (784, 9, 5, 10)
    net = Net(rng, sizes=sizes)
    B, acts = net.B, net.acts
    net.forward(name, n)
    a = net.images[:n] / 255.0
    at = 0
    for i, (w, b) in enumerate(zip(net.model.weights, net.model.biases)):
        z = a @ w + b
        if i < 2:
            a = np.maximum(z, 0)
            H = sizes[i + 1]
            act = acts.act[B * at:B * at + n * H].reshape(n, H)
            np.testing.assert_allclose(act, a, rtol=1e-12, atol=1e-12, err_msg=f"layer {i + 1}")
            np.testing.assert_array_equal(engine.hidden(acts.act, net.params.sizes, i, n, B), act)
            if i == 0:
                pre = acts.pre[:n * H].reshape(n, H)
                np.testing.assert_allclose(pre, z, rtol=1e-12, atol=1e-12, err_msg="layer 1 before the ReLU")
            at += H
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(acts.probs[:n], probs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(acts.losses[:n], -np.log(probs[np.arange(n), net.labels[:n]]), rtol=1e-10)


def numpy_gradients(model, x, labels):
    """The gradient of the mean loss of ``x (n, D)`` (floats, already scaled) with
    respect to every named parameter, by backpropagation written out in NumPy."""
    named = model.named_parameters()
    L = model.n_layers
    inputs = [x]
    for i in range(1, L + 1):
        z = inputs[-1] @ named[f"W{i}"] + named[f"b{i}"]
        if i < L:
            inputs.append(np.maximum(z, 0))
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    dz = probs.copy()
    dz[np.arange(len(labels)), labels] -= 1
    dz /= len(labels)
    grads = {}
    for i in range(L, 0, -1):
        grads[f"W{i}"] = inputs[i - 1].T @ dz
        grads[f"b{i}"] = dz.sum(axis=0)
        if i > 1:
            dz = (dz @ named[f"W{i}"].T) * (inputs[i - 1] > 0)
    return grads


@pytest.mark.parametrize("first", ["sparse", "blocked"])
@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("n", [8, 5])
@pytest.mark.parametrize("sizes", [(784, 10), (784, 12, 10), (784, 9, 5, 10), (784, 6, 5, 4, 10)])
def test_backward_gives_the_gradient_of_every_layer(rng, name, sizes, n, first):
    net = Net(rng, sizes=sizes, blocked_first=first == "blocked")
    for b in net.model.biases:  # non-zero biases, so a gradient that drops a layer's shows
        b[...] = rng.normal(0, 0.1, b.shape)
    net.grads.flat[:] = np.nan  # backward overwrites every gradient
    net.forward(name, n)
    engine.get(name).backward(net.grads, net.params, net.acts, net.scratch, n, net.scales[1], 0.0)
    got = MLP(sizes, dtype=net.model.dtype, params=net.grads.flat).named_parameters()
    expected = numpy_gradients(net.model, net.images[:n] / 255.0, net.labels[:n])
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-10, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("optimizer", engine.OPTIMIZERS)
def test_update_applies_the_rule_to_every_parameter_and_decays_the_weights_only(rng, name, optimizer):
    net = Net(rng, sizes=(784, 9, 5, 10))
    P, nw = net.model.n_params, net.model.n_weights
    net.model.params[:] = rng.standard_normal(P)
    net.grads.flat[:] = rng.standard_normal(P)
    net.moments.m[:] = rng.standard_normal(P)
    net.moments.v[:] = rng.random(P)
    settings = net.settings(optimizer, lr=0.01, weight_decay=0.1)
    step = 3
    # The same rule from the reference, on the weights with weight decay, then the biases without.
    expected = [a.copy() for a in (net.model.params, net.moments.m, net.moments.v)]
    for lo, hi, wd in ((0, nw, 0.1), (nw, P, 0.0)):
        p, m, v = (a[lo:hi] for a in expected)
        g = net.grads.flat[lo:hi]
        if optimizer == "sgd":
            reference.sgd_update(p, g, 0.01, wd)
        elif optimizer == "adam":
            reference.adam_update(p, m, v, g, 0.01, 0.9, 0.999, 1e-8, wd, step)
        else:
            reference.momentum_update(p, m, g, 0.01, 0.9, wd, optimizer == "nesterov")

    engine.get(name).update(net.params, net.grads, net.moments, settings, step)
    for got, want, what in zip((net.model.params, net.moments.m, net.moments.v), expected, ("params", "m", "v")):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=what)


@pytest.mark.parametrize("first", ["sparse", "blocked"])
@pytest.mark.parametrize("optimizer", engine.OPTIMIZERS)
@pytest.mark.parametrize("sizes", [(784, 10), (784, 12, 10), (784, 9, 5, 10), (784, 6, 5, 4, 10)])
def test_the_engines_take_the_same_steps(sizes, optimizer, first):
    """Every depth (no hidden layer, one, several) with every update rule, the first
    hidden layer on the sparse kernels or on the register-blocked ones."""
    nets = {name: Net(np.random.default_rng(5), sizes=sizes, blocked_first=first == "blocked") for name in ENGINES}
    lr = 0.01 if optimizer == "adam" else 0.05
    results = {name: net.steps(name, 0, 5, optimizer=optimizer, lr=lr) for name, net in nets.items()}
    np.testing.assert_allclose(results["numba"][0], results["numpy"][0], rtol=1e-12)
    assert results["numba"][1:] == results["numpy"][1:]
    np.testing.assert_allclose(nets["numba"].model.params, nets["numpy"].model.params, rtol=1e-11, atol=1e-13)


# --- prediction --------------------------------------------------------------------


def numpy_forward(model, x):
    """Softmax probabilities of ``x (N, D)`` (floats, already scaled), in float64,
    computed from the named parameters: Z = A W + b, ReLU between layers."""
    named = model.named_parameters()
    a = np.asarray(x, np.float64)
    for i in range(1, model.n_layers + 1):
        a = a @ named[f"W{i}"].astype(np.float64) + named[f"b{i}"].astype(np.float64)
        if i < model.n_layers:
            a = np.maximum(a, 0)
    a = np.exp(a - a.max(axis=1, keepdims=True))
    return a / a.sum(axis=1, keepdims=True)


def random_model(sizes, dtype, rng):
    """A model with non-zero biases too, so a forward pass that drops them shows."""
    model = MLP(sizes, dtype=dtype, seed=int(rng.integers(1 << 30)))
    for b in model.biases:
        b[...] = rng.normal(0, 0.1, b.shape)
    return model


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes", [(784, 33, 17, 10), (784, 10)], ids=["two-hidden", "no-hidden"])
def test_predict_proba_matches_numpy_forward(rng, dtype, name, sizes):
    model = random_model(sizes, dtype, rng)
    # Sparse like MNIST: most pixels zero, including a row that is all zeros.
    images = rng.integers(0, 256, (37, 28, 28)).astype(np.uint8)
    images[rng.random(images.shape) < 0.8] = 0
    images[5] = 0
    probs = engine.predict_proba(model, images, engine=name)
    assert probs.shape == (37, 10)
    assert probs.dtype == np.dtype(dtype)
    rtol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=rtol, err_msg="rows sum to 1")
    expected = numpy_forward(model, images.reshape(37, -1) / 255.0)
    np.testing.assert_allclose(probs, expected, rtol=rtol, atol=1e-6 if dtype == "float32" else 1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_image_and_row_shapes_and_float_input_agree(rng, dtype):
    model = random_model((784, 16, 10), dtype, rng)
    images = rng.integers(0, 256, (9, 28, 28)).astype(np.uint8)
    from_images = engine.predict_proba(model, images)
    from_rows = engine.predict_proba(model, images.reshape(9, 784))
    np.testing.assert_array_equal(from_images, from_rows)
    # Floats are taken as they are with scale=1.
    floats = (images.reshape(9, 784) / 255.0).astype(dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(engine.predict_proba(model, floats, scale=1), from_images, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_engines_agree(rng, dtype):
    model = random_model((784, 40, 10), dtype, rng)
    images = rng.integers(0, 256, (50, 784)).astype(np.uint8)
    a = engine.predict_proba(model, images, engine="numba")
    b = engine.predict_proba(model, images, engine="numpy")
    np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-7)


@pytest.mark.parametrize("name", ENGINES)
def test_batches_do_not_change_the_answer(rng, name):
    # 23 samples in batches of 5: four full batches and a last one of 3.
    model = random_model((784, 12, 10), "float64", rng)
    images = rng.integers(0, 256, (23, 784)).astype(np.uint8)
    whole = engine.predict_proba(model, images, engine=name)
    batched = engine.predict_proba(model, images, engine=name, batch_size=5)
    np.testing.assert_allclose(batched, whole, rtol=1e-14, atol=0)


def test_predictions_are_the_argmax_of_the_probabilities(rng):
    """``evaluate`` predicts the most probable class of each image, as int64 ``(N,)``."""
    from fastnet.train import evaluate

    model = random_model((784, 16, 10), "float32", rng)
    images = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 64).astype(np.uint8)
    predictions = evaluate(model, images, labels).predictions
    assert predictions.shape == (64,)
    assert predictions.dtype == np.int64
    np.testing.assert_array_equal(predictions, engine.predict_proba(model, images).argmax(axis=1))


@pytest.mark.parametrize("shape", [(0, 28, 28), (0, 784)])
def test_predict_on_no_images(shape):
    model = MLP((784, 8, 10))
    assert engine.predict_proba(model, np.zeros(shape, np.uint8)).shape == (0, 10)
    assert engine.predict_proba(model, np.zeros(shape, np.uint8)).argmax(axis=1).shape == (0,)


@pytest.mark.parametrize("shape", [(5, 27, 28), (5, 783), (784,)])
def test_predict_refuses_the_wrong_width(shape):
    model = MLP((784, 8, 10))
    with pytest.raises(ValueError, match=r"images: expected \(N, 784\)"):
        engine.predict_proba(model, np.zeros(shape, np.uint8))


def test_predict_refuses_an_unknown_engine():
    with pytest.raises(ValueError, match="engine"):
        engine.predict_proba(MLP((4, 3)), np.zeros((1, 4)), engine="torch")
