"""fastnet for scikit-learn users: :class:`MLPClassifier`.

A drop-in for ``sklearn.neural_network.MLPClassifier`` (ReLU hidden layers,
the ``sgd`` and ``adam`` solvers) that trains with fastnet's kernels. It
fits in a ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``, and passes
scikit-learn's own estimator checks (``tests/test_estimator.py``).

This module is the only one that imports scikit-learn (the ``[sklearn]``
extra); ``import fastnet`` does not. The estimator is a thin face: it checks
its parameters and data as scikit-learn does, turns them into a
:class:`~fastnet.config.TrainConfig`, and lets a :class:`~fastnet.train.Trainer`
run the epochs, deciding after each one, as scikit-learn does, whether to
stop (``tol``, ``n_iter_no_change``, ``early_stopping``).

**How the parameters map.** Features are used as given, as scikit-learn
uses them (``fastnet-train`` standardizes float features; here a
``Pipeline``'s ``StandardScaler`` does that). With a constant learning rate
the update rules are scikit-learn's, step for step:

- ``solver="sgd"``: plain SGD when ``momentum=0``, else heavy-ball or (with
  ``nesterovs_momentum``) Nesterov momentum. fastnet keeps PyTorch's velocity
  ``v = mu v + g``, scikit-learn ``u = mu u - lr g``; with a constant rate
  ``u = -lr v``, and both take the same steps.
- ``alpha``: scikit-learn adds ``alpha / (2 n) * ||W||^2`` to the mean loss of
  a batch of ``n`` samples, so each weight's gradient gains ``(alpha / n) W``
  (biases are not decayed). fastnet's ``weight_decay`` adds ``weight_decay * W``
  to the mean gradient, so ``weight_decay = alpha / batch_size``. (scikit-learn's
  last, shorter batch of an epoch gets ``alpha / its size``; fastnet keeps
  ``alpha / batch_size`` for it.) ``loss_`` and ``loss_curve_`` add the penalty,
  as scikit-learn does, taken on the weights at the end of each epoch.
- ``solver="adam"``: the same moments and bias corrections; scikit-learn adds
  ``epsilon`` to ``sqrt(v)`` before the bias correction, fastnet (as PyTorch)
  after it, a difference of a factor ``sqrt(1 - beta_2**t)`` on ``epsilon``
  alone, invisible at the default ``1e-8``.

**Where it differs from scikit-learn** (each also said where the parameter is
documented below):

- The output layer is always a softmax with one unit per class, also for two
  classes (scikit-learn uses one logistic unit there): ``n_outputs_`` is the
  number of classes, ``out_activation_`` is ``"softmax"``, and ``coefs_[-1]``
  has two columns for a binary problem. ``predict_proba`` is ``(N, 2)`` in
  both. The losses are the same function.
- Weights start from He initialisation (normal, standard deviation
  ``sqrt(2 / fan_in)``), biases at zero; scikit-learn draws both from
  Glorot's uniform.
- ``dtype="float32"`` by default: the parameters, ``coefs_``, ``intercepts_``
  and the probabilities are float32, and float64 data is converted once
  (scikit-learn computes in the data's float type, usually float64). float32
  kernels move half the bytes and run about twice as fast, for the same
  accuracy; ``dtype="float64"`` trains as scikit-learn does.
- No ``lbfgs`` solver, ``activation`` (always ReLU), ``learning_rate``,
  ``power_t``, ``max_fun`` or ``sample_weight``; sparse input is refused. In
  their place, fastnet's ``schedule`` (``"constant"`` by default, which is
  scikit-learn's ``learning_rate="constant"``), ``dropout``, ``dtype`` and
  ``n_threads``.
"""
import math
import numbers
import warnings

try:
    import sklearn  # noqa: F401 -- here only to say clearly what is missing
except ImportError as exc:  # pragma: no cover -- the test extra installs it
    raise ImportError(
        "fastnet.MLPClassifier needs scikit-learn: pip install 'fastnet[sklearn]'"
    ) from exc

import numba
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import engine as _engine
from .config import DTYPES, SCHEDULES, TrainConfig
from .model import MLP, check_classes
from .train import Trainer, TrainingDiverged, thread_limit

SOLVERS = ("sgd", "adam")

#: Written into a saved model's schema (``training.estimator``), so that
#: :meth:`MLPClassifier.load` can tell an estimator's file from ``fastnet-train``'s.
FILE_TAG = "fastnet.MLPClassifier"


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """A multilayer perceptron classifier trained by fastnet's Numba kernels.

    The parameters up to ``warm_start`` are scikit-learn's, with its names,
    meanings and defaults (see :class:`sklearn.neural_network.MLPClassifier`);
    the module docstring says how each maps onto fastnet's training and where
    the results differ.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        The width of each hidden layer (ReLU). ``()`` trains softmax regression.
    solver : {"adam", "sgd"}, default="adam"
        ``"sgd"`` with ``momentum`` and ``nesterovs_momentum`` as below.
    learning_rate_init : float, default=0.001
    batch_size : int or "auto", default="auto"
        ``"auto"`` is ``min(200, n_samples)``; larger than ``n_samples`` is
        clipped, with a warning.
    max_iter : int, default=200
        Epochs at most (``fit``); ``partial_fit`` always runs one.
    alpha : float, default=0.0001
        L2 penalty on the weights (not the biases), as scikit-learn scales it:
        fastnet's ``weight_decay`` is ``alpha / batch_size``.
    momentum : float, default=0.9
        ``solver="sgd"`` only; 0 is plain SGD.
    nesterovs_momentum : bool, default=True
    beta_1, beta_2 : float, default=0.9, 0.999
        ``solver="adam"`` only.
    epsilon : float, default=1e-8
        ``solver="adam"`` only; added after the bias correction (see above).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the samples (stratified), stop
        when their accuracy has not risen by ``tol`` for ``n_iter_no_change``
        epochs, and end on the weights of the best epoch.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
        Without ``early_stopping``: stop when the training loss has not fallen
        by ``tol`` for ``n_iter_no_change`` epochs.
    shuffle : bool, default=True
        Shuffle the samples before each epoch.
    random_state : int, RandomState or None, default=None
        Draws the start weights, the shuffling, the validation split and the
        dropout masks, as scikit-learn's ``random_state`` convention says.
    verbose : bool, default=False
        Print each epoch's loss (and validation score), as scikit-learn does.
    warm_start : bool, default=False
        ``fit`` continues from the weights of the previous ``fit``.
    dtype : {"float32", "float64"}, default="float32"
        The parameters' type (scikit-learn: the data's). float32 is the
        default because it trains about twice as fast with the same accuracy.
    n_threads : int or None, default=None
        Numba threads for training and prediction, at most the process's
        Numba thread count. None uses that count: all cores in a plain
        process; in a joblib worker (``GridSearchCV(n_jobs=k)``, ``cross_val_score``)
        joblib has set it to ``cores // k`` through ``NUMBA_NUM_THREADS``, so the
        workers together use each core once.
    schedule : {"constant", "step", "cosine"}, default="constant"
        The learning rate over the ``max_iter`` epochs: constant (scikit-learn's
        ``learning_rate="constant"``), divided by 10 every 5 epochs, or a
        cosine decay to 0 at ``max_iter``. ``partial_fit`` always uses
        ``learning_rate_init``.
    dropout : float, default=0.0
        The probability of dropping each hidden unit during training
        (inverted dropout: prediction uses every unit, unscaled).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` had string column names (a pandas DataFrame).
    coefs_ : list of ndarray
        ``coefs_[i]`` is layer ``i``'s weight, ``(inputs, outputs)``, in ``dtype``:
        views into the model's parameters.
    intercepts_ : list of ndarray
    n_iter_ : int
        Epochs run by the last call of ``fit`` or ``partial_fit``.
    t_ : int
        Training samples seen, over all calls.
    loss_ : float
        The last epoch's mean loss, with the L2 penalty.
    loss_curve_ : list of float
        Each epoch's ``loss_``.
    best_loss_ : float or None
        The lowest ``loss_`` (None with ``early_stopping``).
    validation_scores_ : list of float or None
        Each epoch's accuracy on the held-out samples (``early_stopping`` only).
    best_validation_score_ : float or None
    n_layers_ : int
        Layers, input and output included: ``len(hidden_layer_sizes) + 2``.
    n_outputs_ : int
        Output units: the number of classes (2 for a binary problem).
    out_activation_ : str
        Always ``"softmax"``.
    n_threads_ : int
        The Numba threads the last ``fit`` or ``partial_fit`` ran on.
    model_ : fastnet.model.MLP
        The trained network, as ``fastnet-eval`` and ``fastnet-predict`` read it.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        solver="adam",
        learning_rate_init=0.001,
        batch_size="auto",
        max_iter=200,
        alpha=0.0001,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        shuffle=True,
        random_state=None,
        verbose=False,
        warm_start=False,
        dtype="float32",
        n_threads=None,
        schedule="constant",
        dropout=0.0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.alpha = alpha
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.shuffle = shuffle
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.dtype = dtype
        self.n_threads = n_threads
        self.schedule = schedule
        self.dropout = dropout

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = False
        return tags

    # --- training ------------------------------------------------------------------

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and labels ``y`` for up to
        ``max_iter`` epochs (from the previous fit's weights with ``warm_start``)."""
        self._check_params()
        first = not (self.warm_start and hasattr(self, "model_"))
        X, y = self._check_data(X, y, reset=first)
        classes = unique_labels(y)
        if first:
            self.classes_ = classes
        elif not np.array_equal(classes, self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the previous "
                f"call to fit. Previously got {self.classes_}, `y` has {classes}"
            )
        return self._train(X, y, first=first, incremental=False)

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``, from the current weights and optimizer
        state. The first call must name every class in ``classes``."""
        self._check_params()
        if self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_call = _check_partial_fit_first_call(self, classes)
        first = not hasattr(self, "model_")
        X, y = self._check_data(X, y, reset=first)
        if first_call and len(self.classes_) < 2:
            raise ValueError(f"classes: a classifier needs at least 2 classes, got 1 class ({self.classes_[0]!r})")
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if len(unseen):
            raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                             f"'y' has {unique_labels(y)}.")
        return self._train(X, y, first=first, incremental=True)

    def _check_data(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=self._dtype(fitted=not reset), accept_sparse=False,
                             y_numeric=False)
        check_classification_targets(y)
        return X, y

    def _train(self, X, y, *, first, incremental):
        K = len(self.classes_)
        if K < 2:
            raise ValueError(f"y: a classifier needs samples of at least 2 classes, got 1 class ({self.classes_[0]!r})")
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(np.iinfo(np.int32).max))
        units = np.searchsorted(self.classes_, y)
        X_val = units_val = None
        if self.early_stopping:
            X, X_val, units, units_val = train_test_split(X, units, test_size=self.validation_fraction,
                                                          random_state=rs, stratify=units)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
        n = X.shape[0]
        batch_size = self._batch_size(n)
        threads = self._threads()
        config = TrainConfig(
            hidden=self._hidden(),
            dtype=self._dtype(fitted=not first),
            epochs=1 if incremental else self.max_iter,
            batch_size=batch_size,
            lr=float(self.learning_rate_init),
            optimizer=self._optimizer(),
            momentum=float(self.momentum),
            weight_decay=float(self.alpha) / batch_size,
            schedule=self.schedule,
            beta1=float(self.beta_1),
            beta2=float(self.beta_2),
            eps=float(self.epsilon),
            dropout=float(self.dropout),
            standardize=False,  # features as given, as scikit-learn's; a Pipeline's StandardScaler scales them
            seed=seed,
            threads=threads,
        )
        labels = _model_classes(self.classes_)
        trainer = Trainer(config, X, labels[units], classes=labels, model=None if first else self.model_)
        trainer.diverged_at = None  # as scikit-learn's: unscaled features may start at a huge, finite loss
        if not self.shuffle:
            trainer.rng = _InOrder()
        # scikit-learn keeps the optimizer's state across partial_fit calls (and
        # from a fit to a partial_fit), and starts it afresh in every fit.
        if incremental and not first and getattr(self, "_moments", None) is not None:
            trainer.moments.m[:] = self._moments[0]
            trainer.moments.v[:] = self._moments[1]
            trainer.step = self._moments[2]
        if first:
            self.t_ = 0
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        self.n_iter_ = 0
        stopping = _Stopping(self, trainer, X_val, units_val, batch_size)
        try:
            trainer.run(on_epoch=stopping.after_epoch, should_stop=lambda: stopping.stop)
        except TrainingDiverged as exc:
            # a ValueError, as scikit-learn's MLP raises for non-finite weights
            raise ValueError(f"the training loss stopped being finite in epoch {trainer.epoch + 1}, batch "
                             f"{trainer.batch + 1}: lower learning_rate_init (now {self.learning_rate_init}), "
                             "or scale the features (StandardScaler)") from exc
        if self.early_stopping and stopping.best_params is not None:
            trainer.model.params[:] = stopping.best_params
        self._moments = (trainer.moments.m, trainer.moments.v, trainer.step)
        self._set_model(trainer.model)
        self.n_threads_ = threads if threads is not None else numba.get_num_threads()
        if not incremental and not stopping.stop and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                          "optimization hasn't converged yet.", ConvergenceWarning)
        return self

    def _set_model(self, model):
        self.model_ = model
        self.coefs_ = list(model.weights)
        self.intercepts_ = list(model.biases)
        self.n_layers_ = len(model.sizes)
        self.n_outputs_ = model.sizes[-1]
        self.out_activation_ = "softmax"

    # --- prediction ----------------------------------------------------------------

    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``, columns in the order of
        ``classes_``, in the model's ``dtype``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype, accept_sparse=False)
        with thread_limit(self._threads()):
            return _engine.predict_proba(self.model_, X)

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``: ``-inf`` where a probability underflowed to 0."""
        probs = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(probs, out=probs)

    def predict(self, X):
        """The class of each sample (one of ``classes_``), the likeliest by ``predict_proba``."""
        units = self.predict_proba(X).argmax(axis=1)
        return self.classes_[units]

    # --- files and pickles ---------------------------------------------------------

    def save(self, path):
        """Write the trained network to ``path`` (``.npz``, pickle-free), as
        ``fastnet-train`` writes models: ``fastnet-eval`` and ``fastnet-predict``
        read it, and :meth:`load` reads it back with this estimator's parameters
        and class labels."""
        check_is_fitted(self)
        params = {k: _json_value(v) for k, v in self.get_params().items()}
        meta = {
            "estimator": FILE_TAG,
            "params": {k: v for k, v in params.items() if v is not _UNSAVED},
            "classes": [_json_value(c) for c in self.classes_.tolist()],
            "n_iter": self.n_iter_,
            "t": self.t_,
            "loss_curve": [float(v) for v in self.loss_curve_],
        }
        if hasattr(self, "feature_names_in_"):
            meta["feature_names_in"] = [str(c) for c in self.feature_names_in_]
        self.model_.save(path, meta=meta)

    @classmethod
    def load(cls, path):
        """A fitted estimator from a file of :meth:`save`, or any fastnet model
        file (then with default parameters and the model's widths and dtype)."""
        model, _, meta = MLP.load(path, with_state=True)
        meta = meta if isinstance(meta, dict) and meta.get("estimator") == FILE_TAG else {}
        known = cls().get_params()
        params = {k: v for k, v in meta.get("params", {}).items() if k in known}
        params["hidden_layer_sizes"] = tuple(model.sizes[1:-1])
        params["dtype"] = str(model.dtype)
        est = cls(**params)
        classes = meta.get("classes")
        est.classes_ = np.asarray(classes) if classes is not None and len(classes) == model.sizes[-1] \
            else model.classes.copy()
        est.n_features_in_ = model.sizes[0]
        if "feature_names_in" in meta:
            est.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        est.n_iter_ = int(meta.get("n_iter", 0))
        est.t_ = int(meta.get("t", 0))
        est.loss_curve_ = [float(v) for v in meta.get("loss_curve", [])]
        est.loss_ = est.loss_curve_[-1] if est.loss_curve_ else None
        est.best_loss_ = min(est.loss_curve_) if est.loss_curve_ and not est.early_stopping else None
        est.validation_scores_ = est.best_validation_score_ = None
        est._no_improvement_count = 0
        est._moments = None
        est._set_model(model)
        est.n_threads_ = est._threads() or numba.get_num_threads()
        return est

    def __getstate__(self):
        # The MLP's weights and biases are views into one flat buffer; pickled
        # as they are they would come back as copies, cut from it. So the
        # pickle holds the flat buffer, and unpickling rebuilds the views.
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        if model is not None:
            state["_model_arrays"] = {"sizes": list(model.sizes), "dtype": str(model.dtype), "params": model.params,
                                      "classes": model.classes, "mean": model.mean, "std": model.std}
        return state

    def __setstate__(self, state):
        state = dict(state)
        arrays = state.pop("_model_arrays", None)
        super().__setstate__(state)
        if arrays is not None:
            # a copy: joblib may hand back a read-only memory map, and training goes on in place
            self._set_model(MLP(arrays["sizes"], dtype=arrays["dtype"], params=np.array(arrays["params"]),
                                classes=arrays["classes"], mean=arrays["mean"], std=arrays["std"]))

    # --- parameters ----------------------------------------------------------------

    def _check_params(self):
        """ValueError naming the first parameter out of its range (checked in
        ``fit``, not ``__init__``, as scikit-learn's conventions ask)."""
        self._hidden()
        _one_of("solver", self.solver, SOLVERS)
        _one_of("schedule", self.schedule, SCHEDULES)
        self._dtype(fitted=False)
        _number("learning_rate_init", self.learning_rate_init, low=0, low_open=True)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            _whole("batch_size", self.batch_size, 1, also="or 'auto'")
        _whole("max_iter", self.max_iter, 1)
        _whole("n_iter_no_change", self.n_iter_no_change, 1)
        _number("alpha", self.alpha, low=0)
        _number("tol", self.tol, low=0)
        _number("epsilon", self.epsilon, low=0, low_open=True)
        for name in ("momentum", "beta_1", "beta_2", "dropout"):
            _number(name, getattr(self, name), low=0, high=1, high_open=True)
        _number("validation_fraction", self.validation_fraction, low=0, high=1, low_open=True, high_open=True)
        for name in ("nesterovs_momentum", "early_stopping", "shuffle", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
        if self.n_threads is not None:
            _whole("n_threads", self.n_threads, 1, also="or None")

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            sizes = tuple(sizes)
        except TypeError:
            sizes = None
        if sizes is None or not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and h >= 1
                                    for h in sizes):
            raise ValueError(f"hidden_layer_sizes: expected a positive whole width or a sequence of them, "
                             f"got {self.hidden_layer_sizes!r}")
        return tuple(int(h) for h in sizes)

    def _dtype(self, fitted):
        if fitted:
            return self.model_.dtype
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or str(dtype) not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        return dtype

    def _optimizer(self):
        if self.solver == "adam":
            return "adam"
        if self.momentum == 0:
            return "sgd"
        return "nesterov" if self.nesterovs_momentum else "momentum"

    def _batch_size(self, n):
        if isinstance(self.batch_size, str):
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
        return int(min(self.batch_size, n))

    def _threads(self):
        """The Numba threads to run on; None: the process's count, as it stands."""
        if self.n_threads is None:
            return None
        return int(min(self.n_threads, numba.config.NUMBA_NUM_THREADS))


class _Stopping:
    """What scikit-learn decides after each epoch: the estimator's ``loss_curve_``,
    ``n_iter_`` and ``t_``, the validation scores, the best weights, and whether
    to stop (``stop``, read by the Trainer between batches)."""

    def __init__(self, est, trainer, X_val, units_val, batch_size):
        self.est = est
        self.trainer = trainer
        self.X_val, self.units_val = X_val, units_val
        self.batches = -(-trainer.n_train // batch_size)
        self.stop = False
        self.best_params = None

    def after_epoch(self, metrics):
        est, model = self.est, self.trainer.model
        weights = model.params[:model.n_weights]
        squares = float(np.dot(weights, weights)) if weights.size else 0.0
        est.loss_ = metrics.loss + 0.5 * est.alpha * squares * self.batches / self.trainer.n_train
        est.loss_curve_.append(est.loss_)
        est.n_iter_ += 1
        est.t_ += self.trainer.n_train
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
        if self.X_val is not None:
            probs = _engine.predict_proba(model, self.X_val)
            score = float(np.mean(probs.argmax(axis=1) == self.units_val))
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            worse = score < est.best_validation_score_ + est.tol
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                self.best_params = model.params.copy()
        else:
            worse = est.loss_ > est.best_loss_ - est.tol
            est.best_loss_ = min(est.best_loss_, est.loss_)
        est._no_improvement_count = est._no_improvement_count + 1 if worse else 0
        if est._no_improvement_count > est.n_iter_no_change:
            what = "Validation score" if self.X_val is not None else "Training loss"
            if est.verbose:
                print(f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} "
                      "consecutive epochs. Stopping.")
            self.stop = True


class _InOrder:
    """Stands in for the Trainer's shuffling generator when ``shuffle=False``:
    every epoch takes the samples in the order given."""

    @staticmethod
    def permutation(n):
        return np.arange(n)


def _model_classes(classes):
    """The labels the model file keeps: ``classes`` where the format can hold
    them (integers, strings), else the unit numbers ``0..K-1`` (the estimator
    keeps the real labels in ``classes_``, and :meth:`MLPClassifier.save` in the schema)."""
    try:
        return check_classes(classes)
    except ValueError:
        return np.arange(len(classes), dtype=np.int64)


_UNSAVED = object()


def _json_value(v):
    """``v`` as JSON holds it, or :data:`_UNSAVED` (a RandomState, say)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)):
        items = [_json_value(x) for x in v]
        return _UNSAVED if any(x is _UNSAVED for x in items) else items
    if isinstance(v, (type, np.dtype)):
        return str(np.dtype(v))
    return _UNSAVED


def _one_of(name, value, allowed):
    if not (isinstance(value, str) and value in allowed):
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")


def _whole(name, value, minimum, also=""):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected a whole number >= {minimum}{' ' + also if also else ''}, got {value!r}")


def _number(name, value, *, low=None, high=None, low_open=False, high_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}, "
        hi = "inf)" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name}: expected a number in {lo or '(-inf, '}{hi}, got {value!r}")
