"""Each Numba kernel against its NumPy twin in :mod:`fastnet.reference`, on the shapes
of a 784-128-10 float32 network at batch 128.

One group per kernel and shape, ``kernel-<name>-<shape>``, rows by ``which``
(numba, numpy). The linear kernels run on both layers: ``784x128`` takes
MNIST pixels (81% zeros) as float32, ``128x10`` the hidden layer's ReLU
outputs for that batch, as do the output layer's fused ``classifier_*``
kernels. The sparse kernels also run on ``784x128-u8``: the same pixels as
raw uint8 with a scale of 1/255, which is how the training loop calls them. The
register-blocked ``blocked_linear_*`` kernels, which the training loop runs on the
hidden layers past the first, run on both layers and on ``1024x1024``: a wide hidden
layer fed ReLU outputs (half of them zero), where numpy.matmul is at its best. Update rules
run on all 101770 parameters, ``gather_batch`` (and ``augment_batch``, moving
each image by up to 2 pixels and mirroring half of them) gathers
128 shuffled samples of the 60000.

Every case is built from :data:`KERNELS`, a table of kernel name -> shapes
and argument builder: a new kernel needs one entry there, and
:func:`test_every_kernel_has_a_case` fails until it has one. ``extra_info``
holds the dense-equivalent FLOPs of the linear kernels (``report.py`` turns
them into GFLOP/s); the group ``peak-matmul`` measures the machine's float32
matmul rate with the same threads.
"""
import numpy as np
import pytest

import fastnet.kernels
from benchmarks._common import linear_flops
from fastnet import engine, reference
from fastnet.model import MLP

B = 128
SIZES = (784, 128, 10)
LAYERS = ("784x128", "128x10")
#: The first layer as the training loop feeds its sparse kernels: the batch's
#: raw uint8 pixels, scaled by 1/255 as they are read (``784x128`` gives them
#: the float32 copy, as a caller without that option would).
PIXELS = "784x128-u8"
PEAK_N = 2048
#: A wide hidden layer past the first, the register-blocked kernels' home ground.
WIDE = "1024x1024"


@pytest.fixture(scope="session")
def data(mnist):
    """One batch of the forward pass of an MLP at its start, and the data set it came from."""
    model = MLP(SIZES, dtype="float32", seed=0)
    rng = np.random.default_rng(20261128)
    images = mnist.train_images.reshape(len(mnist.train_images), -1)
    order = rng.permutation(len(images))
    x = (images[order[:B]] * np.float32(1 / 255)).astype(np.float32)
    y = mnist.train_labels[order[:B]].astype(np.int32)
    z = x @ model.weights[0] + model.biases[0]  # hidden pre-activations
    h = np.maximum(z, 0)
    logits = h @ model.weights[1] + model.biases[1]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    data = dict(
        model=model, images=images, labels=mnist.train_labels, order=order, x=x, y=y, z=z, h=h, logits=logits,
        probs=probs.astype(np.float32),
        inp={"784x128": x, "128x10": h, PIXELS: images[order[:B]]},
        weight=dict(zip(LAYERS, model.weights)), bias=dict(zip(LAYERS, model.biases)),
        dout={s: rng.standard_normal((B, w.shape[1])).astype(np.float32) / B for s, w in zip(LAYERS, model.weights)},
        grad=rng.standard_normal(model.n_params).astype(np.float32) * np.float32(1e-3),
    )
    # WIDE: a layer as MLP initializes one, fed ReLU outputs (its own generator: the data above stay as they were).
    wide = np.random.default_rng(1024)
    data["inp"][WIDE] = np.maximum(wide.standard_normal((B, 1024)), 0).astype(np.float32)
    data["weight"][WIDE] = (wide.standard_normal((1024, 1024)) * np.sqrt(2 / 1024)).astype(np.float32)
    data["bias"][WIDE] = np.zeros(1024, np.float32)
    data["dout"][WIDE] = wide.standard_normal((B, 1024)).astype(np.float32) / B
    return data


def _zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def _layer(d, s):
    """(inp, weight, bias, dout, D, H) of layer ``s``."""
    layer = "784x128" if s == PIXELS else s
    w = d["weight"][layer]
    return d["inp"][s], w, d["bias"][layer], d["dout"][layer], *w.shape


def _scale(s):
    """What the sparse kernels multiply layer ``s``'s input by."""
    return 1 / 255 if s == PIXELS else 1.0


def _linear_forward(d, s):
    inp, w, b, _, D, H = _layer(d, s)
    return (_zeros(B, H), inp, w, b), linear_flops(B, D, H)


def _scratch():
    """The kernels' scratch, shaped as the training loop allocates it (:func:`fastnet.engine.allocate`)."""
    _, scratch = engine.allocate(SIZES, B, np.float32, np.uint8)
    return scratch


def _sparse_linear_forward(d, s):
    inp, w, b, _, D, H = _layer(d, s)
    return (_zeros(B, H), _scratch().inputs, inp, w, b, _scale(s)), linear_flops(B, D, H)


def _linear_backward_params(d, s):
    inp, _, _, dout, D, H = _layer(d, s)
    return (_zeros(D, H), _zeros(H), dout, inp), linear_flops(B, D, H)


def _sparse_linear_backward_params(d, s):
    inp, _, _, dout, D, H = _layer(d, s)
    return (_zeros(D, H), _zeros(H), _scratch().samples, dout, inp, _scale(s)), linear_flops(B, D, H)


def _linear_backward_input(d, s):
    _, w, _, dout, D, H = _layer(d, s)
    return (_zeros(B, D), dout, w), linear_flops(B, D, H)


def _pack(M, K, N):
    """The register-blocked kernels' scratch for the product ``(M, K) @ (K, N)``."""
    return _zeros(fastnet.kernels.pack_size(M, K, N))


def _blocked_linear_forward(d, s):
    inp, w, b, _, D, H = _layer(d, s)
    return (_zeros(B, H), _pack(B, D, H), inp, w, b, 1.0), linear_flops(B, D, H)


def _blocked_linear_backward_input(d, s):
    _, w, _, dout, D, H = _layer(d, s)
    return (_zeros(B, D), _pack(B, H, D), dout, w), linear_flops(B, D, H)


def _blocked_linear_backward_input_relu(d, s):
    inp, w, _, dout, D, H = _layer(d, s)  # the layer's input: the ReLU output whose gate it takes
    return (_zeros(B, D), _pack(B, H, D), dout, w, inp), linear_flops(B, D, H)


def _blocked_linear_backward_params(d, s):
    inp, _, _, dout, D, H = _layer(d, s)
    return (_zeros(D, H), _zeros(H), _pack(D, B, H), dout, inp, 1.0), linear_flops(B, D, H)


def _linear_backward(d, s):
    inp, w, _, dout, D, H = _layer(d, s)
    return (_zeros(B, D), _zeros(D, H), _zeros(H), dout, inp, w), 2 * linear_flops(B, D, H)


def _classifier_forward(d, s):
    return (_zeros(B, 10), _zeros(B), _scratch().classifier, d["h"], d["weight"]["128x10"], d["bias"]["128x10"], d["y"],
            1.0), linear_flops(B, 128, 10)


def _classifier_backward(d, s):
    return (_zeros(B, 128), _zeros(128, 10), _zeros(10), _scratch().classifier, d["probs"], d["h"], d["weight"]["128x10"],
            d["y"], 1.0), 2 * linear_flops(B, 128, 10)


def _params(d):
    """A fresh copy of the parameters (the update rules change them in place)."""
    return d["model"].params.copy()


#: kernel name -> (shapes, build): ``build(data, shape)`` returns ``(args, dense-equivalent FLOPs or None)``.
KERNELS = {
    "linear_forward": (LAYERS, _linear_forward),
    "linear_backward": (LAYERS, _linear_backward),
    "linear_backward_params": (LAYERS, _linear_backward_params),
    "linear_backward_input": (LAYERS, _linear_backward_input),
    "sparse_linear_forward": ((PIXELS, *LAYERS), _sparse_linear_forward),
    "sparse_linear_backward_params": ((PIXELS, *LAYERS), _sparse_linear_backward_params),
    "blocked_linear_forward": ((*LAYERS, WIDE), _blocked_linear_forward),
    "blocked_linear_relu_forward": ((*LAYERS, WIDE), _blocked_linear_forward),
    "blocked_linear_backward_input": ((*LAYERS, WIDE), _blocked_linear_backward_input),
    "blocked_linear_backward_input_relu": ((*LAYERS, WIDE), _blocked_linear_backward_input_relu),
    "blocked_linear_backward_params": ((*LAYERS, WIDE), _blocked_linear_backward_params),
    "relu_forward": (("b128",), lambda d, s: ((_zeros(B, 128), d["z"]), None)),
    "relu_backward": (("b128",), lambda d, s: ((_zeros(B, 128), d["dout"]["784x128"], d["h"]), None)),
    "softmax_cross_entropy_forward": (("b128",), lambda d, s: ((_zeros(B, 10), _zeros(B), d["logits"], d["y"]), None)),
    "softmax_cross_entropy_backward": (("b128",), lambda d, s: ((_zeros(B, 10), d["probs"], d["y"]), None)),
    "classifier_forward": (("128x10",), _classifier_forward),
    "classifier_backward": (("128x10",), _classifier_backward),
    "sgd_update": (("P101770",), lambda d, s: ((_params(d), d["grad"], 0.1, 1e-4), None)),
    "momentum_update": (("P101770",), lambda d, s: (
        (_params(d), _zeros(d["model"].n_params), d["grad"], 0.1, 0.9, 1e-4, True), None)),
    "adam_update": (("P101770",), lambda d, s: (
        (_params(d), _zeros(d["model"].n_params), _zeros(d["model"].n_params), d["grad"],
         1e-3, 0.9, 0.999, 1e-8, 1e-4, 10), None)),
    "gather_batch": (("b128",), lambda d, s: (
        (_zeros(B, 784), np.zeros(B, np.int32), d["images"], d["labels"], d["order"], 0, 1 / 255), None)),
    # Moved up to 2 pixels and mirrored half of the time, as --shift 2 --flip: uint8 in, uint8 out.
    "augment_batch": (("b128",), lambda d, s: (
        (np.zeros((B, 784), np.uint8), np.zeros(B, np.int32), d["images"], d["labels"], d["order"], 0, 28, 2,
         True, 12345), None)),
    # In place, called again and again: a mean of 0 and a scale of 1 keep the values as they are.
    "standardize_batch": (("b128",), lambda d, s: (
        (d["x"].copy(), _zeros(784), np.ones(784, np.float32)), None)),
    "dropout_forward": (("128x10",), lambda d, s: ((d["h"].copy(), 12345, 0.2), None)),
    "dropout_backward": (("128x10",), lambda d, s: ((_zeros(B, 128), d["dout"]["784x128"], d["h"], 0.2), None)),
}

CASES = [(name, shape) for name, (shapes, _) in KERNELS.items() for shape in shapes]


def _group(name, shape):
    return f"kernel-{name}-{shape}-b{B}" if shape in (PIXELS, *LAYERS, WIDE) else f"kernel-{name}-{shape}"


def test_every_kernel_has_a_case():
    missing = sorted(set(fastnet.kernels.__all__) - set(KERNELS))
    assert not missing, f"kernels without a benchmark case in KERNELS: {missing}"
    no_twin = sorted(name for name in KERNELS if not hasattr(reference, name))
    assert not no_twin, f"kernels without a NumPy twin in fastnet.reference: {no_twin}"


@pytest.mark.parametrize("which", ["numba", "numpy"])
@pytest.mark.parametrize(("name", "shape"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_kernel(benchmark, data, name, shape, which):
    kernel = getattr(fastnet.kernels if which == "numba" else reference, name)
    args, flops = KERNELS[name][1](data, shape)
    kernel(*args)  # compile (or load from the cache) outside the timed calls
    benchmark.group = _group(name, shape)
    if flops:
        benchmark.extra_info["flops"] = flops
    assert benchmark(kernel, *args) is None


@pytest.mark.parametrize("which", ["numpy"])
def test_peak_matmul(benchmark, which):
    """The machine's float32 matmul rate through NumPy's BLAS, for the GFLOP/s columns to stand beside."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((PEAK_N, PEAK_N), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    benchmark.group = f"peak-matmul-{PEAK_N}"
    benchmark.extra_info["flops"] = linear_flops(PEAK_N, PEAK_N, PEAK_N)
    benchmark.pedantic(np.matmul, (a, b), {"out": out}, rounds=7, warmup_rounds=1)
    np.testing.assert_allclose(out[:2, :2], a[:2] @ b[:, :2], rtol=1e-3, atol=1e-3)
