"""The training loop: mini-batch or full-batch gradient descent on an :class:`~fastnet.model.MLP`.

No argparse and no printing here: :class:`Trainer` reports through
callbacks (``on_epoch`` after each epoch, ``on_progress`` within one), and
the command line (:mod:`fastnet.cli`) decides what to show.

A :class:`Trainer` holds the whole state of a run -- parameters, optimizer
state, the epoch's sample order, the position in it, the shuffling RNG --
and :meth:`Trainer.save_checkpoint` writes all of it, so a run stopped at
any batch and resumed with :meth:`Trainer.from_checkpoint` ends with the
same weights as a run that never stopped.
"""
import hashlib
import math
import re
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numba
import numpy as np

from . import engine as _engine
from .config import ConfigError, TrainConfig
from .data.readers import first_non_finite
from .model import (
    MLP,
    ModelFormatError,
    _short,
    available_memory,
    check_classes,
    check_memory,
    encode_labels,
    first_non_finite_index,
    label_array,
    read_state,
)

#: Progress is reported about this many times per epoch.
PROGRESS_STEPS = 50
#: An epoch's mean loss above this many times a uniform guess's (log K, at least 1) stops the run as diverged.
DIVERGED = 100
#: uint8 pixels are trained on as pixel / 255.
PIXEL_SCALE = 1 / 255
#: The "layer" of augmentation's key, ``dropout_key(seed, epoch, AUGMENT_STREAM)``: a number
#: no network's layer reaches, so that its stream is never a dropout mask's.
AUGMENT_STREAM = 2**62


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite (the message names the epoch and batch), or an
    epoch's mean loss grew far past a uniform guess's (see :data:`DIVERGED`)."""


@dataclass
class EpochMetrics:
    """What one epoch measured. Loss and train accuracy are running figures
    over the epoch's batches (each taken before that batch's update)."""

    epoch: int  #: counted from 1
    lr: float
    loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float  #: time spent in training steps alone (no validation)
    samples_per_second: float


@dataclass
class TrainResult:
    model: MLP
    history: list
    stop_reason: str  #: "completed", "early_stopping" or "interrupted"
    best_epoch: int | None = None  #: with validation: the epoch whose weights the model holds


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray  #: (K, K) counts, rows true class, columns predicted
    predictions: np.ndarray = field(repr=False)


def evaluate(model, images, labels, *, engine="numba", batch_size=2048):
    """Accuracy, mean cross-entropy and confusion matrix of ``model`` on ``images``/``labels``.

    ``labels`` are class labels, as ``model.classes`` holds them; a label the
    model was not trained on raises ValueError naming it. The confusion
    matrix's rows and columns, and ``predictions``, count output units:
    ``model.classes[i]`` is unit ``i``'s label."""
    return _evaluate_units(model, images, model.encode(labels), engine=engine, batch_size=batch_size)


def prediction_batch(model, batch_size=2048):
    """``batch_size``, or fewer where the memory available cannot hold the
    activations of that many samples of ``model`` (a very wide network):
    predictions do not depend on the batch size. MemoryError if not even one fits."""
    sizes = model.sizes
    per_sample = (sizes[0] + 2 * sum(sizes[1:-1]) + 2 * max(sizes[1:-1], default=0) + sizes[-1] + 2) \
        * model.dtype.itemsize
    available = available_memory()
    if available is not None:
        batch_size = max(1, min(batch_size, available // (2 * per_sample)))
    check_memory(batch_size * per_sample, f"predicting with a {'-'.join(map(str, sizes))} network")
    return batch_size


def _evaluate_units(model, images, units, *, engine="numba", batch_size=2048):
    probs = _engine.predict_proba(model, images, engine=engine, batch_size=prediction_batch(model, batch_size))
    if units.shape != (probs.shape[0],):
        raise ValueError(f"labels: expected shape ({probs.shape[0]},), got {units.shape}")
    K = probs.shape[1]
    predictions = probs.argmax(axis=1)
    picked = probs[np.arange(len(units)), units].astype(np.float64)
    loss = float(-np.log(np.maximum(picked, np.finfo(probs.dtype).tiny)).mean()) if len(units) else math.nan
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (units.astype(np.int64), predictions), 1)
    accuracy = float(np.mean(predictions == units)) if len(units) else math.nan
    return Evaluation(accuracy, loss, confusion, predictions)


@contextmanager
def thread_limit(threads):
    """Run with ``threads`` Numba threads and BLAS threads (None: leave both as they are)."""
    if threads is None:
        yield
        return
    if threads > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"threads: expected at most {numba.config.NUMBA_NUM_THREADS} "
            f"(NUMBA_NUM_THREADS), got {threads}"
        )
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with _thread_pools().limit(limits=threads):
            yield
    finally:
        numba.set_num_threads(before)


_pools = None


def _thread_pools():
    """threadpoolctl's view of the BLAS and OpenMP libraries loaded in the process, found once.

    Finding them walks every loaded shared library: 1-8 ms (more with PyTorch
    loaded), against 0.1 ms to set their limits. A run that gives ``threads``
    paid it on every :meth:`Trainer.run`, as much as 3% of an epoch of the
    small networks. A library first loaded after the first limited run is
    not limited.
    """
    global _pools
    if _pools is None:
        from threadpoolctl import ThreadpoolController  # here, not at import: only a run with --threads needs it

        _pools = ThreadpoolController()
    return _pools


#: The data types a run trains on as they are stored (never copied to another type):
#: uint8 pixels, scaled by :data:`PIXEL_SCALE` as they are read, or float features, used as they are.
FEATURE_DTYPES = ("uint8", "float32", "float64")


def _as_rows(images, dtype, what):
    """``images`` (N, ...) as C-contiguous, writable rows (N, D), a view where they already
    are; float features in ``dtype`` (converted once, if they are in another) and finite."""
    images = np.asarray(images)
    if str(images.dtype) not in FEATURE_DTYPES or images.ndim < 2:
        raise ValueError(f"{what} images: expected (N, ...) features of {', '.join(FEATURE_DTYPES)}, "
                         f"got {images.dtype} {images.shape}")
    # One copy at most, and none for C-contiguous uint8 or ``dtype`` features: a read-only
    # array (a memory map joblib hands its workers, say) is copied, as Numba types it apart
    # and would compile the whole loop again; so are float features of another dtype, so
    # that one compiled loop per parameter dtype serves every float input (float64 features
    # of a float32 run: a copy at half their size).
    target = dtype if images.dtype.kind == "f" else images.dtype
    with np.errstate(over="ignore"):  # checked below: a float64 value past float32's range becomes inf
        rows = np.require(images.reshape(images.shape[0], math.prod(images.shape[1:])), dtype=target,
                          requirements=("C", "W"))
    if rows.dtype.kind == "f":
        bad = first_non_finite(rows)
        if bad is not None:
            raise ValueError(f"{what} images: sample {bad[0]} holds {rows[bad]}; features must be finite")
    return rows


def _classes_and_units(labels, classes, n, what):
    """The sorted class labels (``classes``, or those found in ``labels``) and
    ``labels`` as output units, int32: one label dtype, so that the compiled
    loop's types do not depend on the data's."""
    labels = label_array(labels, f"{what} labels")
    if labels.shape != (n,):
        raise ValueError(f"{what} labels: expected one per sample, shape ({n},), got {labels.shape}")
    classes = np.unique(labels) if classes is None else check_classes(classes)
    if len(classes) < 2:
        raise ValueError(f"{what} labels: a classifier needs at least 2 classes, found "
                         f"{len(classes)}{'' if not len(classes) else ' (' + repr(classes[0].item()) + ')'}")
    return classes, encode_labels(labels, classes, f"{what} labels")


def within_unit_range(rows, chunk=512):
    """Whether every value of ``rows`` lies in [-1, 1]: features already scaled (pixels
    divided by 255, unit-norm embeddings), which the default leaves as they are.
    Standardizing them would be no help and can hurt: a pixel that is almost always
    0 has a tiny std, and its rare ink would become an input in the hundreds."""
    for start in range(0, rows.shape[0], chunk):
        block = rows[start:start + chunk]
        if block.size and (block.max() > 1 or block.min() < -1):
            return False
    return True


def feature_stats(rows, scale=1.0, chunk=512):
    """Each column's mean and standard deviation (float64, ``(D,)`` each) of
    ``rows`` times ``scale``, read ``chunk`` rows at a time, so that the memory
    used stays O(chunk x D) whatever the data set's size. Chunks are merged by
    Chan et al.'s pairwise update, which keeps the variance accurate where the
    mean is large."""
    N, D = rows.shape
    count, mean, m2 = 0, np.zeros(D), np.zeros(D)
    for start in range(0, N, chunk):
        block = rows[start:start + chunk].astype(np.float64) * scale
        n = block.shape[0]
        block_mean = block.mean(axis=0)
        block_m2 = ((block - block_mean) ** 2).sum(axis=0)
        delta = block_mean - mean
        total = count + n
        mean += delta * (n / total)
        m2 += block_m2 + delta ** 2 * (count * n / total)
        count = total
    return mean, np.sqrt(m2 / max(count, 1))


def run_bytes(sizes, batch_size, dtype):
    """About how many bytes a run of a network of widths ``sizes`` in batches of
    ``batch_size`` allocates: its parameters five times (weights, gradients, two
    moments, the best epoch's copy) and the activations of one batch."""
    sizes = [int(s) for s in sizes]
    n_params = sum(d * h + h for d, h in zip(sizes[:-1], sizes[1:]))
    hidden = sizes[1:-1]
    per_sample = sizes[0] + 2 * sum(hidden) + 2 * max(hidden, default=0) + sizes[-1] + 2
    return (5 * n_params + batch_size * per_sample + 17 * sizes[-1] * (sizes[-2] + 1)) * np.dtype(dtype).itemsize


def augmentation_width(config, shape):
    """The width of the images that ``config``'s augmentation (``shift``, ``flip``) moves,
    from the training images' ``shape`` (N, rows, width); None when augmentation is off.
    :class:`~fastnet.config.ConfigError` naming the setting when the samples are not
    images, or too small for the shift."""
    if not (config.shift or config.flip):
        return None
    what = "shift" if config.shift else "flip"
    if len(shape) != 3:
        kind = "features" if len(shape) == 2 else "samples"
        raise ConfigError(f"{what}: moves images, so needs training images of shape (N, rows, width); "
                          f"got {kind} of shape {tuple(shape)}")
    rows, width = shape[1:]
    if config.shift >= min(rows, width):
        raise ConfigError(f"shift: expected less than the images' {rows}x{width} pixels along either axis, "
                          f"got {config.shift}")
    return int(width)


def split_validation(images, labels, val_split, seed):
    """Hold out ``val_split`` (a fraction < 1, or a count) of the samples, chosen at random
    with ``seed``. Returns ``(train_images, train_labels, val_images, val_labels)``."""
    n = images.shape[0]
    n_val = int(round(val_split * n)) if val_split < 1 else int(val_split)
    if n_val == 0:
        return images, labels, None, None
    if n_val >= n:
        raise ValueError(f"val_split: holds out {n_val} of {n} training samples, leaving none to train on")
    perm = np.random.default_rng([seed, 2]).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return images[train], labels[train], images[val], labels[val]


class Trainer:
    """One training run of ``config`` on ``images`` (N, D) or (N, ...), uint8 pixels or float
    features (see :data:`FEATURE_DTYPES`), and ``labels``, integers or strings. Features
    in the run's dtype (``config.dtype``) and uint8 pixels are trained on where they
    lie; other float features are converted to it once.

    ``classes`` lists every class label, sorted (default: those found in
    ``labels``); the output layer has one unit per class. A data set with a
    fixed list of classes (MNIST's ten digits) passes it, so that a subset
    missing a digit still trains a ten-way model."""

    def __init__(self, config, images, labels, *, classes=None, model=None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
        self.config = config
        width = augmentation_width(config, np.shape(images))
        images = _as_rows(images, config.dtype, "training")
        if model is not None and classes is None:
            classes = model.classes
        self.classes, labels = _classes_and_units(labels, classes, images.shape[0], "training")
        if config.limit is not None:
            images, labels = images[: config.limit], labels[: config.limit]
        self.n_classes = len(self.classes)
        self.images, self.labels, self.val_images, self.val_labels = split_validation(
            images, labels, config.val_split, config.seed
        )
        self.n_train = self.images.shape[0]
        if self.n_train == 0:
            raise ValueError("training images: expected at least one sample, got none")
        sizes = (self.images.shape[1], *config.hidden, self.n_classes)
        standardize = config.standardize
        if standardize is None:  # pixels are scaled by 1/255; float features of any scale are standardized
            standardize = self.images.dtype.kind == "f" and not within_unit_range(self.images)
        self.batch_size = min(config.batch_size or self.n_train, self.n_train)
        check_memory(run_bytes(sizes, self.batch_size, config.dtype),
                     f"training a {'-'.join(map(str, sizes))} {config.dtype} network in batches of {self.batch_size}")
        if model is None:
            stats = {}
            if standardize:
                mean, std = feature_stats(self.images, PIXEL_SCALE if self.images.dtype == np.uint8 else 1.0)
                stats = {"mean": mean, "std": std}
            model = MLP(sizes, dtype=config.dtype, seed=config.seed, classes=self.classes, **stats)
        elif model.sizes != sizes or str(model.dtype) != config.dtype:
            raise ValueError(f"model: expected sizes {sizes} {config.dtype}, got {model.sizes} {model.dtype}")
        elif not np.array_equal(model.classes, self.classes) or model.standardized != standardize:
            raise ValueError("model: its classes or standardization differ from the run's")
        self.model = model
        self.ops = _engine.get(config.engine)
        self.governor = None  #: set by run() on the default thread count (see fastnet._threads)
        self.acts, self.scratch = _engine.allocate(
            model.sizes, self.batch_size, model.dtype,
            _engine.input_dtype(model.sizes, self.images.dtype, model.dtype, model.standardized),
            model.standardized or _engine.blocked_first_layer(self.images))
        self.params = _engine.params_of(model)
        self.grads = _engine.Params(np.zeros(model.n_params, model.dtype), self.params.sizes)
        self.moments = _engine.Moments(np.zeros(model.n_params, model.dtype), np.zeros(model.n_params, model.dtype))
        self.preprocess = _engine.preprocess_of(model)
        #: with augmentation: the images' width, and the buffers a chunk of moved samples is
        #: written to, ``(x, y, positions)`` (see :meth:`_augmented`); None without it
        self.augment_width, self.augmented = width, None
        if width is not None:
            rows = self.batch_size * max(1, self.batches_per_epoch // PROGRESS_STEPS)  # one chunk's batches
            self.augmented = (np.zeros((rows, self.images.shape[1]), self.images.dtype),
                              np.zeros(rows, self.labels.dtype), np.arange(rows, dtype=np.int64))
        # Run state: everything a checkpoint must hold to resume bit for bit.
        self.rng = np.random.default_rng([config.seed, 1])
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches of the current epoch completed
        self.order = None  # the current epoch's sample order
        self.step = 0  # updates taken
        self.running = np.zeros(3)  # loss sum, correct, seconds in the current epoch
        self.history = []
        self.best = {"epoch": None, "val_accuracy": -1.0, "params": None, "bad_epochs": 0}
        self.data_info = None  #: what the caller says of the data (JSON), kept in checkpoints
        #: a finite epoch loss above this many times a uniform guess's stops the run (None: only a
        #: non-finite one does, as in scikit-learn's MLP, which trains on through a huge first loss)
        self.diverged_at = DIVERGED
        self._fingerprint = None

    def fingerprint(self):
        """A digest of the training samples and labels as this run trains on them (after
        ``limit`` and the validation split), kept in checkpoints: resuming on other data
        of the same size is refused. (BLAKE2b, 128 bits; about 0.1 s for MNIST, once.)"""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(f"{self.images.dtype.str}{self.images.shape}".encode())
            for start in range(0, self.n_train, 8192):
                digest.update(np.ascontiguousarray(self.images[start:start + 8192]).data)
            digest.update(np.ascontiguousarray(self.labels, np.int32).data)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    @property
    def batches_per_epoch(self):
        return -(-self.n_train // self.batch_size)

    # --- compiling ---------------------------------------------------------------

    def warmup(self, *, execute=True):
        """Compile (or load from Numba's cache) everything the run will call,
        without changing any state. Returns the seconds it took.

        ``execute=False`` compiles for the calls' argument types without
        making them, so it may run on a thread of its own while another
        thread runs kernels (Numba's ``workqueue`` threading layer aborts on
        two parallel loops at once); see :mod:`fastnet.prewarm`."""
        t0 = time.perf_counter()
        for fn, args in self.warmup_calls():
            if execute:
                fn(*args)
            else:
                self.ops.prepare(fn, *args)
        return time.perf_counter() - t0

    def warmup_calls(self):
        """``[(function, arguments), ...]``: calls that change no state and need
        every compiled function of the run: the training step (with no batch to
        take), then the prediction pass that evaluation runs (one row)."""
        order = np.arange(self.n_train, dtype=np.int64)
        ops = self.ops
        data = self._data(order)
        calls = [
            (ops.train_batches, self._step_args(order, 0, 0, 1, self.config.lr)),
            (ops.load_batch, (self.acts, data, 0, 1)),
            (ops.forward, (self.params, self.acts, self.scratch, 1, data.scale, 0.0, 0, 0)),
        ]
        if self.augmented is not None:  # moving no sample
            x, y, _ = self.augmented
            calls.append((self._augment_kernel(), self._augment_args(x[:0], y[:0], order, 0, 0)))
        return calls

    @property
    def _scales(self):
        """What a stored value is multiplied by as it is gathered, and as the first layer reads it:
        uint8 pixels are scaled by :data:`PIXEL_SCALE`, once; float features are used as they are."""
        scale = PIXEL_SCALE if self.images.dtype == np.uint8 else 1.0
        return (1.0, scale) if self.acts.x.dtype == self.images.dtype else (scale, 1.0)

    def _data(self, order, images=None, labels=None):
        images = self.images if images is None else images
        labels = self.labels if labels is None else labels
        return _engine.Data(images, labels, order, *self._scales, *self.preprocess)

    def _step_args(self, order, start, count, n, lr, images=None, labels=None):
        c = self.config
        settings = _engine.Settings(_engine.OPTIMIZERS.index(c.optimizer), lr, c.momentum, c.weight_decay,
                                    c.beta1, c.beta2, c.eps, c.dropout, c.seed)
        return (self.params, self.grads, self.moments, self.acts, self.scratch, self._data(order, images, labels),
                settings, start, count, n, self.step)

    # --- augmentation --------------------------------------------------------------

    def _augment_kernel(self):
        """``augment_batch`` of the run's engine: the kernel, or its NumPy twin."""
        if self.config.engine == "numba":
            from . import kernels

            return kernels.augment_batch
        from . import reference

        return reference.augment_batch

    def _augment_args(self, x, y, order, start, key):
        c = self.config
        return (x, y, self.images, self.labels, order, start, self.augment_width, c.shift, c.flip, key)

    def _augmented(self, start, rows):
        """Move samples ``order[start:start+rows]`` of the epoch into the augmentation
        buffers; returns ``(images, labels, positions)``, which the training loop takes
        in place of the data set and the epoch's order (the moved samples lie in order).

        The loop's argument types do not change, so it compiles nothing new: a run with
        augmentation adds one compiled kernel, and a run without it nothing at all.
        Each sample's move is drawn from ``(seed, epoch, position in the epoch)`` alone
        (see :func:`~fastnet.kernels.augment_batch`): the same at any thread count,
        and the same when a run resumes from a checkpoint."""
        x, y, positions = self.augmented
        if self.config.engine == "numba":
            from .kernels import dropout_key
        else:
            from .reference import dropout_key
        key = dropout_key(self.config.seed, self.epoch, AUGMENT_STREAM)
        self._augment_kernel()(*self._augment_args(x[:rows], y[:rows], self.order, start, key))
        return x, y, positions

    # --- running -----------------------------------------------------------------

    def run(self, *, on_epoch=None, on_progress=None, should_stop=None):
        """Train until ``config.epochs`` epochs are done, early stopping triggers,
        or ``should_stop()`` returns true (checked between chunks of batches).

        ``on_epoch(metrics)`` is called after each epoch, ``on_progress(done,
        total)`` as batches of the current epoch complete. Raises
        :class:`TrainingDiverged` when the loss stops being finite.
        """
        c = self.config
        with thread_limit(c.threads), self._adapting_threads():
            while self.epoch < c.epochs:
                if self.order is None:
                    full_batch = self.batch_size == self.n_train
                    self.order = np.arange(self.n_train) if full_batch else self.rng.permutation(self.n_train)
                if not self._run_epoch(on_progress, should_stop):
                    return self._result("interrupted")
                metrics = self._finish_epoch()
                self._check_growth(metrics)
                if on_epoch is not None:
                    on_epoch(metrics)
                if c.patience is not None and self.best["bad_epochs"] >= c.patience:
                    self._restore_best()
                    return self._result("early_stopping")
        self._restore_best()
        return self._result("completed")

    @contextmanager
    def _adapting_threads(self):
        """On the default thread count, a :class:`~fastnet._threads.ThreadGovernor` for the
        run (``self.governor``): fewer threads while other processes keep the cores busy.
        The count the run started with is restored at its end."""
        if self.config.threads is not None or self.config.engine != "numba":
            yield
            return
        from ._threads import ThreadGovernor

        before = numba.get_num_threads()
        self.governor = ThreadGovernor(before)
        try:
            yield
        finally:
            numba.set_num_threads(before)

    def _run_epoch(self, on_progress, should_stop):
        total = self.batches_per_epoch
        full = self.n_train // self.batch_size
        chunk = max(1, total // PROGRESS_STEPS)
        lr = self.config.lr_at(self.epoch)
        while self.batch < total:
            if should_stop is not None and should_stop():
                return False
            if self.batch < full:
                n, count = self.batch_size, min(chunk, full - self.batch)
            else:
                n, count = self.n_train - full * self.batch_size, 1  # the last, shorter batch
            t0 = time.perf_counter()
            if self.augmented is None:
                args = self._step_args(self.order, self.batch * self.batch_size, count, n, lr)
            else:
                images, labels, positions = self._augmented(self.batch * self.batch_size, count * n)
                args = self._step_args(positions, 0, count, n, lr, images, labels)
            loss_sum, correct, bad = self.ops.train_batches(*args)
            self.running += (loss_sum, correct, time.perf_counter() - t0)
            if self.governor is not None:
                self.governor.tick()
            done = count if bad < 0 else bad
            self.step += done
            self.batch += done
            if bad >= 0:
                what = "nan" if np.isnan(self.acts.losses[:n]).any() else "infinite"  # (a sum could overflow)
                raise TrainingDiverged(
                    f"the loss became {what} at epoch "
                    f"{self.epoch + 1}, batch {self.batch + 1} of {total} (learning rate {lr:g}); "
                    f"try a lower learning rate (--lr)"
                )
            if on_progress is not None:
                on_progress(self.batch, total)
        return True

    def _check_growth(self, metrics):
        """A finite loss far above a uniform guess's is a run diverging (--lr 100 reached 6.9e7):
        stop it as the NaN guard would, before its weights are saved."""
        if self.diverged_at is None:
            return
        uniform = math.log(self.n_classes)
        if metrics.loss > self.diverged_at * max(uniform, 1.0):
            raise TrainingDiverged(
                f"the loss grew to {metrics.loss:.3g} in epoch {metrics.epoch} (a uniform guess scores "
                f"{uniform:.3g}; learning rate {metrics.lr:g}): the run is diverging; try a lower learning rate (--lr)"
            )

    def _finish_epoch(self):
        loss_sum, correct, seconds = self.running
        val_loss = val_acc = None
        if self.val_images is not None:
            ev = _evaluate_units(self.model, self.val_images, self.val_labels, engine=self.config.engine)
            val_loss, val_acc = ev.loss, ev.accuracy
            if val_acc > self.best["val_accuracy"]:
                self.best.update(epoch=self.epoch + 1, val_accuracy=val_acc,
                                 params=self.model.params.copy(), bad_epochs=0)
            else:
                self.best["bad_epochs"] += 1
        metrics = EpochMetrics(
            epoch=self.epoch + 1,
            lr=self.config.lr_at(self.epoch),
            loss=float(loss_sum / self.n_train),
            train_accuracy=float(correct / self.n_train),
            val_loss=val_loss,
            val_accuracy=val_acc,
            seconds=float(seconds),
            samples_per_second=float(self.n_train / seconds) if seconds > 0 else math.inf,
        )
        self.history.append(metrics)
        self.epoch += 1
        self.batch = 0
        self.order = None
        self.running[:] = 0
        return metrics

    def _restore_best(self):
        """With early stopping, end on the weights of the best validation epoch."""
        if self.config.patience is not None and self.best["params"] is not None:
            self.model.params[:] = self.best["params"]

    def _result(self, reason):
        best = self.best["epoch"] if self.config.patience is not None else None
        return TrainResult(self.model, list(self.history), reason, best)

    # --- checkpoints -------------------------------------------------------------

    def save_checkpoint(self, path):
        """Write the model and the whole run state to ``path`` atomically."""
        arrays = {"state1": self.moments.m, "state2": self.moments.v}
        if self.order is not None:
            arrays["order"] = self.order
        if self.best["params"] is not None:
            arrays["best_params"] = self.best["params"]
        meta = {
            "config": self.config.to_dict(),
            "n_train": self.n_train,
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "running": self.running.tolist(),
            "rng": self.rng.bit_generator.state,
            "history": [asdict(m) for m in self.history],
            "best": {k: v for k, v in self.best.items() if k != "params"},
            "data": self.data_info,
            "fingerprint": self.fingerprint(),
        }
        self.model.save(path, arrays=arrays, meta=meta)

    @classmethod
    def from_checkpoint(cls, path, images, labels, *, epochs=None):
        """Continue the run saved in ``path`` on the same training data.
        ``epochs`` may raise the number of epochs to train in all.

        Every field of the checkpoint is checked before anything runs (see
        :func:`read_checkpoint`), and then against this data: the sample order
        must be a permutation of the training samples, the batch and step
        must be where an epoch of this many batches can be. A file that fails
        raises :class:`~fastnet.model.ModelFormatError` naming it and the field."""
        model, meta, config = read_checkpoint(path)
        saved_epochs = config.epochs
        if epochs is not None:
            config = config.replace(epochs=epochs)
        trainer = cls(config, images, labels, classes=model.classes, model=model)
        trainer._restore(path, meta, saved_epochs)
        return trainer

    def _restore(self, path, meta, saved_epochs):
        """Take over the run state ``meta`` (checked by :func:`read_checkpoint`) and the
        state arrays of ``path``, after checking them against this run's data."""
        def bad(what):
            return ModelFormatError(f"{path}: cannot resume: {what}")

        if meta["n_train"] != self.n_train:
            raise ModelFormatError(
                f"{path}: saved for {meta['n_train']} training samples, given {self.n_train} "
                "(same data set, --limit and --val-split?)"
            )
        epoch, batch, step = meta["epoch"], meta["batch"], meta["step"]
        total = self.batches_per_epoch
        if epoch > saved_epochs:
            raise bad(f"epoch {epoch} is past the run's {saved_epochs} epochs")
        if len(meta["history"]) != epoch:
            raise bad(f"epoch {epoch} needs {epoch} epochs of history, found {len(meta['history'])}")
        if batch > total:
            raise bad(f"batch {batch} is past the {total} batches of an epoch")
        if step != epoch * total + batch:
            raise bad(f"step {step}: expected {epoch * total + batch} ({epoch} epochs of {total} batches, "
                      f"then {batch})")
        best = meta["best"]
        if best["epoch"] is not None and best["epoch"] > epoch or best["bad_epochs"] > epoch:
            raise bad(f"best: epoch {best['epoch']} and bad_epochs {best['bad_epochs']} must be at most "
                      f"the {epoch} epochs done")
        if meta.get("fingerprint") not in (None, self.fingerprint()):
            raise bad("it was saved from other training data (their fingerprints differ): give it the data, "
                      "--limit, --val-split and --seed it was trained with")
        P, dtype = self.model.n_params, self.model.dtype
        arrays = read_state(path, {"state1": ((P,), dtype), "state2": ((P,), dtype),
                                   "order": ((self.n_train,), np.int64), "best_params": ((P,), dtype)})
        for name in ("state1", "state2"):
            if name not in arrays:
                raise bad(f"no state_{name} (the optimizer's state) in it")
        for name in ("state1", "state2", "best_params"):
            if name in arrays and first_non_finite_index(arrays[name]) is not None:
                raise bad(f"state_{name} holds NaN or infinity")
        if ("best_params" in arrays) != (best["epoch"] is not None):
            raise bad("state_best_params and best epoch must come together")
        order = arrays.get("order")
        if order is None and batch:
            raise bad(f"batch {batch} of an epoch without its sample order (no state_order)")
        if order is not None:
            n = self.n_train
            if order.min(initial=0) < 0 or order.max(initial=0) >= n or np.any(np.bincount(order, minlength=n) != 1):
                raise bad(f"state_order is not an order of the {n} training samples "
                          "(each index 0..N-1 once)")
        for moment, name in zip(self.moments, ("state1", "state2")):
            moment[:] = arrays[name]
        self.order = order
        self.epoch, self.batch, self.step = epoch, batch, step
        self.running[:] = meta["running"]
        self.rng.bit_generator.state = meta["rng"]
        self.history = [EpochMetrics(**m) for m in meta["history"]]
        self.best.update(best)
        self.best["params"] = arrays.get("best_params")
        self.data_info = meta.get("data")


#: What a checkpoint's run state holds (its "training" in the schema); "data" may be absent
#: (checkpoints written before it was added).
CHECKPOINT_KEYS = ("config", "n_train", "epoch", "batch", "step", "running", "rng", "history", "best")
#: Keys that checkpoints written before them lack: what the caller said of the data, and
#: the training data's fingerprint (see :meth:`Trainer.fingerprint`).
OPTIONAL_CHECKPOINT_KEYS = ("data", "fingerprint")
#: What "data" may say of the data a run was trained on (fastnet-train's --data FILE).
DATA_INFO_KEYS = ("source", "label_column", "test_split", "seed")


def read_checkpoint(path):
    """``(model, meta, config)`` of the checkpoint ``path``: the model, its run state
    and its :class:`~fastnet.config.TrainConfig`, each field of the state checked for
    its type and range (what can be checked without the training data). Raises
    :class:`~fastnet.model.ModelFormatError` naming the file and the field."""
    model, meta = MLP.load(path, with_meta=True)
    if not meta or "config" not in meta:
        raise ModelFormatError(f"{path}: a fastnet model, but not a checkpoint (no training state in it)")
    try:
        return model, meta, check_checkpoint_meta(meta)
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a checkpoint fastnet can resume: {exc}") from None


def check_checkpoint_meta(meta):
    """The :class:`~fastnet.config.TrainConfig` of a checkpoint's run state ``meta``,
    after checking every field's type and range; TypeError or ValueError naming the field."""
    missing = [k for k in CHECKPOINT_KEYS if k not in meta]
    extra = sorted(k for k in meta if k not in CHECKPOINT_KEYS and k not in OPTIONAL_CHECKPOINT_KEYS)
    if missing or extra:
        raise ValueError("; ".join(f"{what} {', '.join(map(repr, keys))[:200]}"
                                   for what, keys in (("missing", missing), ("unexpected", extra)) if keys))
    if not isinstance(meta["config"], dict):
        raise TypeError(f"config: expected a JSON object, found {_short(meta['config'])}")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (ConfigError, TypeError, ValueError) as exc:
        raise ValueError(f"config: {str(exc)[:200]}") from None
    for name in ("n_train", "epoch", "batch", "step"):
        _whole(name, meta[name], 1 if name == "n_train" else 0)
    running = meta["running"]
    if not (isinstance(running, list) and len(running) == 3 and all(_finite(v) and v >= 0 for v in running)):
        raise ValueError(f"running: expected 3 finite numbers >= 0, found {_short(running)}")
    _check_rng(meta["rng"])
    history = meta["history"]
    if not isinstance(history, list):
        raise TypeError(f"history: expected a list, found {_short(history)}")
    for i, m in enumerate(history):
        _check_metrics(i, m)
    best = meta["best"]
    if not (isinstance(best, dict) and sorted(best) == ["bad_epochs", "epoch", "val_accuracy"]):
        raise ValueError(f"best: expected {{epoch, val_accuracy, bad_epochs}}, found {_short(best)}")
    if best["epoch"] is not None:
        _whole("best epoch", best["epoch"], 1)
    _whole("best bad_epochs", best["bad_epochs"], 0)
    if not _finite(best["val_accuracy"]):
        raise ValueError(f"best val_accuracy: expected a number, found {_short(best['val_accuracy'])}")
    check_data_info(meta.get("data"))
    fingerprint = meta.get("fingerprint")
    if fingerprint is not None and not (isinstance(fingerprint, str) and re.fullmatch("[0-9a-f]{32}", fingerprint)):
        raise ValueError(f"fingerprint: expected 32 hex digits, found {_short(fingerprint)}")
    return config


def check_data_info(info):
    """``info`` (a checkpoint's "data": what fastnet-train says of a data file), checked;
    ValueError naming the field."""
    if info is None:
        return info
    if not isinstance(info, dict) or set(info) - set(DATA_INFO_KEYS):
        raise ValueError(f"data: expected an object of {', '.join(DATA_INFO_KEYS)}, found {_short(info)}")
    for name in ("source", "label_column"):
        if info.get(name) is not None and not isinstance(info[name], str):
            raise ValueError(f"data {name}: expected text, found {_short(info[name])}")
    split = info.get("test_split")
    if split is not None and not (_finite(split) and 0 < split < 1):
        raise ValueError(f"data test_split: expected a fraction between 0 and 1, found {_short(split)}")
    if info.get("seed") is not None:
        _whole("data seed", info["seed"], 0)
    return info


_METRIC_FIELDS = ("epoch", "lr", "loss", "train_accuracy", "val_loss", "val_accuracy", "seconds",
                  "samples_per_second")


def _check_metrics(i, m):
    if not (isinstance(m, dict) and sorted(m) == sorted(_METRIC_FIELDS)):
        raise ValueError(f"history[{i}]: expected {{{', '.join(_METRIC_FIELDS)}}}, found {_short(m)}")
    if m["epoch"] != i + 1 or isinstance(m["epoch"], bool):
        raise ValueError(f"history[{i}] epoch: expected {i + 1}, found {_short(m['epoch'])}")
    for name in _METRIC_FIELDS[1:]:
        value = m[name]
        if value is None and name.startswith("val_"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"history[{i}] {name}: expected a number, found {_short(value)}")


def _check_rng(state):
    """A PCG64 state, as ``np.random.default_rng().bit_generator.state`` gives it."""
    ok = (isinstance(state, dict) and sorted(state) == ["bit_generator", "has_uint32", "state", "uinteger"]
          and state["bit_generator"] == "PCG64" and isinstance(state["state"], dict)
          and sorted(state["state"]) == ["inc", "state"]
          and all(_int(v) and 0 <= v < 2**128 for v in state["state"].values())
          and state["has_uint32"] in (0, 1) and _int(state["has_uint32"])
          and _int(state["uinteger"]) and 0 <= state["uinteger"] < 2**32)
    if not ok:
        raise ValueError(f"rng: expected a PCG64 state, found {_short(state)}")


def _int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(name, value, minimum):
    if not (_int(value) and minimum <= value < 2**62):
        raise ValueError(f"{name}: expected a whole number >= {minimum}, found {_short(value)}")


def train(config, images, labels, *, classes=None, **callbacks):
    """Train a new model on ``images``/``labels`` with ``config``; returns a :class:`TrainResult`."""
    trainer = Trainer(config, images, labels, classes=classes)
    return trainer.run(**callbacks)
