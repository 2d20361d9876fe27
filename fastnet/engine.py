"""The network's math, written once, run on either engine.

The functions here chain kernels into whole passes over a network of any
depth: :func:`load_batch` (gather, and standardize for a model that
standardizes), :func:`forward` through every layer (with inverted dropout
in training), :func:`backward` back through them, :func:`update` of every
parameter, and :func:`train_batches`, a run of mini-batch steps (load,
forward, loss, backward, update). They call the
kernels by their plain names, so the same source serves twice:

- the ``numba`` engine compiles them with :func:`fastnet._jit.jit`: a
  training run then costs one call from Python per chunk of batches, not
  one per kernel;
- the ``numpy`` engine runs the very same functions as Python, with each
  kernel name bound to its twin in :mod:`fastnet.reference`.

So the two engines differ in the kernels alone, which is what
``fastnet-train --engine`` compares.

**One compile for any network.** Arguments travel as a few named bundles
(:class:`Params`, :class:`Moments`, :class:`Activations`, :class:`Scratch`,
:class:`Data`, :class:`Settings`), the way llm.c passes its
``ParameterTensors``. Each bundle holds flat buffers and the layer widths
as an array; a layer's weight or activations are views cut from them as
the loop reaches that layer (:func:`layer`, :func:`hidden`). The update rule
is a number in :class:`Settings`. So the argument types, and with them the
compiled code, are the same for 1, 3 or 50 hidden layers and for every
update rule: a run compiles (or loads from Numba's cache) one loop per
dtype and input dtype, never one per depth.
"""
import math
from typing import NamedTuple

import numba
import numpy as np

from . import reference
from ._jit import jit
from .config import ENGINES, OPTIMIZERS

#: The update rules, as :class:`Settings` numbers them (their index in ``config.OPTIMIZERS``).
SGD, MOMENTUM, NESTEROV, ADAM = (OPTIMIZERS.index(name) for name in ("sgd", "momentum", "nesterov", "adam"))
#: How many parts the sparse kernels split their work into (their scratch's rows).
SCRATCH_PARTS = 16
#: The first hidden layer takes the sparse kernels on data with at least this share of
#: zeros, the register-blocked ones below it. Measured at 784x128, batch 128, forward and
#: weight gradient together (docs/performance.md, "Which kernels each layer takes"): the blocked
#: pair's time does not depend on the zeros, the sparse pair's falls with them, and they
#: cross at about two thirds. MNIST's pixels (81% zeros) go sparse; Fashion-MNIST's (50%)
#: and standardized features (none) go blocked.
SPARSE_FIRST_LAYER_ZEROS = 0.67


# --- the bundles ----------------------------------------------------------------------


class Params(NamedTuple):
    """A network's parameters, or anything laid out as they are (their gradient).

    ``flat (P,)`` holds every layer's weight ``(D_i, H_i)`` in turn, row-major,
    then every bias ``(H_i,)``; ``sizes (L + 1,)`` int64 lists the widths from
    input to output. :func:`layer` cuts layer ``i``'s views from ``flat``.
    """

    flat: np.ndarray
    sizes: np.ndarray


class Moments(NamedTuple):
    """The update rule's state, laid out as :attr:`Params.flat`: ``m`` is
    momentum's velocity or Adam's first moment, ``v`` Adam's second moment."""

    m: np.ndarray
    v: np.ndarray


class Activations(NamedTuple):
    """What a batch of up to ``B`` samples leaves in each layer.

    ``x (B, D)`` the batch as stored (uint8 pixels, say: the first layer
    scales them as it reads them), ``y (B,)`` its labels. For hidden layer
    ``i`` of width ``H_i``, ``act`` holds its output after the ReLU, in a flat
    buffer of ``B * sum(H)`` that :func:`hidden` cuts per layer. The
    register-blocked kernels take the ReLU on each block of sums as they write it;
    the sparse first layer writes its sums to ``pre`` (``B * H_0``) and the
    ReLU reads them from there (no kernel writes over its own input: such a
    loop does not vectorise). ``dpre`` and ``dact``, ``B * max(H)`` each,
    are the two gradient buffers of the way back, reused layer by layer:
    :func:`backward` alternates them, one holding a layer's gradient while
    the other takes the next layer down's.
    ``probs (B, K)`` and ``losses (B,)`` are the output layer's softmax and
    cross-entropy.
    """

    x: np.ndarray
    y: np.ndarray
    pre: np.ndarray
    act: np.ndarray
    dpre: np.ndarray
    dact: np.ndarray
    probs: np.ndarray
    losses: np.ndarray


class Scratch(NamedTuple):
    """The kernels' scratch, shared by the layers (they run one at a time):
    ``inputs (S, max D)`` int32 for :func:`~fastnet.kernels.sparse_linear_forward`,
    ``samples (S, B)`` int32 for :func:`~fastnet.kernels.sparse_linear_backward_params`,
    ``pack (P,)`` for the register-blocked kernels, ``classifier (S + 1, K,
    D_last + 1)`` for the output layer's kernels. ``blocked_first`` says which
    kernels the first hidden layer takes for this data: the register-blocked
    ones, or the sparse ones (:func:`blocked_first_layer`)."""

    inputs: np.ndarray
    samples: np.ndarray
    pack: np.ndarray
    classifier: np.ndarray
    blocked_first: bool


class Data(NamedTuple):
    """The training set as stored, ``images (N, D)`` and ``labels (N,)``, and
    the epoch's sample ``order (N,)``. A stored value times ``gather_scale``
    (as the batch is gathered) times ``scale`` (as the first layer reads it)
    is an input: 1 and 1/255 for uint8 pixels (see :func:`input_dtype`).
    A standardized model's inputs then become ``(input - mean) * inv_std``
    as the batch is gathered (``mean`` and ``inv_std`` ``(D,)`` in the
    parameters' dtype; both empty for a model without standardization)."""

    images: np.ndarray
    labels: np.ndarray
    order: np.ndarray
    gather_scale: float
    scale: float
    mean: np.ndarray
    inv_std: np.ndarray


class Settings(NamedTuple):
    """The update rule (:data:`SGD`, :data:`MOMENTUM`, :data:`NESTEROV` or
    :data:`ADAM`) and its hyperparameters. Weight decay spares the biases.
    ``dropout`` is the probability of dropping a hidden unit in training;
    which units drop is a function of ``seed``, the step and the unit alone
    (:func:`~fastnet.kernels.dropout_key`)."""

    optimizer: int
    lr: float
    momentum: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    dropout: float
    seed: int


# --- views into the bundles --------------------------------------------------------------


def n_weights(sizes):
    """How many weights a network of widths ``sizes`` has (the biases follow them in a flat buffer)."""
    total = 0
    for i in range(len(sizes) - 1):
        total += sizes[i] * sizes[i + 1]
    return total


def layer(flat, sizes, i):
    """Layer ``i``'s weight ``(D_i, H_i)`` and bias ``(H_i,)``: views into ``flat``, laid out as :class:`Params`."""
    weight_at = 0
    for j in range(i):
        weight_at += sizes[j] * sizes[j + 1]
    bias_at = n_weights(sizes)
    for j in range(i):
        bias_at += sizes[j + 1]
    D, H = sizes[i], sizes[i + 1]
    return flat[weight_at:weight_at + D * H].reshape((D, H)), flat[bias_at:bias_at + H]


def hidden(buffer, sizes, i, n, B):
    """Hidden layer ``i``'s first ``n`` rows ``(n, H_i)`` of ``pre`` or ``act`` (:class:`Activations`)."""
    at = 0
    for j in range(i):
        at += sizes[j + 1]
    H = sizes[i + 1]
    return buffer[B * at:B * at + n * H].reshape((n, H))


def input_dtype(sizes, stored, dtype, standardized=False):
    """The dtype of :attr:`Activations.x` for data stored as ``stored`` and
    parameters of ``dtype``. The first hidden layer's kernels read the data
    as stored (uint8 pixels: a quarter of the memory traffic of float32) and
    scale it as they go. Standardized inputs are floats, in ``dtype``. So is
    the batch of a network with no hidden layer, so that no run compiles the
    output layer's kernels for integer inputs (see :func:`output_on_input_forward`)."""
    return np.dtype(stored) if len(sizes) > 2 and not standardized else np.dtype(dtype)


def output_on_input_forward(probs, losses, scratch, x, weight, bias, y, scale):
    """:func:`~fastnet.kernels.classifier_forward` on the input batch, for a
    network with no hidden layer. The numba engine compiles it to nothing
    for an integer ``x``, which :func:`input_dtype` never gives such a network."""
    classifier_forward(probs, losses, scratch, x, weight, bias, y, scale)


def output_on_input_backward(dinp, dweight, dbias, scratch, probs, x, weight, y, scale):
    """:func:`~fastnet.kernels.classifier_backward` on the input batch; as :func:`output_on_input_forward`."""
    classifier_backward(dinp, dweight, dbias, scratch, probs, x, weight, y, scale)


def rows(buffer, n, width):
    """The first ``n`` rows ``(n, width)`` of a flat buffer (``dpre``, ``dact``)."""
    return buffer[:n * width].reshape((n, width))


# --- the passes -----------------------------------------------------------------------------


def count_correct(probs, labels):
    """How many rows of ``probs`` have their largest value at ``labels``."""
    # probs (B, K), labels (B,)
    B, K = probs.shape
    correct = 0
    for b in range(B):
        best = 0
        for k in range(1, K):
            if probs[b, k] > probs[b, best]:
                best = k
        if best == labels[b]:
            correct += 1
    return correct


def _count_correct_numpy(probs, labels):
    return int(np.count_nonzero(probs.argmax(axis=1) == labels))


def load_batch(acts, data, start, n):
    """Gather samples ``data.order[start:start + n]`` into the first ``n`` rows
    of ``acts.x`` and ``acts.y``, standardized if ``data`` says so."""
    x = acts.x[:n]
    gather_batch(x, acts.y[:n], data.images, data.labels, data.order, start, data.gather_scale)
    if data.mean.shape[0] > 0:
        standardize_batch(x, data.mean, data.inv_std)


def forward(params, acts, scratch, n, scale, dropout, seed, step):
    """Run the batch in the first ``n`` rows of ``acts.x`` (its values times
    ``scale``) through every layer: ``acts.probs`` receives the softmax of
    the last layer and ``acts.losses`` each row's cross-entropy at ``acts.y``.
    Every hidden layer's ``pre`` and ``act`` are kept for :func:`backward`.
    With ``dropout`` > 0 (training), each hidden layer's ``act`` then loses
    that share of its units, chosen by ``(seed, step, layer)``; prediction
    passes 0."""
    sizes = params.sizes
    L = len(sizes) - 1
    B = acts.x.shape[0]
    x, y = acts.x[:n], acts.y[:n]
    probs, losses = acts.probs[:n], acts.losses[:n]
    weight, bias = layer(params.flat, sizes, 0)
    if L == 1:  # no hidden layer: softmax regression on the input
        output_on_input_forward(probs, losses, scratch.classifier, x, weight, bias, y, scale)
        return
    act = hidden(acts.act, sizes, 0, n, B)
    if scratch.blocked_first:
        blocked_linear_relu_forward(act, scratch.pack, x, weight, bias, scale)
    else:
        pre = hidden(acts.pre, sizes, 0, n, B)
        sparse_linear_forward(pre, scratch.inputs, x, weight, bias, scale)
        relu_forward(act, pre)
    if dropout > 0.0:
        dropout_forward(act, dropout_key(seed, step, 0), dropout)
    for i in range(1, L - 1):
        inp = act
        weight, bias = layer(params.flat, sizes, i)
        act = hidden(acts.act, sizes, i, n, B)
        blocked_linear_relu_forward(act, scratch.pack, inp, weight, bias, 1.0)
        if dropout > 0.0:
            dropout_forward(act, dropout_key(seed, step, i), dropout)
    weight, bias = layer(params.flat, sizes, L - 1)
    classifier_forward(probs, losses, scratch.classifier, act, weight, bias, y, 1.0)


def backward(grads, params, acts, scratch, n, scale, dropout):
    """Overwrite ``grads`` with the gradient of the batch's mean loss, from
    what :func:`forward` left in ``acts`` for the same ``n`` rows and ``dropout``."""
    sizes = params.sizes
    L = len(sizes) - 1
    B = acts.x.shape[0]
    x, y, probs = acts.x[:n], acts.y[:n], acts.probs[:n]
    weight, _ = layer(params.flat, sizes, L - 1)
    dweight, dbias = layer(grads.flat, sizes, L - 1)
    if L == 1:  # the input needs no gradient
        output_on_input_backward(rows(acts.dact, 0, sizes[0]), dweight, dbias, scratch.classifier, probs, x,
                                 weight, y, scale)
        return
    act = hidden(acts.act, sizes, L - 2, n, B)
    H = sizes[L - 1]
    classifier_backward(rows(acts.dact, n, H), dweight, dbias, scratch.classifier, probs, act, weight, y, 1.0)
    # The gradient with respect to a hidden layer's pre-activation ("dpre") lives in one of
    # the two buffers, the other ("spare") takes the next layer down's.
    cur, spare = acts.dpre, acts.dact
    dpre = rows(cur, n, H)
    if dropout > 0.0:  # through the dropout and the ReLU at once: act > 0 where both let through
        dropout_backward(dpre, rows(spare, n, H), act, dropout)
    else:
        relu_backward(dpre, rows(spare, n, H), act)
    for i in range(L - 2, -1, -1):
        dweight, dbias = layer(grads.flat, sizes, i)
        if i == 0 and scratch.blocked_first:
            blocked_linear_backward_params(dweight, dbias, scratch.pack, dpre, x, scale)
        elif i == 0:
            sparse_linear_backward_params(dweight, dbias, scratch.samples, dpre, x, scale)
        else:
            below = hidden(acts.act, sizes, i - 1, n, B)
            blocked_linear_backward_params(dweight, dbias, scratch.pack, dpre, below, 1.0)
            weight, _ = layer(params.flat, sizes, i)
            down = rows(spare, n, sizes[i])
            if dropout > 0.0:  # the input gradient, then through the dropout and the ReLU below
                blocked_linear_backward_input(down, scratch.pack, dpre, weight)
                dpre = rows(cur, n, sizes[i])
                dropout_backward(dpre, down, below, dropout)
            else:  # the input gradient through the ReLU below, in one pass
                blocked_linear_backward_input_relu(down, scratch.pack, dpre, weight, below)
                dpre = down
                cur, spare = spare, cur


def update(params, grads, moments, settings, step):
    """Apply the update rule of ``settings`` to every parameter: the weights with
    weight decay, then the biases without. ``step`` counts updates from 1."""
    nw = n_weights(params.sizes)
    P = params.flat.shape[0]
    for part in range(2):
        lo, hi, wd = (0, nw, settings.weight_decay) if part == 0 else (nw, P, 0.0)
        p, g = params.flat[lo:hi], grads.flat[lo:hi]
        m, v = moments.m[lo:hi], moments.v[lo:hi]
        if settings.optimizer == SGD:
            sgd_update(p, g, settings.lr, wd)
        elif settings.optimizer == ADAM:
            adam_update(p, m, v, g, settings.lr, settings.beta1, settings.beta2, settings.eps, wd, step)
        else:
            momentum_update(p, m, g, settings.lr, settings.momentum, wd, settings.optimizer == NESTEROV)


def train_batches(params, grads, moments, acts, scratch, data, settings, start, count, n, step):
    """Take ``count`` mini-batch steps of ``n`` samples each, batch ``i`` being
    samples ``data.order[start + i*n : start + (i+1)*n]``. ``step`` is the
    number of updates taken before this call (Adam's bias correction).

    Returns ``(loss_sum, correct, bad)``: the summed per-sample loss and the
    count of correct predictions over these batches, each taken before the
    batch's update, and the index ``i`` of the first batch whose loss was
    not finite (-1 if none); the run stops at that batch, before its update.
    """
    loss_sum = 0.0
    correct = 0
    for i in range(count):
        load_batch(acts, data, start + i * n, n)
        forward(params, acts, scratch, n, data.scale, settings.dropout, settings.seed, step)
        batch_loss = float(acts.losses[:n].sum())
        if not math.isfinite(batch_loss):
            return loss_sum, correct, i
        loss_sum += batch_loss
        correct += count_correct(acts.probs[:n], acts.y[:n])
        backward(grads, params, acts, scratch, n, data.scale, settings.dropout)
        step += 1
        update(params, grads, moments, settings, step)
    return loss_sum, correct, -1


# --- buffers --------------------------------------------------------------------------------


def blocked_first_layer(images, rows=4096):
    """Whether the first hidden layer should take the register-blocked kernels for
    ``images (N, D)``: their share of zeros (in the first ``rows`` rows) is below
    :data:`SPARSE_FIRST_LAYER_ZEROS`. Decided once per data set."""
    head = images[:rows]
    return bool(head.size) and np.count_nonzero(head) / head.size > 1 - SPARSE_FIRST_LAYER_ZEROS


def allocate(sizes, batch_size, dtype, input_dtype, blocked_first=False):
    """The :class:`Activations` and :class:`Scratch` of a network of widths
    ``sizes`` for batches of up to ``batch_size`` samples: allocated once,
    reused by every batch. ``blocked_first``: see :class:`Scratch`."""
    sizes = [int(s) for s in sizes]
    B = int(batch_size)
    widths = sizes[1:-1]
    widest = max(widths, default=0)
    acts = Activations(
        x=np.zeros((B, sizes[0]), input_dtype),
        y=np.zeros(B, np.int32),
        pre=np.zeros(B * widths[0] if widths else 0, dtype),  # the sparse first layer's sums
        act=np.zeros(B * sum(widths), dtype),
        dpre=np.zeros(B * widest, dtype),
        dact=np.zeros(B * widest, dtype),
        probs=np.zeros((B, sizes[-1]), dtype),
        losses=np.zeros(B, dtype),
    )
    from .kernels.blocked import pack_size

    pack = 0
    for i in range(1 - bool(blocked_first), len(sizes) - 2):  # the hidden layers that are register-blocked
        D, H = sizes[i], sizes[i + 1]
        pack = max(pack, pack_size(B, D, H), pack_size(B, H, D), pack_size(D, B, H))
    scratch = Scratch(
        inputs=np.zeros((SCRATCH_PARTS, max(sizes[:-1])), np.int32),
        samples=np.zeros((SCRATCH_PARTS, B), np.int32),
        pack=np.zeros(pack, dtype),
        blocked_first=bool(blocked_first) and len(sizes) > 2,
        classifier=np.zeros((SCRATCH_PARTS + 1, sizes[-1], sizes[-2] + 1), dtype),
    )
    return acts, scratch


def params_of(model):
    """The :class:`Params` bundle of an :class:`~fastnet.model.MLP` (views, not copies)."""
    return Params(model.params, np.asarray(model.sizes, np.int64))


def preprocess_of(model):
    """``(mean, inv_std)`` of a standardized :class:`~fastnet.model.MLP` in
    its dtype, as :class:`Data` takes them; two empty arrays for any other model."""
    if not model.standardized:
        empty = np.zeros(0, model.dtype)
        return empty, empty
    return model.mean.astype(model.dtype), (1.0 / model.std).astype(model.dtype)


def predict_proba(model, images, *, batch_size=2048, engine="numba", scale=None):
    """Class probabilities ``(N, K)`` of ``model`` for ``images``: ``(N, D)`` or
    ``(N, ...)``, each value multiplied by ``scale``; by default 1/255 for uint8
    pixels, as training scales them, and 1 for float features. A standardized
    model standardizes them as training did. Column ``k`` is the probability
    of ``model.classes[k]``."""
    images = np.asarray(images)
    if scale is None:
        scale = 1 / 255 if images.dtype == np.uint8 else 1.0
    if images.ndim >= 2:
        images = images.reshape(images.shape[0], math.prod(images.shape[1:]))
    D = model.sizes[0]
    if images.ndim != 2 or images.shape[1] != D:
        raise ValueError(f"images: expected (N, {D}) or (N, ...) with {D} values per sample, "
                         f"got shape {np.shape(images)}")
    images = np.require(images, requirements=("C", "W"))  # read-only arrays would compile apart
    if images.dtype.kind == "f" and images.dtype != model.dtype:
        images = images.astype(model.dtype)  # as training converts them: one compiled pass per dtype
    ops = get(engine)
    N = images.shape[0]
    out = np.empty((N, model.sizes[-1]), model.dtype)
    B = min(batch_size, max(N, 1))
    acts, scratch = allocate(model.sizes, B, model.dtype,
                             input_dtype(model.sizes, images.dtype, model.dtype, model.standardized),
                             model.standardized or blocked_first_layer(images))
    params = params_of(model)
    gather_scale, scale = (1.0, scale) if acts.x.dtype == images.dtype else (scale, 1.0)
    # gather_batch fills y too; prediction ignores it
    data = Data(images, np.zeros(N, np.int32), np.arange(N, dtype=np.int64), gather_scale, scale,
                *preprocess_of(model))
    for start in range(0, N, B):
        n = min(B, N - start)
        ops.load_batch(acts, data, start, n)
        ops.forward(params, acts, scratch, n, data.scale, 0.0, 0, 0)
        out[start:start + n] = acts.probs[:n]
    return out


def predict(model, images, **options):
    """The predicted class label of each sample: ``model.classes`` at the
    largest of :func:`predict_proba`'s probabilities (same ``options``)."""
    return model.decode(predict_proba(model, images, **options).argmax(axis=1))


# --- the engines ----------------------------------------------------------------------------

#: The functions above that an engine runs, compiled or as Python, in the order they call each other.
_PASSES = (n_weights, layer, hidden, rows, count_correct, output_on_input_forward, output_on_input_backward,
           load_batch, forward, backward, update, train_batches)
_ENTRIES = (load_batch, forward, train_batches)


class Engine:
    """One engine: its ``load_batch``, ``forward``, ``backward``, ``update``,
    ``train_batches`` and ``count_correct``, each calling the engine's kernels."""

    def __init__(self, name, kernels, compile):
        self.name = name
        self._compile = compile
        # One namespace that all of the engine's functions read their globals from:
        # each call by name finds the engine's own kernel, helper or pass.
        scope = dict(globals())
        scope.update(kernels)
        for fn in _PASSES:
            copy = type(fn)(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
            copy.__qualname__ = fn.__qualname__
            if name == "numba" and fn in (output_on_input_forward, output_on_input_backward):
                scope[fn.__name__] = _floats_only(copy)
            else:
                scope[fn.__name__] = compile(copy, inline=fn not in _ENTRIES)
        if name == "numpy":
            scope["count_correct"] = _count_correct_numpy
        for fn in ("load_batch", "forward", "backward", "update", "train_batches", "gather_batch", "count_correct"):
            setattr(self, fn, scope[fn])

    def prepare(self, fn, *args):
        """Compile (or load from Numba's cache) ``fn``, one of this engine's
        functions, for the types of ``args``, without calling it: nothing on
        an engine that compiles nothing."""
        if isinstance(fn, numba.core.dispatcher.Dispatcher):
            fn.compile(tuple(numba.typeof(a) for a in args))


def _floats_only(fn):
    """``fn`` (one of the ``output_on_input`` passes) for Numba, compiled to a
    no-op when its batch ``x`` holds integers: see :func:`input_dtype`."""
    from numba import types
    from numba.extending import overload

    # Numba matches an overload's parameters by name, so each stub spells them out.
    if fn.__name__ == "output_on_input_forward":
        def stub(probs, losses, scratch, x, weight, bias, y, scale):
            raise NotImplementedError("only callable from compiled code")

        def skip(probs, losses, scratch, x, weight, bias, y, scale):
            return None

        def choose(probs, losses, scratch, x, weight, bias, y, scale):
            return skip if isinstance(x.dtype, types.Integer) else fn
    else:
        def stub(dinp, dweight, dbias, scratch, probs, x, weight, y, scale):
            raise NotImplementedError("only callable from compiled code")

        def skip(dinp, dweight, dbias, scratch, probs, x, weight, y, scale):
            return None

        def choose(dinp, dweight, dbias, scratch, probs, x, weight, y, scale):
            return skip if isinstance(x.dtype, types.Integer) else fn

    overload(stub, jit_options={"cache": True})(choose)
    return stub


_ENGINES = {}


def get(name):
    """The :class:`Engine` called ``name`` ("numba" or "numpy")."""
    if name not in ENGINES:
        raise ValueError(f"engine: expected one of {ENGINES}, got {name!r}")
    if name not in _ENGINES:
        if name == "numba":
            from . import kernels

            names = {k: getattr(kernels, k) for k in (*kernels.__all__, "dropout_key")}
            _ENGINES[name] = Engine(name, names, jit)
        else:
            names = {k: getattr(reference, k) for k in reference.__dict__ if not k.startswith("_")}
            _ENGINES[name] = Engine(name, names, lambda fn, inline: fn)
    return _ENGINES[name]
