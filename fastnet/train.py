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
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numba
import numpy as np

from . import engine as _engine
from .config import TrainConfig
from .data.readers import first_non_finite
from .model import MLP, ModelFormatError, check_classes, encode_labels, label_array

#: Progress is reported about this many times per epoch.
PROGRESS_STEPS = 50
#: uint8 pixels are trained on as pixel / 255.
PIXEL_SCALE = 1 / 255


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


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


def _evaluate_units(model, images, units, *, engine="numba", batch_size=2048):
    probs = _engine.predict_proba(model, images, engine=engine, batch_size=batch_size)
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
    from threadpoolctl import threadpool_limits  # here, not at import: only a run with --threads needs it

    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(before)


#: The data types a run trains on as they are stored (never copied to another type):
#: uint8 pixels, scaled by :data:`PIXEL_SCALE` as they are read, or float features, used as they are.
FEATURE_DTYPES = ("uint8", "float32", "float64")


def _as_rows(images, what):
    """``images`` (N, ...) as C-contiguous rows (N, D), a view where they already are;
    float features must be finite."""
    images = np.asarray(images)
    if str(images.dtype) not in FEATURE_DTYPES or images.ndim < 2:
        raise ValueError(f"{what} images: expected (N, ...) features of {', '.join(FEATURE_DTYPES)}, "
                         f"got {images.dtype} {images.shape}")
    # a read-only array (a memory map joblib hands its workers, say) is copied: Numba types it
    # apart, and would compile the whole loop again for it
    rows = np.require(images.reshape(images.shape[0], math.prod(images.shape[1:])), requirements=("C", "W"))
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
        images = _as_rows(images, "training")
        if images.dtype.kind == "f" and images.dtype != np.dtype(config.dtype):
            # one loop per parameter dtype serves float features: float64 features of a
            # float32 run are copied once at half their size (and float32 ones of a float64 run)
            images = images.astype(config.dtype)
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
        if standardize is None:  # features of any scale are standardized; pixels are scaled by 1/255
            standardize = self.images.dtype.kind == "f"
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
        self.batch_size = min(config.batch_size or self.n_train, self.n_train)
        self.acts, self.scratch = _engine.allocate(
            model.sizes, self.batch_size, model.dtype,
            _engine.input_dtype(model.sizes, self.images.dtype, model.dtype, model.standardized))
        self.params = _engine.params_of(model)
        self.grads = _engine.Params(np.zeros(model.n_params, model.dtype), self.params.sizes)
        self.moments = _engine.Moments(np.zeros(model.n_params, model.dtype), np.zeros(model.n_params, model.dtype))
        self.preprocess = _engine.preprocess_of(model)
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
        return [
            (ops.train_batches, self._step_args(order, 0, 0, 1, self.config.lr)),
            (ops.load_batch, (self.acts, data, 0, 1)),
            (ops.forward, (self.params, self.acts, self.scratch, 1, data.scale, 0.0, 0, 0)),
        ]

    @property
    def _scales(self):
        """What a stored value is multiplied by as it is gathered, and as the first layer reads it:
        uint8 pixels are scaled by :data:`PIXEL_SCALE`, once; float features are used as they are."""
        scale = PIXEL_SCALE if self.images.dtype == np.uint8 else 1.0
        return (1.0, scale) if self.acts.x.dtype == self.images.dtype else (scale, 1.0)

    def _data(self, order):
        return _engine.Data(self.images, self.labels, order, *self._scales, *self.preprocess)

    def _step_args(self, order, start, count, n, lr):
        c = self.config
        settings = _engine.Settings(_engine.OPTIMIZERS.index(c.optimizer), lr, c.momentum, c.weight_decay,
                                    c.beta1, c.beta2, c.eps, c.dropout, c.seed)
        return (self.params, self.grads, self.moments, self.acts, self.scratch, self._data(order), settings,
                start, count, n, self.step)

    # --- running -----------------------------------------------------------------

    def run(self, *, on_epoch=None, on_progress=None, should_stop=None):
        """Train until ``config.epochs`` epochs are done, early stopping triggers,
        or ``should_stop()`` returns true (checked between chunks of batches).

        ``on_epoch(metrics)`` is called after each epoch, ``on_progress(done,
        total)`` as batches of the current epoch complete. Raises
        :class:`TrainingDiverged` when the loss stops being finite.
        """
        c = self.config
        with thread_limit(c.threads):
            while self.epoch < c.epochs:
                if self.order is None:
                    full_batch = self.batch_size == self.n_train
                    self.order = np.arange(self.n_train) if full_batch else self.rng.permutation(self.n_train)
                if not self._run_epoch(on_progress, should_stop):
                    return self._result("interrupted")
                metrics = self._finish_epoch()
                if on_epoch is not None:
                    on_epoch(metrics)
                if c.patience is not None and self.best["bad_epochs"] >= c.patience:
                    self._restore_best()
                    return self._result("early_stopping")
        self._restore_best()
        return self._result("completed")

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
            args = self._step_args(self.order, self.batch * self.batch_size, count, n, lr)
            loss_sum, correct, bad = self.ops.train_batches(*args)
            self.running += (loss_sum, correct, time.perf_counter() - t0)
            done = count if bad < 0 else bad
            self.step += done
            self.batch += done
            if bad >= 0:
                what = "nan" if math.isnan(float(self.acts.losses[:n].sum())) else "infinite"
                raise TrainingDiverged(
                    f"the loss became {what} at epoch "
                    f"{self.epoch + 1}, batch {self.batch + 1} of {total} (learning rate {lr:g}); "
                    f"try a lower learning rate (--lr)"
                )
            if on_progress is not None:
                on_progress(self.batch, total)
        return True

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
        }
        self.model.save(path, arrays=arrays, meta=meta)

    @classmethod
    def from_checkpoint(cls, path, images, labels, *, epochs=None):
        """Continue the run saved in ``path`` on the same training data.
        ``epochs`` may raise the number of epochs to train in all."""
        model, arrays, meta = MLP.load(path, with_state=True)
        if not meta or "config" not in meta:
            raise ModelFormatError(f"{path}: a fastnet model, but not a checkpoint (no training state in it)")
        config = TrainConfig.from_dict(meta["config"])
        if epochs is not None:
            config = config.replace(epochs=epochs)
        trainer = cls(config, images, labels, classes=model.classes, model=model)
        if meta.get("n_train", trainer.n_train) != trainer.n_train:
            raise ModelFormatError(
                f"{path}: saved for {meta['n_train']} training samples, given {trainer.n_train} "
                "(same data set, --limit and --val-split?)"
            )
        for name, moment in zip(("state1", "state2"), trainer.moments):
            if arrays[name].shape != (model.n_params,):
                raise ModelFormatError(f"{path}: {name} has shape {arrays[name].shape}, expected ({model.n_params},)")
            moment[:] = arrays[name]
        if "order" in arrays:
            if arrays["order"].shape != (trainer.n_train,):
                raise ModelFormatError(
                    f"{path}: saved for {arrays['order'].shape[0]} training samples, "
                    f"given {trainer.n_train} (same data set, --limit and --val-split?)"
                )
            trainer.order = arrays["order"]
        trainer.epoch, trainer.batch, trainer.step = meta["epoch"], meta["batch"], meta["step"]
        trainer.running[:] = meta["running"]
        trainer.rng.bit_generator.state = meta["rng"]
        trainer.history = [EpochMetrics(**m) for m in meta["history"]]
        trainer.best.update(meta["best"])
        trainer.best["params"] = arrays.get("best_params")
        trainer.data_info = meta.get("data")
        return trainer


def train(config, images, labels, *, classes=None, **callbacks):
    """Train a new model on ``images``/``labels`` with ``config``; returns a :class:`TrainResult`."""
    trainer = Trainer(config, images, labels, classes=classes)
    return trainer.run(**callbacks)
