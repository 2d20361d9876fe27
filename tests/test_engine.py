"""The engine: one loop source, run compiled (numba) or as Python over the reference (numpy)."""
import numpy as np
import pytest

from fastnet import engine, reference
from fastnet.model import MLP, Workspace, split_params

ENGINES = ["numba", "numpy"]


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
    for entry in ("forward", "train_batches", "gather_batch", "count_correct"):
        assert callable(getattr(ops, entry)), entry
    assert engine.get(name) is ops  # built once


def test_the_engines_share_one_loop_source():
    numba_ops, numpy_ops = engine.get("numba"), engine.get("numpy")
    for depth in (1, 2, 3):
        for fn in (engine.forward, engine.train_batches):
            compiled, python = numba_ops.variant(fn, depth), numpy_ops.variant(fn, depth)
            assert python.__code__ is compiled.py_func.__code__ is fn.__code__
            assert python.__globals__["DEPTH"] == compiled.py_func.__globals__["DEPTH"] == depth
            # ... and the numpy one runs the reference kernels, not the compiled ones.
            assert python.__globals__["sparse_linear_forward"] is reference.sparse_linear_forward
            assert python.__globals__["classifier_forward"] is reference.classifier_forward
    assert numpy_ops.gather_batch is reference.gather_batch


def test_each_variant_is_built_once_and_named_for_its_cache_file():
    ops = engine.get("numba")
    first = ops.variant(engine.train_batches, 2, engine.OPTIMIZERS.index("adam"))
    assert ops.variant(engine.train_batches, 2, engine.OPTIMIZERS.index("adam")) is first
    assert first.py_func.__qualname__ == "train_batches_2_adam"
    assert ops.variant(engine.forward, 3).py_func.__qualname__ == "forward_3"


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


class Net:
    """A small network, its workspace and a training set, wired as Trainer wires them."""

    def __init__(self, rng, *, dtype=np.float64, sizes=(784, 12, 10), B=8, N=40):
        self.model = MLP(sizes, dtype=dtype, seed=1)
        self.ws = Workspace(sizes, B, dtype)
        self.grads = np.zeros(self.model.n_params, dtype)
        self.dweights, self.dbiases = split_params(self.grads, sizes)
        self.state1 = np.zeros(self.model.n_params, dtype)
        self.state2 = np.zeros(self.model.n_params, dtype)
        self.images = rng.integers(0, 256, (N, sizes[0])).astype(np.uint8)
        self.images[rng.random(self.images.shape) < 0.7] = 0
        self.labels = rng.integers(0, sizes[-1], N).astype(np.uint8)
        self.order = np.arange(N, dtype=np.int64)

    def steps(self, name, start, count, *, optimizer="sgd", lr=0.1):
        nw = self.model.n_weights
        pairs = [(a[:nw], a[nw:]) for a in (self.model.params, self.grads, self.state1, self.state2)]
        ws, m = self.ws, self.model
        return engine.get(name).train_batches(
            ws.x, ws.y, ws.acts, ws.pre, ws.dacts, ws.row_index, ws.col_index, ws.scratch, ws.probs, ws.losses,
            m.weights, m.biases, self.dweights, self.dbiases, *pairs,
            self.images, self.labels, self.order, start, count, 1 / 255,
            lr, 0.9, 0.0, 0.9, 0.999, 1e-8, 0, optimizer=engine.OPTIMIZERS.index(optimizer),
        )


@pytest.mark.parametrize("name", ENGINES)
def test_train_batches_reports_loss_and_correct_counts(rng, name):
    net = Net(rng)
    before = net.model.params.copy()
    # The loss of the first batch, before any update, from the model's own prediction.
    probs = net.model.predict_proba(net.images[:8], engine="numpy")
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
def test_forward_fills_every_layer(rng, name):
    net = Net(rng, sizes=(784, 9, 5, 10))
    ws = net.ws
    ops = engine.get(name)
    ops.gather_batch(ws.x, ws.y, net.images, net.labels, net.order, 0, 1)  # uint8, as stored
    ops.forward(ws.probs, ws.losses, ws.acts, ws.pre, ws.row_index, ws.scratch, ws.x, ws.y,
                net.model.weights, net.model.biases, 1 / 255)
    a = net.images[:8] / 255.0
    for i, (w, b) in enumerate(zip(net.model.weights, net.model.biases)):
        z = a @ w + b
        if i < 2:
            a = np.maximum(z, 0)
            np.testing.assert_allclose(ws.pre[i], z, rtol=1e-12, atol=1e-12, err_msg=f"layer {i + 1}")
            np.testing.assert_allclose(ws.acts[i], a, rtol=1e-12, atol=1e-12, err_msg=f"layer {i + 1}")
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ws.probs, probs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ws.losses, -np.log(probs[np.arange(8), net.labels[:8]]), rtol=1e-10)


@pytest.mark.parametrize("optimizer", engine.OPTIMIZERS)
@pytest.mark.parametrize("sizes", [(784, 10), (784, 12, 10), (784, 9, 5, 10), (784, 6, 5, 4, 10)])
def test_the_engines_take_the_same_steps(sizes, optimizer):
    """Every depth variant (no hidden layer, one, several) with every update rule."""
    nets = {name: Net(np.random.default_rng(5), sizes=sizes) for name in ENGINES}
    lr = 0.01 if optimizer == "adam" else 0.05
    results = {name: net.steps(name, 0, 5, optimizer=optimizer, lr=lr) for name, net in nets.items()}
    np.testing.assert_allclose(results["numba"][0], results["numpy"][0], rtol=1e-12)
    assert results["numba"][1:] == results["numpy"][1:]
    np.testing.assert_allclose(nets["numba"].model.params, nets["numpy"].model.params, rtol=1e-11, atol=1e-13)
